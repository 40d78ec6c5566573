"""The one speech recogniser used by ``hotline predict``, the notebooks and the service.

Two engines behind one interface, decoding exactly the same token sequence::

    [<|startofprev|> dialect prompt：hotwords] <|startoftranscript|> <|zh|> <|transcribe|> <|notimestamps|> ...

- ``"ct2"``: the CTranslate2 export served with faster-whisper (int8 on CPU, float16 on CUDA). The batch of
  30 s mel windows goes through ``ctranslate2.models.Whisper.generate`` in one call: real batched decoding, with
  a prompt per batch.
- ``"hf"``: transformers ``WhisperForConditionalGeneration.generate`` (float32), batched the same way.

``engine="auto"`` picks ``DEFAULT_ENGINE[device]``: CTranslate2 on CPU and on CUDA, the faster one measured by
``python -m models.asr.bench`` (see the numbers there). It falls back to ``hf`` with a warning when the model has
no CTranslate2 export.

Audio of any rate, mono or stereo, is read and resampled by ``data.audio``. Short utterances are decoded whole
(one segment from 0 to the end); recordings longer than ``RecognizerOptions.vad_min_seconds`` and whole calls
are cut into speech segments by silero-vad (``models.asr.vad``) first; segment times are seconds of the original
audio. A stereo call is split by channel (agent / customer) and its segments merged in time order.

No-speech gate (issue 15): Whisper writes text for silence and line noise ("你不要再說了" for 5 s of digital
silence, zero-shot whisper-base). Two checks, both on by default, make such audio come back as no segment and
an empty text:

- ``RecognizerOptions.vad_gate``: audio decoded whole is first checked by silero-vad (the ``vad`` settings that cut
  long audio, with the lower ``vad_gate_threshold``); if it finds no speech the audio is not decoded at all. Audio
  cut by VAD needs no such check.
- ``no_speech_threshold`` / ``logprob_threshold``: openai/whisper's rule on every decoded segment: the
  probability of ``<|nocaptions|>`` (whisper's no-speech token) at ``<|startoftranscript|>`` above
  ``no_speech_threshold`` *and* the mean token log-probability not above ``logprob_threshold`` -> dropped.
  Both engines compute it (ct2: ``generate(return_no_speech_prob=True)``; hf: one decoder pass over the prefix
  up to ``<|startoftranscript|>`` on the same encoder output). With hf beam search avg_logprob is not known (0.0),
  so the rule never fires there unless ``logprob_threshold`` is None. Hotwords are a known hole: with hotwords in
  the prompt, noise that passes the VAD check tends to come back as the hotword itself, decoded confidently
  (avg_logprob -0.74 for "海尔空调" on 5 s of -50 dBFS white noise), which this rule keeps.

The thresholds were chosen on synthetic clips only (``python -m models.asr.hallucination``), never on real speech.
Every segment is decoded on its own: its decoder prompt is the dialect prompt and hotwords only, never the text of
earlier segments (no ``condition_on_previous_text``), so one hallucination cannot seed the next.

The transcript keeps what was said as said (Chinese numerals stay numerals, Cantonese may come out in
traditional characters): inverse text normalisation belongs to the slot step. :func:`for_scoring` is the form
a transcript is scored in (simplified, no punctuation).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence, Union

import numpy as np

from data.audio import (
    MIN_AUDIO_SECONDS,
    SAMPLE_RATE,
    AudioError,
    is_silent,
    load_audio,
    load_audio_channels,
    resample,
)
from models.asr.bootstrap import WHISPER_BASE_ALIASES, WeightsError, ct2_model_dir, whisper_base_hf
from models.asr.dialects import (
    ASR_CONFIG_FILE,
    CT2_SUBDIR,
    DEFAULT_LANGUAGE,
    decoder_prefix_ids,
    dialect_prompt,
    language_for,
    prompt_token_ids,
)
from models.asr.vad import WHISPER_WINDOW_SECONDS, VadConfig, speech_segments
from models.textnorm import normalize_text

ENGINES = ("ct2", "hf")
DEVICES = ("cpu", "cuda")
# engine="auto" -> this engine per device: the faster one measured by models/asr/bench.py. CPU (2 threads, batch 8,
# greedy, zero-shot whisper-base, 20 default/test utterances = 152 s of audio, on a shared 2-core box): ct2 int8
# 77 s wall / 31 s CPU vs hf fp32 548 s wall / 226 s CPU, ct2 7.1x faster. CUDA: not measured yet (no GPU lent);
# ct2 float16 by faster-whisper's published numbers: run the bench on a GPU machine and update this line.
DEFAULT_ENGINE = {"cpu": "ct2", "cuda": "ct2"}
DEFAULT_COMPUTE_TYPE = {"cpu": "int8", "cuda": "float16"}  # ct2 compute type per device (issue 4)
WINDOW_SAMPLES = int(WHISPER_WINDOW_SECONDS * SAMPLE_RATE)  # samples: one encoder window of 16 kHz audio
SPEAKERS = ("agent", "customer")  # speaker labels of a stereo call's channels
AudioInput = Union[str, os.PathLike, np.ndarray]


@dataclass(frozen=True)
class RecognizerOptions:
    """How the recogniser decodes. Defaults are what the service uses."""

    beam_size: int = 1  # 1 = greedy search; >1 = beam search (slower, usually a little better)
    batch_size: int = 8  # utterances / segments per decoder call
    max_new_tokens: int = 128  # tokens decoded at most per segment (30 s of fast speech is ~150 characters)
    max_tokens_per_second: float = 10.0  # and at most this many per second of the batch's longest audio (+16):
    # fast Chinese speech is ~5 characters/s; a looping hallucination stops there instead of at max_new_tokens (0: off)
    repetition_penalty: float = 1.0  # >1 penalises tokens already generated (1 = off)
    no_repeat_ngram_size: int = 0  # forbid repeating n-grams of this size (0 = off): stops looping output
    hotwords: tuple[str, ...] = ()  # the company's own terms (product names...), added to every prompt
    dialect_prompt: bool | None = None  # put the dialect name in the prompt; None = only for fine-tuned models
    cpu_threads: int = 0  # intra-op threads on CPU for ctranslate2 / torch (0 = library default)
    compute_type: str | None = None  # ct2 compute type; None = DEFAULT_COMPUTE_TYPE of the device
    vad_min_seconds: float = WHISPER_WINDOW_SECONDS  # s: longer audio is cut by VAD, shorter is decoded whole
    vad: VadConfig = VadConfig()  # speech detection settings for long audio and calls (and for vad_gate)
    progress: bool = False  # show a tqdm bar over decoder batches
    # -- no-speech gate (see the module docstring). Thresholds chosen with models/asr/hallucination.py on synthetic
    # clips only (seed 1: 90 noise clips, 40 espeak telephone utterances; never on real speech) --
    vad_gate: bool = True  # audio decoded whole is checked by silero-vad (``vad`` settings, threshold below) first:
    # no speech found -> no segment, empty text, nothing decoded. False: every short input is decoded (as before)
    vad_gate_threshold: float = 0.2  # silero speech probability the VAD check uses (``vad.threshold`` cuts long
    # audio): 0.2 let no noise clip through and stopped 1 of 40 espeak utterances; 0.5 stopped 2
    no_speech_threshold: float | None = 0.7  # a segment whose <|nocaptions|> probability at <|startoftranscript|>
    # is above this is dropped (empty text) if its avg_logprob is also not above logprob_threshold (None: rule off).
    # openai/whisper's 0.6 dropped 3 of 40 espeak utterances (the rule alone); 0.7 none, still 88 of 90 noise clips
    logprob_threshold: float | None = -1.0  # the decoded text is kept, whatever the no-speech probability, when
    # its mean token log-probability is above this (openai/whisper's default); None: no_speech_threshold alone decides


@dataclass(frozen=True)
class Segment:
    """One stretch of speech and what was said in it."""

    start: float  # s from the start of the audio
    end: float  # s from the start of the audio
    text: str  # as spoken (no inverse text normalisation)
    speaker: str | None = None  # "agent" / "customer" for a stereo call, else None
    channel: int | None = None  # channel index it came from (stereo calls), else None
    avg_logprob: float = 0.0  # mean log-probability of the decoded tokens, end token included (0.0: hf beam search)


@dataclass(frozen=True)
class Transcript:
    """What the recogniser heard in one input."""

    segments: tuple[Segment, ...]  # in time order
    text: str  # segment texts joined
    dialect: str | None  # the dialect it was decoded for (None: not given)
    language: str  # Whisper language code forced in decoding
    duration: float  # s of audio
    engine: str  # "ct2" or "hf"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Decoded(NamedTuple):
    """What an engine decoded for one piece of audio."""

    text: str  # special tokens removed, stripped
    avg_logprob: float  # mean log-probability of the decoded tokens, end token included (0.0: hf beam search)
    no_speech_prob: float | None  # P(<|nocaptions|>) at <|startoftranscript|> (None: not computed)


def for_scoring(text: str | None) -> str:
    """``text`` as it is scored (CER): traditional -> simplified, no punctuation or spaces, lowercase."""
    return normalize_text(text)


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are and how it was trained to be prompted."""

    name: str  # what was asked for ("whisper-base" or a folder)
    hf_dir: Path | None  # transformers folder (None: converted on demand for whisper-base, or absent)
    ct2_dir: Path | None  # CTranslate2 folder, None when there is none
    fine_tuned: bool  # has ASR_CONFIG_FILE: decoded with dialect prompts by default
    language: str  # default language code
    dialect_prompts: dict[str, str] = field(default_factory=dict)  # prompt text per dialect (fine-tuned)


def resolve_source(source: str | os.PathLike | None) -> ModelSource:
    """Find the model files for ``source``: None / "whisper-base" (zero-shot bootstrapped base), a fine-tuned model
    folder (HF files + hotline_asr.json + ct2/), a plain transformers folder or a CTranslate2 folder."""
    if source is None or str(source) in WHISPER_BASE_ALIASES:
        return ModelSource("whisper-base", None, None, False, DEFAULT_LANGUAGE)
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise WeightsError(
            f"{folder}: model folder not found; pass a fine-tuned ASR model folder (from `hotline train asr`) "
            "or None for the zero-shot whisper-base"
        )
    config_path = folder / "config.json"
    is_hf = config_path.is_file() and json.loads(config_path.read_text(encoding="utf-8")).get("model_type") == "whisper"
    is_ct2 = (folder / "model.bin").is_file()
    if not (is_hf or is_ct2):
        raise WeightsError(
            f"{folder}: neither a transformers Whisper folder (config.json with model_type whisper) nor a "
            "CTranslate2 one (model.bin); pass the folder the ASR trainer wrote"
        )
    ct2 = folder if is_ct2 else (folder / CT2_SUBDIR if (folder / CT2_SUBDIR / "model.bin").is_file() else None)
    asr_config: dict[str, Any] = {}
    if (folder / ASR_CONFIG_FILE).is_file():
        asr_config = json.loads((folder / ASR_CONFIG_FILE).read_text(encoding="utf-8"))
    return ModelSource(
        name=str(folder),
        hf_dir=folder if is_hf else None,
        ct2_dir=ct2,
        fine_tuned=bool(asr_config),
        language=asr_config.get("language", DEFAULT_LANGUAGE),
        dialect_prompts=dict(asr_config.get("dialect_prompts", {})),
    )


# -- engines -------------------------------------------------------------------------------------------
class _Tokens:
    """The few tokenizer calls dialects.py needs, over a ``tokenizers.Tokenizer`` (faster-whisper's)."""

    unk_token_id = None

    def __init__(self, tokenizer: Any):
        self._tok = tokenizer

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def vocabulary(self) -> Iterable[str]:
        return self._tok.get_vocab().keys()


class _CT2Engine:
    """faster-whisper's WhisperModel; batches go straight to ctranslate2's Whisper.generate."""

    name = "ct2"

    def __init__(self, folder: Path, device: str, options: RecognizerOptions):
        from faster_whisper import WhisperModel

        self.device = device
        self.compute_type = options.compute_type or DEFAULT_COMPUTE_TYPE[device]
        try:
            self.model = WhisperModel(
                str(folder), device=device, compute_type=self.compute_type, cpu_threads=options.cpu_threads
            )
        except Exception as exc:  # noqa: BLE001 - ctranslate2 raises RuntimeError/ValueError with terse text
            raise WeightsError(f"{folder}: faster-whisper cannot load this CTranslate2 model ({exc})") from exc
        self.tokens = _Tokens(self.model.hf_tokenizer)
        self.eot = self.tokens.convert_tokens_to_ids("<|endoftext|>")
        self.options = options

    def vocabulary(self) -> Iterable[str]:
        return self.tokens.vocabulary()

    def features(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        """(batch, n_mels, 3000) log-mel of each audio zero-padded to 30 s, as transformers' processor computes."""
        fe = self.model.feature_extractor
        out = []
        for audio in audios:
            padded = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
            padded[: min(len(audio), WINDOW_SAMPLES)] = audio[:WINDOW_SAMPLES]
            out.append(fe(padded)[..., : WINDOW_SAMPLES // fe.hop_length])
        return np.stack(out).astype(np.float32)

    def decode(self, audios: Sequence[np.ndarray], prefix: list[int]) -> list[Decoded]:
        o = self.options
        encoded = self.model.encode(self.features(audios))
        results = self.model.model.generate(
            encoded,
            [prefix] * len(audios),
            beam_size=o.beam_size,
            max_length=len(prefix) + token_budget(audios, o),
            repetition_penalty=o.repetition_penalty,
            no_repeat_ngram_size=o.no_repeat_ngram_size,
            return_scores=True,
            return_no_speech_prob=True,  # P(<|nocaptions|>) at <|startoftranscript|>, as openai/whisper computes it
            suppress_blank=True,
            suppress_tokens=[-1],  # the model config's suppress_ids: what transformers' generation config has
        )
        out = []
        for r in results:
            ids = [t for t in r.sequences_ids[0] if t < self.eot]
            n = len(r.sequences_ids[0])
            avg = float(r.scores[0]) * n / (n + 1)  # as faster-whisper
            out.append(Decoded(self.tokens.decode(ids).strip(), avg, float(r.no_speech_prob)))
        return out


class _HFEngine:
    """transformers WhisperForConditionalGeneration.generate, float32."""

    name = "hf"

    def __init__(self, folder: Path, device: str, options: RecognizerOptions):
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        if options.cpu_threads > 0 and device == "cpu":
            torch.set_num_threads(options.cpu_threads)
        try:
            self.model = WhisperForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval().to(device)
            self.processor = WhisperProcessor.from_pretrained(folder)
        except OSError as exc:
            raise WeightsError(f"{folder}: cannot load the transformers Whisper model and processor ({exc})") from exc
        self.device = device
        self.compute_type = "float32"
        self.tokens = self.processor.tokenizer
        self.options = options

    def vocabulary(self) -> Iterable[str]:
        return self.tokens.get_vocab().keys()

    def decode(self, audios: Sequence[np.ndarray], prefix: list[int]) -> list[Decoded]:
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        o = self.options
        feats = self.processor.feature_extractor(
            [a[:WINDOW_SAMPLES] for a in audios], sampling_rate=SAMPLE_RATE, return_tensors="pt"
        ).input_features.to(self.device)
        # prefix = [<|startofprev|> prompt...] <|startoftranscript|> <|lang|> <|transcribe|> <|notimestamps|>
        n_prompt = len(prefix) - 4
        language = self.tokens.convert_ids_to_tokens(prefix[n_prompt + 1]).strip("<|>")
        kwargs: dict[str, Any] = {}
        if n_prompt:
            kwargs["prompt_ids"] = torch.tensor(prefix[:n_prompt], device=self.device)
        with torch.inference_mode():
            # The encoder runs once: its output feeds generate and then the no-speech probe.
            encoded = self.model.model.encoder(feats).last_hidden_state
            out = self.model.generate(
                encoder_outputs=BaseModelOutput(last_hidden_state=encoded),
                language=language,
                task="transcribe",
                return_timestamps=False,
                num_beams=o.beam_size,
                max_new_tokens=token_budget(audios, o),
                repetition_penalty=o.repetition_penalty,
                no_repeat_ngram_size=o.no_repeat_ngram_size,
                return_dict_in_generate=True,
                output_scores=True,
                **kwargs,
            )
            no_speech = self._no_speech_probs(encoded, prefix[: n_prompt + 1])
        sequences = out.sequences.cpu()
        scores = getattr(out, "scores", None)
        step_logprobs = None
        if scores:
            logp = torch.stack([s.float().log_softmax(-1) for s in scores], dim=1).cpu()  # (batch, steps, vocab)
            new = sequences[:, -logp.shape[1] :]
            step_logprobs = logp.gather(-1, new.unsqueeze(-1)).squeeze(-1)
        eot = self.model.generation_config.eos_token_id
        no_ts = self.model.generation_config.no_timestamps_token_id
        results = []
        for i, seq in enumerate(sequences.tolist()):
            start = len(seq) - seq[::-1].index(no_ts) if no_ts in seq else 0
            ids = seq[start:]
            text_ids = ids[: ids.index(eot)] if eot in ids else ids
            avg = 0.0
            if step_logprobs is not None and o.beam_size == 1:
                n = min(len(text_ids) + 1, step_logprobs.shape[1])
                avg = float(step_logprobs[i, :n].sum()) / max(n, 1)
            results.append(Decoded(self.tokens.decode(text_ids, skip_special_tokens=True).strip(), avg, no_speech[i]))
        return results

    def _no_speech_probs(self, encoded: Any, upto_sot: list[int]) -> list[float]:
        """P(no-speech token) of the next token after ``upto_sot`` ([<|startofprev|> prompt] <|startoftranscript|>),
        per batch item: what openai/whisper reads at the <|startoftranscript|> position (softmax of raw logits)."""
        import torch

        token = self.tokens.convert_tokens_to_ids("<|nocaptions|>")
        if token is None or token == self.tokens.unk_token_id:
            token = self.model.generation_config.no_timestamps_token_id - 1  # <|nospeech|> in newer tokenizers
        ids = torch.tensor([upto_sot] * encoded.shape[0], device=encoded.device)
        hidden = self.model.model.decoder(input_ids=ids, encoder_hidden_states=encoded).last_hidden_state[:, -1]
        probs = self.model.proj_out(hidden).float().softmax(-1)[:, token]
        return [float(p) for p in probs.cpu()]


def token_budget(audios: Sequence[np.ndarray], options: RecognizerOptions) -> int:
    """Tokens a decoder batch may generate: ``max_new_tokens``, capped by ``max_tokens_per_second`` times the longest
    audio in the batch (+16), so a segment of a few seconds cannot loop for 128 tokens."""
    if options.max_tokens_per_second <= 0 or not len(audios):
        return options.max_new_tokens
    seconds = max(len(a) for a in audios) / SAMPLE_RATE
    return max(1, min(options.max_new_tokens, int(np.ceil(options.max_tokens_per_second * seconds)) + 16))


def _cuda_available(engine: str) -> bool:
    try:
        if engine == "ct2":
            import ctranslate2

            return ctranslate2.get_cuda_device_count() > 0
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - no CUDA runtime at all
        return False


# -- the recogniser ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Job:
    """One piece of audio to decode and where its text goes."""

    item: int  # index of the input it belongs to
    audio: np.ndarray  # 16 kHz mono, at most 30 s
    start: float  # s in the input
    end: float  # s in the input
    prefix: tuple[int, ...]  # decoder prompt + prefix token ids
    speaker: str | None = None
    channel: int | None = None


class Recognizer:
    """Speech to text with one of two engines; see the module docstring."""

    def __init__(self, engine: _CT2Engine | _HFEngine, source: ModelSource, options: RecognizerOptions):
        self.engine_impl = engine
        self.source = source
        self.options = options
        self._vocab = frozenset(engine.vocabulary())

    @property
    def engine(self) -> str:
        return self.engine_impl.name

    @property
    def device(self) -> str:
        return self.engine_impl.device

    @property
    def compute_type(self) -> str:
        return self.engine_impl.compute_type

    @classmethod
    def load(
        cls,
        source: str | os.PathLike | None = None,
        engine: str = "auto",
        device: str = "auto",
        options: RecognizerOptions = RecognizerOptions(),
    ) -> "Recognizer":
        """A recogniser for ``source`` (None / "whisper-base": zero-shot bootstrapped base; else a model folder).
        ``engine``: "auto" (DEFAULT_ENGINE of the device), "ct2" or "hf"; ``device``: "auto", "cpu" or "cuda".
        Raises WeightsError for a missing model folder or a missing CTranslate2 export with engine="ct2"."""
        if engine not in ("auto", *ENGINES):
            raise ValueError(f"engine {engine!r}: use 'auto', 'ct2' or 'hf'")
        if device not in ("auto", *DEVICES):
            raise ValueError(f"device {device!r}: use 'auto', 'cpu' or 'cuda'")
        src = resolve_source(source)
        if device == "auto":
            device = "cuda" if _cuda_available("ct2" if engine == "auto" else engine) else "cpu"
        if engine == "auto":
            engine = DEFAULT_ENGINE[device]
            if engine == "ct2" and src.hf_dir is not None and src.ct2_dir is None:
                print(
                    f"recognizer: {src.name} has no CTranslate2 export ({CT2_SUBDIR}/); using the slower hf engine. "
                    f"Export it: python -m models.asr.export {src.name}",
                    file=sys.stderr,
                )
                engine = "hf"
        if engine == "ct2":
            folder = src.ct2_dir or (ct2_model_dir() if src.name == "whisper-base" else None)
            if folder is None:
                raise WeightsError(
                    f"{src.name}: no CTranslate2 export ({Path(src.name) / CT2_SUBDIR}/model.bin) for engine ct2; "
                    f"run `python -m models.asr.export {src.name}` or use engine='hf'"
                )
            impl: _CT2Engine | _HFEngine = _CT2Engine(folder, device, options)
        else:
            folder = src.hf_dir or (whisper_base_hf() if src.name == "whisper-base" else None)
            if folder is None:
                raise WeightsError(
                    f"{src.name}: a CTranslate2 folder only; engine hf needs the transformers model folder"
                )
            impl = _HFEngine(folder, device, options)
        return cls(impl, src, options)

    # -- prompts ---------------------------------------------------------------------------------------
    def prompt(self, dialect: str | None, hotwords: Sequence[str] = ()) -> str:
        """The text after <|startofprev|> for ``dialect`` and ``hotwords`` (plus the options' hotwords)."""
        use_dialect = self.options.dialect_prompt if self.options.dialect_prompt is not None else self.source.fine_tuned
        return dialect_prompt(
            dialect if use_dialect else None, (*self.options.hotwords, *(hotwords or ())), prompts=self.source.dialect_prompts
        )

    def language(self, dialect: str | None) -> str:
        lang = language_for(dialect, self._vocab)
        return lang if dialect is not None else self.source.language

    def decoder_prefix(self, dialect: str | None, hotwords: Sequence[str] = ()) -> list[int]:
        """Token ids the decoder starts from: [<|startofprev|> prompt] <|startoftranscript|> <|lang|> ..."""
        tokens = self.engine_impl.tokens
        return prompt_token_ids(tokens, self.prompt(dialect, hotwords)) + decoder_prefix_ids(
            tokens, self.language(dialect)
        )

    # -- public API ------------------------------------------------------------------------------------
    def transcribe(
        self,
        audio: AudioInput,
        dialect: str | None = None,
        hotwords: Sequence[str] = (),
        channel: int | None = None,
        sample_rate: int = SAMPLE_RATE,
    ) -> Transcript:
        """Transcribe one input: a file path (any rate, mono or stereo) or a float array at ``sample_rate``.
        ``channel`` picks one channel of a multi-channel input (None: channels mixed down)."""
        return self.transcribe_batch([audio], [dialect], hotwords, channel=channel, sample_rate=sample_rate)[0]

    def transcribe_batch(
        self,
        audios: Sequence[AudioInput],
        dialects: Sequence[str | None] | str | None = None,
        hotwords: Sequence[str] = (),
        channel: int | None = None,
        sample_rate: int = SAMPLE_RATE,
    ) -> list[Transcript]:
        """Transcribe many inputs (short utterances are batched ``options.batch_size`` at a time through the
        decoder); ``dialects`` is one dialect for all or one per input."""
        return [t for t, _ in self._transcribe_batch(audios, dialects, hotwords, channel, sample_rate)]

    def _transcribe_batch(
        self,
        audios: Sequence[AudioInput],
        dialects: Sequence[str | None] | str | None = None,
        hotwords: Sequence[str] = (),
        channel: int | None = None,
        sample_rate: int = SAMPLE_RATE,
    ) -> list[tuple[Transcript, list[dict[str, Any]]]]:
        """:meth:`transcribe_batch`, each transcript with what the gate saw: one dict per piece of audio
        (start, end, gated: None / "vad" / "no_speech", and for decoded pieces text, avg_logprob, no_speech_prob).
        For models.asr.hallucination; the transcripts are exactly what transcribe_batch returns."""
        dialect_list = _per_item(dialects, len(audios))
        jobs: list[_Job] = []
        durations: list[float] = []
        vad_gated: list[bool] = []
        for i, (item, dialect) in enumerate(zip(audios, dialect_list)):
            mono = _mono(_read(item, sample_rate, channel), channel, item)
            durations.append(len(mono) / SAMPLE_RATE)
            prefix = tuple(self.decoder_prefix(dialect, hotwords))
            use_vad = durations[-1] > self.options.vad_min_seconds
            vad_gated.append(not use_vad and self.options.vad_gate and not self.has_speech(mono))
            if not vad_gated[-1]:
                jobs.extend(self._jobs(i, mono, prefix, use_vad=use_vad))
        decoded = self._decode(jobs)
        out = []
        for i in range(len(audios)):
            mine = [(j, d) for j, d in zip(jobs, decoded) if j.item == i]
            details = [
                {"start": j.start, "end": j.end, "gated": "no_speech" if self.is_no_speech(d) else None,
                 "text": d.text, "avg_logprob": d.avg_logprob, "no_speech_prob": d.no_speech_prob}
                for j, d in mine
            ]  # fmt: skip
            if vad_gated[i]:
                details = [{"start": 0.0, "end": round(durations[i], 3), "gated": "vad"}]
            out.append((self._transcript(mine, dialect_list[i], durations[i]), details))
        return out

    def transcribe_call(
        self,
        call: AudioInput,
        dialect: str | None = None,
        hotwords: Sequence[str] = (),
        agent_channel: int = 0,
        customer_channel: int = 1,
        sample_rate: int = SAMPLE_RATE,
    ) -> Transcript:
        """Transcribe a stereo call (path or (2, samples) array): each channel is cut into speech segments by VAD,
        labelled "agent" / "customer", and the segments are returned in time order. The dialect (the
        customer's) and hotwords apply to both sides. A mono call is transcribed with VAD, unlabelled."""
        audio = _read(call, sample_rate, channel=None, keep_channels=True)
        if audio.ndim == 1 or audio.shape[0] == 1:
            mono = audio if audio.ndim == 1 else audio[0]
            channels = [(mono, None, None)]
        else:
            for name, ch in (("agent_channel", agent_channel), ("customer_channel", customer_channel)):
                if not 0 <= ch < audio.shape[0]:
                    raise AudioError(f"{_name(call)}: {name}={ch} but the audio has {audio.shape[0]} channels")
            channels = [
                (audio[agent_channel], "agent", agent_channel),
                (audio[customer_channel], "customer", customer_channel),
            ]
        prefix = tuple(self.decoder_prefix(dialect, hotwords))
        jobs: list[_Job] = []
        for mono, speaker, ch in channels:
            if is_silent(mono):
                continue
            jobs.extend(replace(j, speaker=speaker, channel=ch) for j in self._jobs(0, mono, prefix, use_vad=True))
        decoded = self._decode(jobs)
        return self._transcript(list(zip(jobs, decoded)), dialect, audio.shape[-1] / SAMPLE_RATE)

    def warm_up(self) -> None:
        """One decode of a second of quiet noise past the no-speech gate (which would stop it before the decoder), and
        one VAD check, so the first caller does not pay for lazy initialisation of the engine, tokenizer and VAD."""
        noise = np.random.default_rng(0).normal(0.0, 1e-3, SAMPLE_RATE).astype(np.float32)
        self.has_speech(noise)
        prefix = tuple(self.decoder_prefix(None))
        self._decode(self._jobs(0, noise, prefix, use_vad=False))

    def has_speech(self, mono: np.ndarray) -> bool:
        """The VAD check of ``vad_gate``: does silero-vad find any speech in 16 kHz ``mono`` audio (at
        ``vad_gate_threshold``, the other ``vad`` settings as they are)?"""
        return bool(speech_segments(mono, replace(self.options.vad, threshold=self.options.vad_gate_threshold)))

    def is_no_speech(self, decoded: Decoded) -> bool:
        """openai/whisper's no-speech rule on one decoded segment: P(no speech) above ``no_speech_threshold`` and
        avg_logprob not above ``logprob_threshold`` (a confident decode is kept whatever P(no speech) says)."""
        o = self.options
        if o.no_speech_threshold is None or decoded.no_speech_prob is None:
            return False
        if decoded.no_speech_prob <= o.no_speech_threshold:
            return False
        return o.logprob_threshold is None or decoded.avg_logprob <= o.logprob_threshold

    # -- internals -------------------------------------------------------------------------------------
    def _jobs(self, item: int, mono: np.ndarray, prefix: tuple[int, ...], use_vad: bool) -> list[_Job]:
        duration = len(mono) / SAMPLE_RATE
        if not use_vad:
            return [_Job(item, mono, 0.0, duration, prefix)]
        jobs = []
        for start, end in speech_segments(mono, self.options.vad):
            piece = mono[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
            if len(piece) >= MIN_AUDIO_SECONDS * SAMPLE_RATE:
                jobs.append(_Job(item, piece, round(start, 3), round(end, 3), prefix))
        return jobs

    def _decode(self, jobs: list[_Job]) -> list[Decoded]:
        """What the engine decoded per job (the gate is applied later); jobs sharing a prompt are decoded
        ``batch_size`` at a time. Each job is decoded on its own: its prefix holds the dialect prompt and hotwords,
        never the text of an earlier job (no conditioning on previous text), and a batch's items do not interact."""
        out: list[Decoded | None] = [None] * len(jobs)
        groups: dict[tuple[int, ...], list[int]] = {}
        for k, job in enumerate(jobs):
            groups.setdefault(job.prefix, []).append(k)
        bs = max(1, self.options.batch_size)
        batches = [
            (prefix, idx[s : s + bs]) for prefix, idx in groups.items() for s in range(0, len(idx), bs)
        ]
        if self.options.progress and len(batches) > 1:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc=f"asr {self.engine}", unit="batch")
        for prefix, idx in batches:
            for k, result in zip(idx, self.engine_impl.decode([jobs[k].audio for k in idx], list(prefix))):
                out[k] = result
        return out  # type: ignore[return-value]

    def _transcript(self, decoded: list[tuple[_Job, Decoded]], dialect: str | None, duration: float) -> Transcript:
        """The transcript of one input; segments the no-speech rule drops are left out (no segment, no text)."""
        decoded = sorted(decoded, key=lambda jd: (jd[0].start, jd[0].channel or 0))
        segments = tuple(
            Segment(job.start, job.end, d.text, job.speaker, job.channel, round(d.avg_logprob, 4))
            for job, d in decoded
            if not self.is_no_speech(d)
        )
        return Transcript(
            segments=segments,
            text=join_texts(s.text for s in segments),
            dialect=dialect,
            language=self.language(dialect),
            duration=round(duration, 3),
            engine=self.engine,
        )


def join_texts(texts: Iterable[str]) -> str:
    """Segment texts joined: no space between Chinese text, one space where both sides are Latin letters/digits."""
    out = ""
    for text in texts:
        text = text.strip()
        if not text:
            continue
        if out and out[-1].isascii() and out[-1].isalnum() and text[0].isascii() and text[0].isalnum():
            out += " "
        out += text
    return out


def _per_item(dialects: Sequence[str | None] | str | None, n: int) -> list[str | None]:
    if dialects is None or isinstance(dialects, str):
        return [dialects] * n
    dialects = list(dialects)
    if len(dialects) != n:
        raise ValueError(f"dialects has {len(dialects)} entries for {n} inputs; give one per input or one for all")
    return dialects


def _name(item: AudioInput) -> str:
    return str(item) if isinstance(item, (str, os.PathLike)) else f"array{tuple(np.shape(item))}"


def _read(item: AudioInput, sample_rate: int, channel: int | None, keep_channels: bool = False) -> np.ndarray:
    """16 kHz float32: (samples,) for a mono input, (channels, samples) for a multi-channel one. Raises
    AudioError (naming the file) for unreadable, empty, too short or silent input."""
    if isinstance(item, (str, os.PathLike)):
        audio = load_audio_channels(item, SAMPLE_RATE, allow_silent=keep_channels or channel is not None)
        return audio[0] if audio.shape[0] == 1 else audio
    audio = np.asarray(item, dtype=np.float32)
    name = _name(item)
    if audio.ndim not in (1, 2) or audio.shape[-1] == 0:
        raise AudioError(f"{name}: expected audio samples (samples,) or (channels, samples), got shape {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{name}: holds NaN or infinite samples")
    if audio.shape[-1] / sample_rate < MIN_AUDIO_SECONDS:
        raise AudioError(
            f"{name}: too short ({audio.shape[-1] / sample_rate * 1000:.0f} ms at {sample_rate} Hz; at least "
            f"{MIN_AUDIO_SECONDS * 1000:.0f} ms is needed)"
        )
    return resample(np.clip(audio, -1.0, 1.0), sample_rate, SAMPLE_RATE)


def _mono(audio: np.ndarray, channel: int | None, item: AudioInput) -> np.ndarray:
    if audio.ndim == 1:
        if channel not in (None, 0):
            raise AudioError(f"{_name(item)}: channel={channel} asked for, but the audio is mono")
        return audio
    if channel is None:
        return audio.mean(axis=0).astype(np.float32)
    if not 0 <= channel < audio.shape[0]:
        raise AudioError(f"{_name(item)}: channel={channel} but the audio has {audio.shape[0]} channels")
    return audio[channel]
