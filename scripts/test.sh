#!/usr/bin/env bash
# Set up a virtual environment and run everything CI checks: lint, types, tests, benchmark smoke.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-test
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
"$venv/bin/python" -m pip install -q -e '.[dev]'
# An editable install has no bytecode, and PYTHONDONTWRITEBYTECODE may be set: compile once,
# or every worker process compiles the package again when it starts.
"$venv/bin/python" -m compileall -q src >/dev/null
echo "== ruff"
"$venv/bin/ruff" check src tests benchmarks examples
"$venv/bin/ruff" format --check src tests benchmarks examples
echo "== mypy"
"$venv/bin/mypy"
echo "== benchmark smoke"
"$venv/bin/python" -m benchmarks --quick --only roundtrip --out "$(mktemp -d)"
echo "== pytest"
"$venv/bin/python" -m pytest "$@"
