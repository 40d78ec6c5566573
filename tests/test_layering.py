"""Imports flow one way: notebooks -> training -> models, data; serving -> models, data. The model, data and
serving packages never import training (a served bundle does not ship it)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOWER = ("models", "data", "serving")  # packages that must not import training


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def test_models_data_and_serving_never_import_training():
    offenders = []
    for package in LOWER:
        for path in sorted((REPO / package).rglob("*.py")):
            if ".venv" in path.parts:
                continue
            for line, module in _imported_modules(path):
                if module == "training" or module.startswith("training."):
                    offenders.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert not offenders, "lower layers import training:\n" + "\n".join(offenders)


def test_the_check_sees_function_level_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def g():\n    from training.loop import fit\n    return fit\n", encoding="utf-8")
    assert _imported_modules(f) == [(2, "training.loop")]


def test_pyfunc_wrappers_are_built_on_first_use_and_pickle_by_reference():
    import pickle
    import subprocess
    import sys

    code = ("import sys, models.intent.understand as u; assert 'mlflow' not in sys.modules; "
            "c = u.IntentPyfuncModel; assert 'mlflow' in sys.modules and c is u.IntentPyfuncModel; print(c.__qualname__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "IntentPyfuncModel"
    from models.emotion import model as emotion_model

    wrapper = emotion_model.EmotionPyfuncModel()
    assert type(pickle.loads(pickle.dumps(wrapper))) is emotion_model.EmotionPyfuncModel
