"""``hotline bundle``: the champions into the BentoML model store, then a Bento for a CUDA image, offline.

1. Each champion in the MLflow registry (``intent`` required; ``asr``, ``dialect``, ``emotion`` when they exist) is
   downloaded and copied into the BentoML model store as ``hotline-<name>`` with labels ``version``, ``run_id``,
   ``source``, ``registered_model`` and ``metric.<name>`` for each of the run's metrics (strings, as BentoML wants;
   the floats are in the model's metadata too). A champion already imported (same run id and version) is reused.
2. A Bento ``hotline`` is built from ``serving.service:Hotline`` with ``models/``, ``data/`` and ``serving/`` (not
   ``training/``, notebooks, tests, corpora, caches or weights), the Python dependencies of ``pyproject.toml``
   unlocked (offline: no resolver run against PyPI), the bundled models, and an image on
   ``nvidia/cuda:<CUDA>-cudnn-runtime-ubuntu22.04``. Inside the image ``HOTLINE_MODEL_SOURCE=bentoml`` makes the
   loaders read the bundled models (``models/bundled.py``) instead of a registry.

No Docker daemon is needed to build: ``bentoml containerize hotline:latest`` runs later on a machine with Docker.
``BENTOML_HOME`` picks the store (BentoML's default: ``~/bentoml``).
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SERVICE = "serving.service:Hotline"
BENTO_NAME = "hotline"
REQUIRED = ("intent",)  # the service does not start without these
OPTIONAL = ("asr", "dialect", "emotion")  # absent: whisper-base (asr) or reported absent (dialect, emotion)
# CTranslate2 4.8 (the recogniser's engine) links CUDA 12's cuBLAS and cuDNN 9: the base image provides them. torch
# 2.11 from PyPI brings its own CUDA 13 libraries as wheels (host driver >= 580 for torch on the GPU).
CUDA_IMAGE = "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04"
# apt packages. The CUDA base image has no Python: BentoML's Dockerfile runs `pip install uv` (python3-pip), then uv
# installs Python 3.11 into /app/.venv. ffmpeg: torchcodec's FFmpeg libraries for formats soundfile cannot read.
SYSTEM_PACKAGES = ("python3-pip", "ffmpeg")
INCLUDE = ("models/", "data/", "serving/")
EXCLUDE = (
    "data/corpus/", "data/cache/", "data/weights/", "**/__pycache__/", "*.pyc", "training/", "notebooks/",
    "tests/", "mlruns/", "bentoml/", "var/", ".venv/", "*.db",
)
ENVS = {  # set in the image
    "HOTLINE_MODEL_SOURCE": "bentoml",  # models/bundled.py: load the bundled champions, not a registry
    "HF_HUB_OFFLINE": "1",  # no hub at run time
    "TOKENIZERS_PARALLELISM": "false",
}


@dataclass
class Imported:
    name: str  # registered model name
    tag: str  # BentoML model tag (hotline-<name>:<version>)
    labels: dict[str, str]
    reused: bool  # already in the store from an earlier bundle


@dataclass
class BundleResult:
    models: list[Imported] = field(default_factory=list)
    absent: dict[str, str] = field(default_factory=dict)  # name -> what the image does without it
    bento_tag: str = ""
    bento_path: Path | None = None

    @property
    def dockerfile(self) -> Path | None:
        return None if self.bento_path is None else self.bento_path / "env" / "docker" / "Dockerfile"


def _label_value(v: Any) -> str:
    return repr(float(v)) if isinstance(v, float) else str(v)


def champion_labels(name: str, info: dict[str, Any]) -> dict[str, str]:
    """BentoML labels (strings) for a champion's version info: version, run id, source, its run's metrics."""
    labels = {"registered_model": name, "version": str(info["version"]), "run_id": str(info["run_id"]),
              "source": str(info.get("source", ""))}
    for k, v in sorted((info.get("metrics") or {}).items()):
        if isinstance(v, (int, float)) and math.isfinite(float(v)):
            labels[f"metric.{k}"] = _label_value(v)
    return labels


def _existing(bento_name: str, labels: dict[str, str]):
    """A model already in the store for the same registry version and run, or None."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        models = bentoml.models.list(bento_name)
    except NotFound:  # no model of that name yet
        return None
    for m in models:
        got = m.info.labels
        if got.get("run_id") == labels["run_id"] and got.get("version") == labels["version"]:
            return m
    return None


def import_champion(name: str) -> Imported | None:
    """Copy the ``name`` champion into the BentoML store as ``hotline-<name>``; None when there is no champion."""
    import bentoml

    from models.bundled import PREFIX
    from models.champions import champion_version, download_champion, version_info

    mv = champion_version(name)
    if mv is None:
        return None
    info = version_info(mv)
    labels = champion_labels(name, info)
    bento_name = f"{PREFIX}{name}"
    existing = _existing(bento_name, labels)
    if existing is not None:
        return Imported(name, str(existing.tag), labels, reused=True)
    folder, _ = download_champion(name)
    metadata = {"metrics": {k: float(v) for k, v in (info.get("metrics") or {}).items()
                            if isinstance(v, (int, float)) and math.isfinite(float(v))},
                "mlflow_model_uri": f"models:/{name}/{info['version']}"}
    with bentoml.models.create(name=bento_name, labels=labels, metadata=metadata,
                               module="hotline.bundle") as model:
        shutil.copytree(folder, model.path, dirs_exist_ok=True)
    return Imported(name, str(model.tag), labels, reused=False)


def python_requirements(pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """The runtime dependencies of ``pyproject.toml`` (not the dev extra), as pip requirement strings."""
    import tomllib

    return list(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"])


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def build_bento(models: list[Imported], cuda_image: str = CUDA_IMAGE, version: str | None = None):
    """Build the ``hotline`` Bento (offline: requirements unlocked) carrying ``models``; returns the Bento."""
    import bentoml
    from bentoml._internal.bento.build_config import BentoEnvSchema  # what build(envs=...) takes

    labels = {"git_commit": _git_commit() or "unknown", "cuda_image": cuda_image.replace("/", "_").replace(":", "_")}
    for m in models:
        labels[f"{m.name}_version"] = m.labels["version"]
        labels[f"{m.name}_run_id"] = m.labels["run_id"]
    return bentoml.bentos.build(
        SERVICE,
        name=BENTO_NAME,
        version=version,
        labels=labels,
        description="hotline: routing and auto-ticketing of complaint calls (API.md), with its champions bundled",
        include=list(INCLUDE),
        exclude=list(EXCLUDE),
        envs=[BentoEnvSchema(name=k, value=v) for k, v in ENVS.items()],
        docker={"base_image": cuda_image, "distro": "debian", "python_version": "3.11",
                "system_packages": list(SYSTEM_PACKAGES)},
        python={"packages": python_requirements(), "lock_packages": False},
        models=[m.tag for m in models],
        build_ctx=str(REPO),
    )


def bundle(cuda_image: str = CUDA_IMAGE, version: str | None = None, log=print) -> BundleResult:
    """Import every champion present, then build the Bento. Raises SetupError without an intent champion."""
    from models.champions import SetupError, tracking_uri

    result = BundleResult()
    log(f"bundle: champions from {tracking_uri()}")
    for name in (*REQUIRED, *OPTIONAL):
        imported = import_champion(name)
        if imported is None:
            if name in REQUIRED:
                raise SetupError(f"no '{name}' champion in {tracking_uri()}: train one first "
                                 f"(`hotline train {name}`, or `hotline serve` for the quick recipe)")
            result.absent[name] = ("the image uses the pretrained whisper-base recogniser" if name == "asr"
                                   else f"absent in the image (train it: `hotline train {name}`)")
            log(f"bundle: {name}: no champion; {result.absent[name]}")
            continue
        result.models.append(imported)
        metrics = [k for k in imported.labels if k.startswith("metric.")]
        log(f"bundle: {name}: version {imported.labels['version']} (run {imported.labels['run_id']}) -> "
            f"{imported.tag}{' (already imported)' if imported.reused else ''}; {len(metrics)} metric labels")
    log(f"bundle: building the Bento (base image {cuda_image}; requirements unlocked, offline)")
    bento = build_bento(result.models, cuda_image, version)
    result.bento_tag = str(bento.tag)
    result.bento_path = Path(bento.path)
    log(f"bundle: built {result.bento_tag} at {result.bento_path}")
    log(f"bundle: Dockerfile: {result.dockerfile}")
    return result


def bundle_main(args: argparse.Namespace) -> int:
    import os

    from models.champions import SetupError

    try:
        result = bundle(args.cuda_image, args.version)
    except SetupError as e:
        print(f"bundle: {e}", file=sys.stderr)
        return 1
    home = os.environ.get("BENTOML_HOME")
    prefix = f"BENTOML_HOME={home} " if home else ""
    print("next, on a machine with Docker and the NVIDIA container toolkit:")
    print(f"  {prefix}bentoml containerize {result.bento_tag}")
    print(f"  docker run --gpus all -p 3000:3000 -e HOTLINE_DATABASE_URL=postgresql+psycopg://USER:PASS@HOST/hotline "
          f"{result.bento_tag}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cuda-image", default=CUDA_IMAGE, help="base image of the Bento (default: %(default)s)")
    p.add_argument("--version", default=None, help="Bento version (default: a new generated one)")
