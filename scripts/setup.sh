#!/usr/bin/env bash
# Create .venv (idempotent) and install ptycho-app with its test tools.
# torch: an importable torch (system or venv, e.g. a CUDA build on a GPU machine) is kept;
# otherwise torch==2.13.0 (CPU) is installed first, so no unpinned requirement pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PYTHON" -m venv --system-site-packages "$VENV"
fi
PY="$VENV/bin/python"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "[setup] torch not found: installing torch==2.13.0"
    "$PY" -m pip install --quiet torch==2.13.0
else
    echo "[setup] keeping torch $("$PY" -c 'import torch; print(torch.__version__)')"
fi
STAMP="$VENV/.ptycho-app-installed"
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$PY" -c "import ptycho_app" >/dev/null 2>&1; then
    echo "[setup] ptycho-app already installed (pyproject.toml unchanged)"
else
    echo "[setup] installing ptycho-app"
    "$PY" -m pip install --quiet --disable-pip-version-check -e ".[test]"
    echo "$WANT" > "$STAMP"
fi
"$PY" -c "import ptycho_app, torch; print('[setup] ptycho-app', ptycho_app.__version__, 'with torch', torch.__version__)"
