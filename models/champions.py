"""The read side of the model registry: which champions exist, where they are, and loading them for inference.

``hotline predict``/``evaluate`` (training/) and the service (serving/) both load champions through here, so
serving never imports training. The write side (registering and promoting) stays in ``training/registry.py``.

Tracking URI: ``MLFLOW_TRACKING_URI`` when set, else ``sqlite:///<repo>/mlruns/mlflow.db``. mlflow is imported
inside the functions, so importing this module is cheap.

Components of a call (:func:`load_components`): the ``intent`` champion (required), the recogniser (the ``asr``
champion, else the pretrained whisper-base: audio is never understood from a reference text by default), and the
``dialect`` and ``emotion`` champions when they exist. A missing optional model is listed in
``Components.absent`` and reported as absent, never replaced by a guess.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from models.folders import find_model_dir

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO_ROOT / "mlruns"  # default home of the tracking database and artifacts
DB_NAME = "mlflow.db"  # sqlite file inside DEFAULT_DIR
CHAMPION = "champion"  # registry alias of the served version
INTENT_MODEL = "intent"  # registered model name of the intent/slot model
TRAIN_HINT = "hotline train intent --config training/configs/intent.yaml"
PRETRAINED_ASR = "whisper-base (pretrained)"  # version label of the recogniser used without an asr champion
# Speech components: registered model name -> (pipeline argument, loader taking the downloaded model directory).
SPEECH_COMPONENTS: dict[str, tuple[str, str]] = {
    "dialect": ("dialect", "models.champions:load_dialect_component"),
    "asr": ("asr", "models.champions:load_asr_component"),
    "emotion": ("emotion", "models.champions:load_emotion_component"),
}
OPTIONAL_HINTS = {
    "dialect": "dialect ID: train it with `hotline train dialect`",
    "emotion": "speech emotion: train it with `hotline train emotion`",
}


class SetupError(RuntimeError):
    """Something a command needs is missing (no champion, no manifest); the message says what to do."""


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the repository's sqlite database (its folder is created)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        if uri.startswith("sqlite:///"):
            Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        return uri
    DEFAULT_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DEFAULT_DIR / DB_NAME}"


def champion_uri(model_name: str) -> str:
    """``models:/<model_name>@champion``."""
    return f"models:/{model_name}@{CHAMPION}"


def client():
    """An ``MlflowClient`` on :func:`tracking_uri` (mlflow's default URI set to it too)."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri())
    return MlflowClient(tracking_uri=tracking_uri())


def champion_version(model_name: str):
    """The registry's ``ModelVersion`` holding @champion for ``model_name``, or None. Inside a Bento
    (``HOTLINE_MODEL_SOURCE=bentoml``) the bundled model's version instead (models/bundled.py)."""
    from models.bundled import bundled_version, from_bento

    if from_bento():
        return bundled_version(model_name)
    from mlflow.exceptions import MlflowException

    c = client()
    try:
        return c.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:  # no such model, or no such alias
        return None


def version_info(mv) -> dict[str, Any]:
    """What a response or a bundle label says of a registered version: version, run id, source and the run's metrics."""
    info: dict[str, Any] = {"version": str(mv.version), "run_id": str(mv.run_id), "source": str(mv.source)}
    from models.bundled import from_bento

    if from_bento():
        return info
    try:
        info["metrics"] = dict(client().get_run(mv.run_id).data.metrics)
    except Exception:  # noqa: BLE001 - a run deleted from the store: the version still loads
        info["metrics"] = {}
    return info


def download_champion(name: str) -> tuple[Path, dict[str, str]]:
    """Download ``models:/<name>@champion`` to a local folder; returns (folder, version info). The folder is
    what the model was logged as (for a pyfunc model: ``MLmodel`` and ``artifacts/``); loaders resolve it.

    Raises :class:`SetupError` naming the command to run when the registry has no champion. Inside a Bento the
    bundled folder is returned instead (models/bundled.py).
    """
    from models.bundled import bundled_info, load_bundled

    if (bundled := load_bundled(name)) is not None:
        return bundled, bundled_info(name)
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    mv = champion_version(name)
    if mv is None:
        hint = TRAIN_HINT if name == INTENT_MODEL else f"hotline train {name}"
        raise SetupError(f"no champion '{name}' model in the MLflow registry ({tracking_uri()}): run `{hint}` first")
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=champion_uri(name))
    except Exception as e:  # noqa: BLE001 - say which version could not be fetched, and from where
        raise SetupError(
            f"could not download champion '{name}' version {mv.version} (source {mv.source}) from {tracking_uri()}: "
            f"{e}. Are its artifacts still there? Retrain with `hotline train {name}`"
        ) from e
    info = {"version": str(mv.version), "run_id": str(mv.run_id), "source": str(mv.source)}
    return Path(local), info


def _import(spec: str) -> Callable:
    import importlib

    module, func = spec.split(":")
    return getattr(importlib.import_module(module), func)


@dataclass
class Components:
    intent_model: Any = None  # models.intent.understand.IntentModel
    speech: dict[str, Any] = field(default_factory=dict)  # pipeline argument -> component
    versions: dict[str, dict[str, str]] = field(default_factory=dict)  # model name -> {version, run_id, source}
    absent: dict[str, str] = field(default_factory=dict)  # model name -> why it is absent and how to get it
    notes: list[str] = field(default_factory=list)  # what was skipped and why


def load_intent_component(directory: Path):
    from models.intent.understand import load_intent_model

    try:
        return load_intent_model(directory)
    except FileNotFoundError:  # the saved directory sits deeper inside the logged model than the loader looks
        return load_intent_model(find_model_dir(directory))


def load_components(recogniser: str = "auto", names: tuple[str, ...] = ("intent", "dialect", "asr", "emotion")
                    ) -> Components:
    """The champions that exist, for the models in ``names``. ``recogniser``: "auto" (the ``asr`` champion, else the
    pretrained whisper-base), "pretrained" (whisper-base even when a champion exists) or "none" (no recogniser:
    audio records are understood from their reference text, an oracle for measuring understanding alone)."""
    if recogniser not in ("auto", "pretrained", "none"):
        raise ValueError(f"recogniser={recogniser!r}: use 'auto', 'pretrained' or 'none'")
    comps = Components()
    if INTENT_MODEL in names:
        directory, info = download_champion(INTENT_MODEL)
        comps.intent_model = load_intent_component(directory)
        comps.versions[INTENT_MODEL] = info
    for name, (arg, loader) in SPEECH_COMPONENTS.items():
        if name not in names:
            continue
        if name == "asr":
            if recogniser == "none":
                comps.notes.append("no recogniser (recogniser='none'): audio records are understood from their "
                                   "reference 'text'")
                continue
            if recogniser == "pretrained" or champion_version("asr") is None:
                comps.speech[arg] = load_pretrained_recognizer()
                comps.versions[name] = {"version": PRETRAINED_ASR, "run_id": "", "source": "whisper-base"}
                if recogniser == "auto":
                    comps.notes.append("no 'asr' champion: the pretrained whisper-base recogniser is used")
                continue
        elif champion_version(name) is None:
            comps.absent[name] = OPTIONAL_HINTS.get(name, f"train it with `hotline train {name}`")
            comps.notes.append(f"no champion '{name}': {arg} absent ({comps.absent[name]})")
            continue
        directory, info = download_champion(name)
        comps.speech[arg] = _import(loader)(directory)
        comps.versions[name] = info
    return comps


class DialectComponent:
    """The dialect-ID champion as the pipeline's ``dialect`` classifier. Below ``min_confidence`` it answers the
    most likely dialect with its low confidence; the recogniser then gets no dialect (``dialect=None``)."""

    def __init__(self, model, min_confidence: float):
        self.model = model
        self.min_confidence = min_confidence

    def classify(self, audio):
        return self.model.identify(audio)


def load_dialect_component(directory: Path):
    """The dialect-ID champion (``classify(audio) -> DialectResult``)."""
    from models.asr.dialect_id import CONFIG_FILE, DEFAULT_MIN_CONFIDENCE, DialectIdModel

    return DialectComponent(DialectIdModel.load(find_model_dir(Path(directory), marker=CONFIG_FILE)), DEFAULT_MIN_CONFIDENCE)


def load_asr_component(directory: Path):
    """The fine-tuned Whisper champion behind the one recogniser (CTranslate2 int8 on CPU when exported); the
    pipeline calls ``transcribe(audio, dialect=...) -> Transcript``."""
    from models.asr.dialects import ASR_CONFIG_FILE
    from models.asr.recognizer import Recognizer

    return Recognizer.load(find_model_dir(Path(directory), marker=ASR_CONFIG_FILE))


def load_pretrained_recognizer():
    """The pretrained whisper-base recogniser (bootstrapped offline from the pinned PyPI packages)."""
    from models.asr.recognizer import Recognizer

    return Recognizer.load(None)


def load_emotion_component(directory: Path):
    """The speech-emotion champion as the pipeline's ``emotion`` classifier: audio fused with the transcript's
    wording and normalised per caller, as the champion was tuned (``classify(audio, text, caller) -> .label``)."""
    from models.emotion.fused import load_fused_emotion
    from models.emotion.model import CONFIG_FILE

    return load_fused_emotion(find_model_dir(Path(directory), marker=CONFIG_FILE))
