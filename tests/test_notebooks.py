"""Every notebook under notebooks/ runs headless, top to bottom, on tiny settings; notebooks are committed clean.

Each notebook declares its parameters in a cell tagged ``parameters``. The harness injects the common ones
(:func:`common_parameters`) that the notebook declares, and nothing else, with papermill; the working directory
is the repository root. A failing cell fails the test with the cell's traceback (PapermillExecutionError).
Executed copies are written under tmp_path, never into the repository.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL = "python3"  # the venv's kernel (scripts/setup.sh installs it with --sys-prefix)
CELL_TIMEOUT_S = int(os.environ.get("HOTLINE_NOTEBOOK_CELL_TIMEOUT", "300"))  # s: one cell may run this long


def common_parameters(out_dir: Path) -> dict[str, str]:
    """The parameters every notebook may declare, set for a test run: tiny corpus, outputs under ``out_dir``,
    the shared material next to the repository, and the test's own MLflow store (set by conftest)."""
    return {
        "SIZE": "tiny",
        "OUT_DIR": str(out_dir),
        "SHARED": str(REPO.parent / "shared"),
        "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{out_dir}/mlflow.db"),
    }


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"
    assert all(p.name[:2].isdigit() for p in NOTEBOOKS), "notebooks are numbered: NN-topic.ipynb"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_committed_clean(notebook: Path):
    """Outputs cleared, exactly one cell tagged ``parameters``, no papermill-injected cell."""
    cells = _cells(notebook)
    dirty = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{notebook.name}: cells {dirty} hold outputs; clear them before committing"
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{notebook.name}: needs exactly one cell tagged 'parameters', found {len(tagged)}"
    assert not any("injected-parameters" in c.get("metadata", {}).get("tags", []) for c in cells), (
        f"{notebook.name}: holds a papermill 'injected-parameters' cell; commit the source notebook, not an executed copy"
    )


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(notebook: Path, tmp_path: Path):
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    params = {k: v for k, v in common_parameters(tmp_path / "out").items() if k in declared}
    source_before = notebook.read_bytes()
    executed = tmp_path / notebook.name
    pm.execute_notebook(
        str(notebook),
        str(executed),
        parameters=params,
        kernel_name=KERNEL,
        cwd=str(REPO),
        execution_timeout=CELL_TIMEOUT_S,
        progress_bar=False,
        request_save_on_cell_execute=False,
    )
    cells = _cells(executed)
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{notebook.name}: error outputs in the executed copy {executed}"
    assert notebook.read_bytes() == source_before, f"running {notebook.name} changed the committed notebook"
