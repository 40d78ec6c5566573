"""Models bundled into a Bento: where a champion lies when the service runs from ``hotline bundle``'s image.

``hotline bundle`` (training/bundle.py) copies each champion's downloaded MLflow folder into the BentoML model store
as ``hotline-<name>`` with its registry version, run id and metrics as labels, and the Bento it builds carries those
models. Inside that image there is no MLflow registry: the Bento sets ``HOTLINE_MODEL_SOURCE=bentoml`` and the model
loaders ask :func:`load_bundled` first::

    # models/champions.py, first line of champion_version(model_name): presence and version come from the Bento
    if from_bento(): return bundled_version(model_name)
    # ... and first line of download_champion(name): the bundled folder instead of a registry download
    if (bundled := load_bundled(name)) is not None: return bundled, bundled_info(name)

Anywhere else (``make serve``, ``hotline predict``) the variable is unset and both return None, so nothing changes.
No heavy imports: bentoml is imported only when the variable says to.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

SOURCE_ENV = "HOTLINE_MODEL_SOURCE"  # "bentoml": load champions from the BentoML model store (inside a Bento)
BENTOML_SOURCE = "bentoml"
PREFIX = "hotline-"  # BentoML model name = PREFIX + registered model name
LABEL_KEYS = ("version", "run_id", "source")  # labels copied back into a version info dict


def model_tag(name: str) -> str:
    """The BentoML model a registered model is bundled as: ``hotline-<name>`` (latest version)."""
    return f"{PREFIX}{name}:latest"


def from_bento() -> bool:
    """Whether models come from the BentoML store (``HOTLINE_MODEL_SOURCE=bentoml``)."""
    return os.environ.get(SOURCE_ENV, "").strip().lower() == BENTOML_SOURCE


def _model(name: str):
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(model_tag(name))
    except NotFound:
        return None


def load_bundled(name: str) -> Path | None:
    """The folder of ``hotline-<name>:latest`` in the BentoML model store when ``HOTLINE_MODEL_SOURCE=bentoml``,
    else None. Also None when that model was not bundled (an optional model that had no champion): the caller then
    reports it as absent, as it does without a champion."""
    if not from_bento():
        return None
    model = _model(name)
    return None if model is None else Path(model.path)


def bundled_info(name: str) -> dict[str, Any] | None:
    """Version info of a bundled model (``version``, ``run_id``, ``source`` and ``metrics`` from its labels), the
    shape :func:`models.champions.version_info` gives; None when not running from a Bento or not bundled."""
    if not from_bento():
        return None
    model = _model(name)
    if model is None:
        return None
    labels = dict(model.info.labels)
    info: dict[str, Any] = {k: str(labels.get(k, "")) for k in LABEL_KEYS}
    metrics = {}
    for k, v in labels.items():
        if k.startswith("metric."):
            try:
                metrics[k[len("metric."):]] = float(v)
            except ValueError:
                pass
    info["metrics"] = metrics
    info["bento_model"] = str(model.tag)
    return info


def bundled_version(name: str) -> SimpleNamespace | None:
    """What ``champion_version`` gives inside a Bento: an object with the ``version``, ``run_id``, ``source`` and
    ``tags`` of the bundled model (as an MLflow ``ModelVersion`` has them), or None when it was not bundled."""
    info = bundled_info(name)
    if info is None:
        return None
    return SimpleNamespace(name=name, version=info["version"], run_id=info["run_id"], source=info["source"],
                           tags={"bento_model": info["bento_model"]}, aliases=["champion"])
