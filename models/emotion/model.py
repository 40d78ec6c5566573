"""The embedded emotion model: a small head on frozen Whisper encoder features and prosodic features.

    model = load_emotion_model("path/to/model_dir")
    result = model.classify(audio_16k)    # EmotionResult(emotion, confidence, probs, arousal)

The head sees, per utterance, the mean and std over time of chosen encoder layers (``layers``) of a centre
crop of at most ``max_seconds``, and/or the :mod:`prosody` features of the whole utterance; it predicts the
taxonomy's emotions (softmax, temperature-calibrated) and a continuous arousal score in [0, 1].

With ``speaker_norm`` set, the head's inputs are taken relative to the caller's own statistics
(:mod:`models.emotion.normalise`): ``classify_many(audios, speakers=[...])`` normalises each speaker's utterances
together, ``classify_many(segments, causal=True)`` normalises a call's segments with the ones heard so far.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from data.audio import SAMPLE_RATE
from models.emotion.encoder_features import WHISPER_BASE, LazyEncoderFeatures, WhisperEncoderFeatures, select_layers
from models.emotion.normalise import NORM_MODES, PopulationPrior, SpeakerStats, normalise_causal, normalise_groups
from models.emotion.prosody import FEATURE_NAMES as PROSODY_NAMES
from models.emotion.prosody import prosody_features
from models.lazy import lazy_attribute
from models.taxonomy import EMOTIONS

CONFIG_FILE = "emotion_model.json"  # model directory: configuration, labels, normalisation, temperature
WEIGHTS_FILE = "head.safetensors"  # model directory: the head's weights
ENCODER_DIR = "encoder"  # model directory: a non-default encoder, saved with the head
FORMAT_VERSION = 1
PRIOR_MEAN, PRIOR_VAR = "speaker_norm.mean", "speaker_norm.var"  # weights file: the population prior (speaker_norm)

# Arousal (activation) of each emotion on the circumplex, 0 = calm/low energy, 1 = highly activated. The
# training target of the arousal head (the corpora label emotions, not arousal); callers read it as a score.
AROUSAL = {"neutral": 0.3, "angry": 0.95, "anxious": 0.8, "sad": 0.15, "happy": 0.65}


def arousal_targets(labels: Sequence[str]) -> np.ndarray:
    """The :data:`AROUSAL` value of each label (a label it lacks gets the neutral value)."""
    return np.array([AROUSAL.get(lab, AROUSAL["neutral"]) for lab in labels], dtype=np.float32)


@dataclass(frozen=True)
class EmotionModelConfig:
    encoder: str = WHISPER_BASE  # frozen encoder: "whisper-base" or a local Whisper folder
    use_encoder: bool = True  # feed pooled encoder states to the head
    use_prosody: bool = True  # feed prosodic features to the head
    layers: tuple[int, ...] = (2, 4)  # encoder layers pooled (0 = input embeddings; the encoder runs up to the largest)
    max_seconds: float = 3.0  # s: centre crop of the utterance the encoder sees (prosody sees it all)
    hidden: int = 256  # head hidden units
    dropout: float = 0.3  # head dropout (also on the input features)
    arousal_weight: float = 0.5  # weight of the arousal regression loss next to the classification loss
    speaker_norm: str = "none"  # none | mean | meanstd: head inputs relative to the caller's own statistics
    speaker_norm_prior: float = 4.0  # pseudo-utterances of population statistics mixed into each caller's


@dataclass(frozen=True)
class EmotionResult:
    emotion: str  # the most likely emotion
    confidence: float  # its calibrated probability
    probs: dict[str, float]  # emotion -> calibrated probability
    arousal: float  # 0 (calm) .. 1 (highly activated)

    @property
    def label(self) -> str:
        """The emotion, under the name the pipeline's AudioClassifier protocol reads."""
        return self.emotion


def inverse_frequency_weights(y: Sequence[int], n_classes: int) -> np.ndarray:
    """Loss weights (float32) that give every class present in ``y`` the same total weight; absent classes get 0."""
    counts = np.bincount(np.asarray(y), minlength=n_classes).astype(np.float64)
    return np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / n_classes, 0.0).astype(np.float32)


def centre_crop(audio: np.ndarray, max_seconds: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The middle ``max_seconds`` of ``audio`` (all of it when shorter)."""
    n = int(max_seconds * sample_rate)
    if max_seconds <= 0 or len(audio) <= n:
        return audio
    start = (len(audio) - n) // 2
    return audio[start : start + n]


def compute_layers(cfg: EmotionModelConfig) -> int:
    """How many encoder layers must run for ``cfg.layers`` (non-negative indices)."""
    if any(k < 0 for k in cfg.layers):
        raise ValueError(f"model.layers {list(cfg.layers)} must be >= 0 (0 = input embeddings, N = layer N)")
    return max(cfg.layers) if cfg.layers else 0


class EmotionHead(torch.nn.Module):
    """Standardise features, then an MLP with an emotion classifier and an arousal regressor."""

    def __init__(self, in_dim: int, n_classes: int, hidden: int, dropout: float, arousal_weight: float = 0.5) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("std", torch.ones(in_dim))
        self.register_buffer("class_weights", torch.ones(n_classes))
        self.arousal_weight = arousal_weight
        self.body = torch.nn.Sequential(
            torch.nn.Dropout(dropout * 0.5),
            torch.nn.Linear(in_dim, hidden),
            torch.nn.GELU(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(hidden, hidden),
            torch.nn.GELU(),
            torch.nn.Dropout(dropout),
        )
        self.classifier = torch.nn.Linear(hidden, n_classes)
        self.arousal = torch.nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, arousal: torch.Tensor | None = None) -> dict:
        h = self.body((x - self.mean) / self.std)
        logits = self.classifier(h)
        a = torch.sigmoid(self.arousal(h)).squeeze(-1)
        out = {"logits": logits, "arousal": a}
        if y is not None:
            loss = torch.nn.functional.cross_entropy(logits, y, weight=self.class_weights)
            if arousal is not None:
                loss = loss + self.arousal_weight * torch.nn.functional.mse_loss(a, arousal)
            out["loss"] = loss
        return out


class SingleUtteranceClassifier:
    """``classify`` of one utterance for every backend, through the backend's batched ``classify_many``."""

    def classify(self, audio_16k: np.ndarray) -> EmotionResult:
        """The emotion of one 16 kHz mono utterance."""
        audio = np.asarray(audio_16k, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise ValueError(f"classify expects non-empty mono 16 kHz audio (samples,), got shape {audio.shape}")
        return self.classify_many([audio])[0]  # type: ignore[attr-defined]


class EmotionModel(SingleUtteranceClassifier, LazyEncoderFeatures):
    """Frozen-encoder + prosody emotion classifier. Build with :meth:`create`, load with :func:`load_emotion_model`."""

    backend = "whisper"

    def __init__(self, cfg: EmotionModelConfig, labels: Sequence[str], head: EmotionHead, temperature: float = 1.0,
                 featurizer: WhisperEncoderFeatures | None = None, prior: PopulationPrior | None = None) -> None:
        self.cfg = cfg
        self.labels = tuple(labels)
        self.net = head
        self.temperature = float(temperature)
        self._featurizer = featurizer
        self.prior = prior  # the population prior of speaker normalisation (set by fit_speaker_prior)

    # -- construction ------------------------------------------------------------------------------
    @staticmethod
    def input_dim(cfg: EmotionModelConfig, d_model: int) -> int:
        return (len(cfg.layers) * 2 * d_model if cfg.use_encoder else 0) + (len(PROSODY_NAMES) if cfg.use_prosody else 0)

    @classmethod
    def create(cls, cfg: EmotionModelConfig, labels: Sequence[str] = EMOTIONS, d_model: int | None = None,
               featurizer: WhisperEncoderFeatures | None = None) -> "EmotionModel":
        """An untrained model; ``d_model`` (the encoder width) is read from ``featurizer`` when not given."""
        if not (cfg.use_encoder or cfg.use_prosody):
            raise ValueError("model.use_encoder and model.use_prosody are both false: the head would see no features")
        if cfg.use_encoder and d_model is None:
            featurizer = featurizer or WhisperEncoderFeatures.load(cfg.encoder)
            d_model = featurizer.spec.d_model
        compute_layers(cfg)
        if cfg.speaker_norm not in NORM_MODES:
            raise ValueError(f"model.speaker_norm '{cfg.speaker_norm}' is not one of {', '.join(NORM_MODES)}")
        head = EmotionHead(cls.input_dim(cfg, d_model or 0), len(labels), cfg.hidden, cfg.dropout, cfg.arousal_weight)
        return cls(cfg, labels, head, 1.0, featurizer)

    def set_normalisation(self, x: np.ndarray, y: Sequence[int] | None = None) -> None:
        """Feature mean/std from training inputs ``x``; inverse-frequency class weights from labels ``y``."""
        x = torch.as_tensor(x, dtype=torch.float32)
        self.net.mean.copy_(x.mean(0))
        self.net.std.copy_(x.std(0).clamp(min=1e-4))
        if y is not None:
            self.net.class_weights.copy_(torch.as_tensor(inverse_frequency_weights(y, len(self.labels))))

    # -- speaker normalisation -----------------------------------------------------------------------
    @property
    def normalises(self) -> bool:
        """Whether head inputs are taken relative to the caller's statistics (``speaker_norm`` is not none)."""
        return self.cfg.speaker_norm != "none"

    def fit_speaker_prior(self, rows: np.ndarray, speakers: Sequence[str] | None = None) -> None:
        """The population prior from training rows (raw head inputs, :meth:`inputs`) and their speakers."""
        self.prior = PopulationPrior.fit(rows, self.cfg.speaker_norm_prior, speakers)

    def _prior(self) -> PopulationPrior:
        if self.prior is None:
            raise RuntimeError("speaker_norm is set but the population prior is missing: call fit_speaker_prior "
                               "on the training rows before normalising (a saved model carries it)")
        return self.prior

    def new_caller(self) -> SpeakerStats:
        """Empty running statistics of one caller (add rows of :meth:`inputs` as segments are heard)."""
        return SpeakerStats(int(self.net.mean.numel()))

    def normalise(self, rows: np.ndarray, speakers: Sequence[str] | None = None, causal: bool = False,
                  history: SpeakerStats | None = None) -> np.ndarray:
        """Raw head inputs made relative to their caller (identity when ``speaker_norm`` is none).

        ``causal``: the rows are one caller's segments in time order, each normalised with the ones before it
        (and ``history``, the caller's earlier statistics). Otherwise rows of the same ``speakers`` key are
        normalised together; without ``speakers`` every row is its own caller (the population prior dominates)."""
        x = np.asarray(rows, dtype=np.float32)
        if not self.normalises:
            return x
        if causal:
            return normalise_causal(x, self._prior(), self.cfg.speaker_norm, history)
        if history is not None:
            return np.stack([history.copy().add(r).normalise(r[None], self._prior(), self.cfg.speaker_norm)[0]
                             for r in x]) if len(x) else x
        keys = list(speakers) if speakers is not None else list(range(len(x)))
        return normalise_groups(x, keys, self._prior(), self.cfg.speaker_norm)

    # -- features ----------------------------------------------------------------------------------
    def raw_features(self, audios: Sequence[np.ndarray]) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(pooled encoder states (n, layers + 1, 2, d) or None, prosody (n, F) or None) of 16 kHz utterances."""
        enc = pro = None
        if self.cfg.use_encoder:
            crops = [centre_crop(np.asarray(a, dtype=np.float32), self.cfg.max_seconds) for a in audios]
            enc = self.featurizer.pooled_many(crops, n_layers=compute_layers(self.cfg))
        if self.cfg.use_prosody:
            pro = np.stack([prosody_features(a, SAMPLE_RATE) for a in audios]) if len(audios) else np.zeros((0, len(PROSODY_NAMES)))
        return enc, pro

    def inputs(self, encoder: np.ndarray | None, prosody: np.ndarray | None) -> np.ndarray:
        """The head's input rows from raw features (cached or fresh)."""
        parts = []
        if self.cfg.use_encoder:
            if encoder is None:
                raise ValueError("this model uses encoder features but none were given")
            parts.append(select_layers(encoder, self.cfg.layers))
        if self.cfg.use_prosody:
            if prosody is None:
                raise ValueError("this model uses prosodic features but none were given")
            parts.append(np.asarray(prosody, dtype=np.float32))
        return np.concatenate(parts, axis=1).astype(np.float32)

    # -- prediction --------------------------------------------------------------------------------
    @torch.no_grad()
    def scores(self, x: np.ndarray, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
        """(logits (n, classes), arousal (n,)) of head inputs ``x`` (uncalibrated logits)."""
        self.net.eval()
        logits, arousal = [], []
        for i in range(0, len(x), batch_size):
            out = self.net(torch.as_tensor(x[i : i + batch_size], dtype=torch.float32))
            logits.append(out["logits"].numpy())
            arousal.append(out["arousal"].numpy())
        if not logits:
            return np.zeros((0, len(self.labels)), np.float32), np.zeros(0, np.float32)
        return np.concatenate(logits), np.concatenate(arousal)

    def probs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(calibrated probabilities, arousal) of head inputs ``x``."""
        from models.calibration import softmax

        logits, arousal = self.scores(x)
        return softmax(logits, self.temperature), arousal

    def classify_many(self, audios: Sequence[np.ndarray], speakers: Sequence[str] | None = None, causal: bool = False,
                      history: SpeakerStats | None = None) -> list[EmotionResult]:
        """:meth:`classify` for several 16 kHz utterances (batched); ``speakers``/``causal``/``history`` give the
        caller context of a speaker-normalising model (see :meth:`normalise`; ignored by other models)."""
        x = self.normalise(self.inputs(*self.raw_features(audios)), speakers, causal, history)
        probs, arousal = self.probs(x)
        return [result(p, a, self.labels) for p, a in zip(probs, arousal)]

    # -- persistence -------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write the head, its configuration and (unless it is whisper-base) the encoder to ``folder``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        encoder = self.cfg.encoder
        if self.cfg.use_encoder and encoder != WHISPER_BASE:
            self.featurizer.save_encoder(folder / ENCODER_DIR)
            encoder = ENCODER_DIR
        meta = {
            "format_version": FORMAT_VERSION,
            "backend": self.backend,
            "labels": list(self.labels),
            "temperature": self.temperature,
            "config": {**asdict(self.cfg), "encoder": encoder, "layers": list(self.cfg.layers)},
            "input_dim": int(self.net.mean.numel()),
            "prosody_features": list(PROSODY_NAMES),
            "arousal": AROUSAL,
        }
        (folder / CONFIG_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        tensors = {k: v.contiguous() for k, v in self.net.state_dict().items()}
        if self.normalises:
            prior = self._prior()
            tensors[PRIOR_MEAN] = torch.as_tensor(prior.mean, dtype=torch.float32)
            tensors[PRIOR_VAR] = torch.as_tensor(prior.var, dtype=torch.float32)
        save_file(tensors, str(folder / WEIGHTS_FILE))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, meta: Mapping | None = None) -> "EmotionModel":
        from safetensors.torch import load_file

        folder = Path(folder)
        meta = meta or json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        c = dict(meta["config"])
        if c["encoder"] == ENCODER_DIR:
            c["encoder"] = str(folder / ENCODER_DIR)
        c["layers"] = tuple(c["layers"])
        cfg = EmotionModelConfig(**c)
        head = EmotionHead(int(meta["input_dim"]), len(meta["labels"]), cfg.hidden, cfg.dropout, cfg.arousal_weight)
        tensors = load_file(str(folder / WEIGHTS_FILE))
        prior = None
        if PRIOR_MEAN in tensors:
            prior = PopulationPrior(tensors.pop(PRIOR_MEAN).numpy(), tensors.pop(PRIOR_VAR).numpy(), cfg.speaker_norm_prior)
        elif cfg.speaker_norm != "none":
            raise ValueError(f"{folder / WEIGHTS_FILE}: speaker_norm is '{cfg.speaker_norm}' but the file has no "
                             f"{PRIOR_MEAN}: the model directory is incomplete; save it again with EmotionModel.save")
        head.load_state_dict(tensors)
        return cls(cfg, meta["labels"], head.eval(), float(meta.get("temperature", 1.0)), prior=prior)


def result(probs: np.ndarray, arousal: float, labels: Sequence[str]) -> EmotionResult:
    k = int(np.argmax(probs))
    return EmotionResult(labels[k], float(probs[k]), {lab: float(p) for lab, p in zip(labels, probs)}, float(arousal))


def load_emotion_model(folder: str | os.PathLike):
    """The emotion model saved in ``folder`` (either backend): it has ``classify(audio_16k)``."""
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: no {CONFIG_FILE}; pass a directory written by EmotionModel.save or `hotline train emotion --out`")
    meta = json.loads(path.read_text(encoding="utf-8"))
    if meta.get("backend") == "hf":
        from models.emotion.hf_backend import HFEmotionModel

        return HFEmotionModel.load(folder, meta)
    return EmotionModel.load(folder, meta)


# -- MLflow pyfunc flavour ------------------------------------------------------------------------------
PYFUNC_ARTIFACT = "emotion_model"  # inside a logged MLflow model: artifacts/<this>/ is the saved model directory


def _pyfunc_class():
    import mlflow

    class EmotionPyfuncModel(mlflow.pyfunc.PythonModel):
        """MLflow pyfunc flavour of a saved emotion model: audio file paths in (a one-column DataFrame or a
        list), one ``{"emotion", "confidence", "probs", "arousal"}`` per file out."""

        def load_context(self, context) -> None:
            self.model = load_emotion_model(context.artifacts[PYFUNC_ARTIFACT])

        def predict(self, context, model_input: list[str], params: dict[str, str] | None = None) -> list[dict]:
            from data.audio import load_audio

            paths = [model_input] if isinstance(model_input, str) else [str(p) for p in model_input]
            results = self.model.classify_many([load_audio(p, SAMPLE_RATE) for p in paths])
            return [asdict(r) for r in results]

    return EmotionPyfuncModel


def loaded_from_mlflow(path: str | os.PathLike) -> Path:
    """The saved model directory (the folder holding :data:`CONFIG_FILE`) at or under ``path``: a model directory
    itself, or a downloaded MLflow model folder (``artifacts/<name>/``, whatever MLflow named it)."""
    from models.folders import find_model_dir

    return find_model_dir(Path(path), marker=CONFIG_FILE)


__getattr__ = lazy_attribute(globals(), "EmotionPyfuncModel", _pyfunc_class)  # mlflow is imported on first use only
