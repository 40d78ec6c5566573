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


# -- the service's store: SQLite and a real PostgreSQL -------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A PostgreSQL server for the store's tests: $HOTLINE_TEST_POSTGRES_URL, else scripts/postgres.sh installs and
    starts the local one and prints its URL. If that fails the test fails with the script's output (never a skip)."""
    import subprocess

    url = os.environ.get("HOTLINE_TEST_POSTGRES_URL")
    if url:
        return url
    script = REPO / "scripts" / "postgres.sh"
    try:
        proc = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{script} took over {e.timeout} s:\n{e.stdout or ''}\n{e.stderr or ''}", pytrace=False)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not lines[-1].startswith("postgresql"):
        pytest.fail(f"{script} could not provide PostgreSQL (exit {proc.returncode}); fix it or set "
                    f"HOTLINE_TEST_POSTGRES_URL to a server you can create schemas on.\nstdout:\n{proc.stdout}\n"
                    f"stderr:\n{proc.stderr}", pytrace=False)
    return lines[-1]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh, empty database URL per test: a SQLite file, or a PostgreSQL schema of its own (search_path) that
    is dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hotline.db'}"
        return
    import uuid

    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(request.getfixturevalue("postgres_url"))
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        yield base.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(store_url):
    """A fresh, upgraded :class:`serving.store.Store` on each backend."""
    from serving.store import Store

    s = Store(store_url)
    s.upgrade()
    yield s
    s.close()


def hotline_asgi_app():
    """``Hotline.to_asgi()`` that may be built more than once in one pytest process: BentoML registers its request
    metrics in prometheus_client's default registry when an app starts, and a second app's start would raise
    DuplicateTimeseries; the previous app's BentoML collectors are unregistered first."""
    import prometheus_client

    from serving.service import Hotline

    registry = prometheus_client.REGISTRY
    for collector, names in list(registry._collector_to_names.items()):
        if any(n.startswith("bentoml_") for n in names):
            registry.unregister(collector)
    return Hotline.to_asgi()
