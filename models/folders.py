"""Finding a saved model folder inside what MLflow downloads (``artifacts/<name>/`` or deeper)."""

from __future__ import annotations

from pathlib import Path


def find_model_dir(root: Path, marker: str = "config.json") -> Path:
    """``root`` if it holds ``marker``, else the shallowest folder under it that does (a saved model inside
    a downloaded MLflow model, e.g. ``artifacts/<name>/``)."""
    root = Path(root)
    if (root / marker).is_file():
        return root
    found = sorted(root.rglob(marker), key=lambda p: (len(p.parts), str(p)))
    if not found:
        raise FileNotFoundError(f"no {marker} under {root}: the download does not hold a saved model directory")
    return found[0].parent
