#!/usr/bin/env bash
# Set up a virtual environment and run the demo on four local workers.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$venv/bin/python" -m pip install -q -e '.[numpy]'
# An editable install has no bytecode, and PYTHONDONTWRITEBYTECODE may be set: compile once,
# or every worker process compiles the package again when it starts.
"$venv/bin/python" -m compileall -q src >/dev/null
exec "$venv/bin/python" examples/demo.py "$@"
