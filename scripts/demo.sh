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
exec "$venv/bin/python" examples/demo.py "$@"
