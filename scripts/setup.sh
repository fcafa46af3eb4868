#!/usr/bin/env bash
# Create .venv (if missing) and install sb3_neppo with its test tools, CPU torch first. Idempotent; about a minute fresh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip_install() { .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored" >&2); }
# the CPU build of torch first: a plain `torch` requirement would pull the multi-GB CUDA build
pip_install -c constraints.txt torch
pip_install -c constraints.txt -e ".[tests]"
.venv/bin/python -c "import sb3_neppo, torch; print(f'sb3_neppo {sb3_neppo.__version__} ready (torch {torch.__version__})')"
