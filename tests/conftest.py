"""Shared fixtures. Tests never touch the repository's own mlruns/ or corpora: they get temporary ones."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path_factory, monkeypatch):
    """Every test gets its own MLflow SQLite store unless it sets MLFLOW_TRACKING_URI itself."""
    root = tmp_path_factory.mktemp("mlruns")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
    monkeypatch.setenv("HOTLINE_ARTIFACT_ROOT", str(root / "artifacts"))
    yield


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A tiny synthetic corpus (60 utterances, 3 calls), built once per test session."""
    from data.synth.corpus import synthesize_corpus

    out = tmp_path_factory.mktemp("corpus") / "tiny"
    report = synthesize_corpus(out, size="tiny", seed=7, workers=2, progress=False)
    assert report.utterances > 0, report.table()
    return out


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return SHARED
