"""Dialect identification: a small head on pooled frozen Whisper encoder states, over the taxonomy's dialects.

    model = DialectIdModel.load("path/to/model_dir")
    probs = model.predict_proba(audio_16k)          # (dialects,) calibrated probabilities, DIALECTS order
    result = model.identify(audio_16k)              # DialectResult(dialect, confidence, probs)
    options = decode_options_for(result, vocabulary, min_confidence=0.6)   # language token + dialect prompt

The encoder (whisper-base by default, the same one the ASR decodes with) runs on a centre crop of at most
``max_seconds`` of the utterance; every chosen layer is mean- and std-pooled over time
(:class:`models.emotion.encoder_features.WhisperEncoderFeatures`). The head standardises the pooled rows,
mixes the layers (learned softmax layer weights, or a plain concatenation), then a small MLP gives one logit
per dialect; probabilities are softmax(logits / temperature) with the temperature fitted on validation.

A saved model is a folder: ``dialect_id.json`` (labels, encoder source, feature settings, sample rate,
temperature, head sizes), ``head.safetensors`` and, for an encoder other than whisper-base, ``encoder/``.
Nothing else is needed to load it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from data.audio import SAMPLE_RATE
from models.asr.dialects import DecodeOptions, decode_options
from models.emotion.encoder_features import WHISPER_BASE, LazyEncoderFeatures, WhisperEncoderFeatures, select_layers
from models.emotion.model import centre_crop, inverse_frequency_weights
from models.lazy import lazy_attribute
from models.taxonomy import DEFAULT_TAXONOMY, DIALECTS, UnknownLabelError

CONFIG_FILE = "dialect_id.json"  # model folder: labels, encoder, feature settings, temperature, head sizes
WEIGHTS_FILE = "head.safetensors"  # model folder: the head's weights
ENCODER_DIR = "encoder"  # model folder: a non-default encoder, saved with the head
FORMAT_VERSION = 1
POOLING = "mean_std"  # how frames become one row per layer (WhisperEncoderFeatures.pooled)
COMBINE_MODES = ("weighted", "concat")  # how the head mixes the pooled layers
DEFAULT_MIN_CONFIDENCE = 0.6  # below this top probability the decoder gets no dialect prompt


@dataclass(frozen=True)
class DialectIdConfig:
    encoder: str = WHISPER_BASE  # frozen encoder: "whisper-base" or a local Whisper folder
    layers: tuple[int, ...] = (2, 3, 4, 5, 6)  # pooled encoder layers (0 = input embeddings; the encoder runs up to the largest)
    max_seconds: float = 8.0  # s: centre crop the encoder sees (cost is linear in it)
    combine: str = "concat"  # "concat": layers side by side; "weighted": softmax layer weights, then one MLP input
    hidden: int = 0  # MLP hidden units (0 = a linear classifier on the mixed features)
    dropout: float = 0.2  # dropout on the MLP input and hidden layer


@dataclass(frozen=True)
class DialectResult:
    dialect: str  # the most likely dialect
    confidence: float  # its calibrated probability
    probs: dict[str, float]  # dialect -> calibrated probability (sums to 1)

    @property
    def label(self) -> str:
        """The dialect, under the name the pipeline's AudioClassifier protocol reads."""
        return self.dialect


def check_layers(layers: Sequence[int]) -> int:
    """How many encoder layers must run for ``layers`` (non-negative, non-empty)."""
    if not layers:
        raise ValueError("model.layers is empty: name at least one encoder layer to pool (0 = input embeddings)")
    if any(int(k) < 0 for k in layers):
        raise ValueError(f"model.layers {list(layers)} must be >= 0 (0 = input embeddings, N = layer N)")
    return max(int(k) for k in layers)


def label_ids(dialects: Iterable[str], labels: Sequence[str] = DIALECTS, where: str = "") -> list[int]:
    """Class ids of dialect labels; an unknown label raises :class:`UnknownLabelError` naming it and ``where``."""
    index = {d: i for i, d in enumerate(labels)}
    out = []
    for d in dialects:
        if d not in index:
            prefix = f"{where}: " if where else ""
            raise UnknownLabelError(
                f"{prefix}unknown dialect label {d!r}; the dialect model knows {', '.join(labels)}. Fix the "
                "manifest's 'dialect' field, or train with a taxonomy that declares it (HOTLINE_TAXONOMY=...)."
            )
        out.append(index[d])
    return out


class DialectHead(torch.nn.Module):
    """Standardise pooled layer rows (n, L, F), mix the layers, then an MLP gives one logit per dialect."""

    def __init__(self, n_layers: int, row_dim: int, n_classes: int, combine: str = "concat",
                 hidden: int = 0, dropout: float = 0.2) -> None:
        super().__init__()
        if combine not in COMBINE_MODES:
            raise ValueError(f"model.combine {combine!r} is not one of {', '.join(COMBINE_MODES)}")
        self.n_layers, self.row_dim, self.combine = int(n_layers), int(row_dim), combine
        self.register_buffer("mean", torch.zeros(n_layers, row_dim))
        self.register_buffer("std", torch.ones(n_layers, row_dim))
        self.register_buffer("class_weights", torch.ones(n_classes))
        self.layer_logits = torch.nn.Parameter(torch.zeros(n_layers))  # used by "weighted" only
        in_dim = row_dim if combine == "weighted" else n_layers * row_dim
        if hidden > 0:
            self.body = torch.nn.Sequential(torch.nn.Dropout(dropout), torch.nn.Linear(in_dim, hidden), torch.nn.GELU(),
                                            torch.nn.Dropout(dropout))
            out_dim = hidden
        else:
            self.body = torch.nn.Dropout(dropout)
            out_dim = in_dim
        self.classifier = torch.nn.Linear(out_dim, n_classes)

    def layer_weights(self) -> torch.Tensor:
        """The softmax weight of each pooled layer ("weighted"), uniform for "concat"."""
        if self.combine == "weighted":
            return torch.softmax(self.layer_logits, 0)
        return torch.full((self.n_layers,), 1.0 / self.n_layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict:
        z = (x.view(-1, self.n_layers, self.row_dim) - self.mean) / self.std
        if self.combine == "weighted":
            z = (z * self.layer_weights()[None, :, None]).sum(1)
        else:
            z = z.flatten(1)
        logits = self.classifier(self.body(z))
        out = {"logits": logits}
        if y is not None:
            out["loss"] = torch.nn.functional.cross_entropy(logits, y, weight=self.class_weights)
        return out


class DialectIdModel(LazyEncoderFeatures):
    """Frozen-encoder dialect classifier. Build with :meth:`create`, train its ``net``, save, :meth:`load`."""

    def __init__(self, cfg: DialectIdConfig, labels: Sequence[str], head: DialectHead, temperature: float = 1.0,
                 featurizer: WhisperEncoderFeatures | None = None) -> None:
        unknown = [lab for lab in labels if lab not in DEFAULT_TAXONOMY.dialect_names]
        if unknown:
            label_ids(unknown, where="DialectIdModel labels")
        self.cfg = cfg
        self.labels = tuple(labels)
        self.net = head
        self.temperature = float(temperature)
        self._featurizer = featurizer

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def create(cls, cfg: DialectIdConfig, labels: Sequence[str] = DIALECTS, d_model: int | None = None,
               featurizer: WhisperEncoderFeatures | None = None) -> "DialectIdModel":
        """An untrained model; ``d_model`` (the encoder width) is read from ``featurizer`` when not given."""
        check_layers(cfg.layers)
        if d_model is None:
            featurizer = featurizer or WhisperEncoderFeatures.load(cfg.encoder)
            d_model = featurizer.spec.d_model
        head = DialectHead(len(cfg.layers), 2 * d_model, len(labels), cfg.combine, cfg.hidden, cfg.dropout)
        return cls(cfg, labels, head, 1.0, featurizer)

    @property
    def encoder_layers(self) -> int:
        """Encoder layers that must run for this model's features."""
        return check_layers(self.cfg.layers)

    def set_normalisation(self, x: np.ndarray, y: Sequence[int] | None = None) -> None:
        """Feature mean/std from training inputs ``x``; inverse-frequency class weights from labels ``y``."""
        rows = torch.as_tensor(np.asarray(x, dtype=np.float32)).view(-1, self.net.n_layers, self.net.row_dim)
        self.net.mean.copy_(rows.mean(0))
        self.net.std.copy_(rows.std(0).clamp(min=1e-4))
        if y is not None:
            self.net.class_weights.copy_(torch.as_tensor(inverse_frequency_weights(y, len(self.labels))))

    # -- features ----------------------------------------------------------------------------------
    def pooled(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        """Pooled encoder states (n, encoder_layers + 1, 2, d) of 16 kHz utterances (the centre crops)."""
        crops = [centre_crop(_mono(a), self.cfg.max_seconds) for a in audios]
        return self.featurizer.pooled_many(crops, n_layers=self.encoder_layers)

    def inputs(self, pooled: np.ndarray) -> np.ndarray:
        """The head's input rows (n, len(layers) * 2 * d) from pooled features (cached or fresh)."""
        return select_layers(np.asarray(pooled, dtype=np.float32), self.cfg.layers).astype(np.float32)

    # -- prediction --------------------------------------------------------------------------------
    @torch.no_grad()
    def logits(self, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Uncalibrated logits (n, dialects) of head inputs ``x``."""
        self.net.eval()
        out = [self.net(torch.as_tensor(x[i : i + batch_size], dtype=torch.float32))["logits"].numpy()
               for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)

    def probs(self, x: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (n, dialects) of head inputs ``x``."""
        from models.calibration import softmax

        return softmax(self.logits(x), self.temperature)

    def predict_proba(self, audio: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Calibrated probabilities over :attr:`labels` of one 16 kHz mono utterance (shape (dialects,)) or of a
        list of them (shape (n, dialects))."""
        single = isinstance(audio, np.ndarray)
        if single and audio.ndim != 1:
            raise ValueError(f"predict_proba expects mono 16 kHz audio (samples,) or a list of them, got an array of "
                             f"shape {audio.shape}; mix stereo down first (data.audio.load_audio does)")
        audios = [audio] if single else list(audio)
        p = self.probs(self.inputs(self.pooled(audios))) if audios else np.zeros((0, len(self.labels)))
        return p[0] if single else p

    def identify(self, audio: np.ndarray) -> DialectResult:
        """The dialect of one 16 kHz mono utterance."""
        return result(self.predict_proba(_mono(audio)), self.labels)

    def identify_many(self, audios: Sequence[np.ndarray]) -> list[DialectResult]:
        """:meth:`identify` for several utterances (batched)."""
        return [result(p, self.labels) for p in self.predict_proba(list(audios))]

    # -- persistence -------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike, extra: Mapping | None = None) -> Path:
        """Write the head, its configuration and (unless it is whisper-base) the encoder to ``folder``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        encoder = self.cfg.encoder
        if encoder != WHISPER_BASE:
            self.featurizer.save_encoder(folder / ENCODER_DIR)
            encoder = ENCODER_DIR
        meta = {
            "format_version": FORMAT_VERSION,
            "task": "dialect_id",
            "labels": list(self.labels),
            "temperature": self.temperature,
            "sample_rate": SAMPLE_RATE,
            "pooling": POOLING,
            "config": {**asdict(self.cfg), "encoder": encoder, "layers": list(self.cfg.layers)},
            "row_dim": self.net.row_dim,
            "layer_weights": [round(float(w), 6) for w in self.net.layer_weights().detach()],
            **(dict(extra) if extra else {}),
        }
        (folder / CONFIG_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(folder / WEIGHTS_FILE))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "DialectIdModel":
        """The model saved in ``folder`` by :meth:`save` (or the ``artifacts/dialect_id`` folder of a logged one)."""
        from safetensors.torch import load_file

        folder = loaded_from_mlflow(folder)
        path = folder / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{folder}: no {CONFIG_FILE}; pass a folder written by DialectIdModel.save or `hotline train dialect --out`"
            )
        meta = json.loads(path.read_text(encoding="utf-8"))
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise ValueError(f"{path}: format_version {meta['format_version']} is newer than this code ({FORMAT_VERSION}); update hotline")
        if int(meta.get("sample_rate", SAMPLE_RATE)) != SAMPLE_RATE:
            raise ValueError(f"{path}: sample_rate {meta['sample_rate']} is not {SAMPLE_RATE}, the rate this code feeds the encoder")
        c = dict(meta["config"])
        if c["encoder"] == ENCODER_DIR:
            c["encoder"] = str(folder / ENCODER_DIR)
        c["layers"] = tuple(int(k) for k in c["layers"])
        cfg = DialectIdConfig(**c)
        head = DialectHead(len(cfg.layers), int(meta["row_dim"]), len(meta["labels"]), cfg.combine, cfg.hidden, cfg.dropout)
        head.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
        return cls(cfg, meta["labels"], head.eval(), float(meta.get("temperature", 1.0)))


def _mono(audio: np.ndarray) -> np.ndarray:
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"dialect identification expects non-empty mono 16 kHz audio (samples,), got shape {a.shape}")
    return a


def result(probs: np.ndarray, labels: Sequence[str]) -> DialectResult:
    """A :class:`DialectResult` from one row of probabilities over ``labels``."""
    k = int(np.argmax(probs))
    return DialectResult(labels[k], float(probs[k]), {lab: float(p) for lab, p in zip(labels, probs)})


def confident_dialect(res: DialectResult | None, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> str | None:
    """The identified dialect when its probability reaches ``min_confidence``, else None (unsure)."""
    if not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must lie in [0, 1], got {min_confidence}")
    if res is None or res.confidence < min_confidence:
        return None
    return res.dialect


def decode_options_for(res: DialectResult | None, vocabulary: Iterable[str] | None = None,
                       min_confidence: float = DEFAULT_MIN_CONFIDENCE, hotwords: Sequence[str] = ()) -> DecodeOptions:
    """Language token and prompt for the decoder from a dialect result: the dialect's options
    (:func:`models.asr.dialects.decode_options`) when confident, else no dialect prompt and ``<|zh|>``
    (hotwords are kept either way)."""
    return decode_options(confident_dialect(res, min_confidence), hotwords, vocabulary)


# -- MLflow pyfunc flavour ------------------------------------------------------------------------------
PYFUNC_ARTIFACT = "dialect_id"  # inside a logged MLflow model: artifacts/<this>/ is the saved model folder


def loaded_from_mlflow(path: str | os.PathLike) -> Path:
    """The saved model folder inside a downloaded MLflow model folder (``artifacts/dialect_id``), else ``path``."""
    inner = Path(path) / "artifacts" / PYFUNC_ARTIFACT
    return inner if inner.is_dir() else Path(path)


def _pyfunc_class():
    import mlflow

    class DialectIdPyfuncModel(mlflow.pyfunc.PythonModel):
        """MLflow pyfunc flavour of a saved dialect model: audio file paths in (a list or a one-column
        DataFrame), one ``{"dialect", "confidence", "probs"}`` per file out."""

        def load_context(self, context) -> None:
            self.model = DialectIdModel.load(context.artifacts[PYFUNC_ARTIFACT])

        def predict(self, context, model_input: list[str], params: dict[str, str] | None = None) -> list[dict]:
            from data.audio import load_audio

            if hasattr(model_input, "iloc"):  # a DataFrame: its first column
                model_input = list(model_input.iloc[:, 0])
            paths = [model_input] if isinstance(model_input, str) else [str(p) for p in model_input]
            results = self.model.identify_many([load_audio(p, SAMPLE_RATE) for p in paths])
            return [asdict(r) for r in results]

    return DialectIdPyfuncModel


__getattr__ = lazy_attribute(globals(), "DialectIdPyfuncModel", _pyfunc_class)  # mlflow is imported on first use only
