#!/usr/bin/env bash
# Idempotent set-up: Debian packages (espeak-ng, sox, FFmpeg 5 libraries for torchcodec) and the Python venv.
# Quick when everything is already there. Used by `make install` (and so by `make test` and `make serve`).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(espeak-ng sox libavutil57 libavcodec59 libavformat59 libavdevice59 libavfilter8 libswscale6 libswresample4)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/pip install -q --disable-pip-version-check uv
fi
# uv resolves and installs in parallel; the pins in pyproject.toml keep torch/torchaudio/torchcodec matched.
.venv/bin/uv pip install -q --compile-bytecode --python .venv/bin/python -e '.[dev]'
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
echo "setup: ok ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
