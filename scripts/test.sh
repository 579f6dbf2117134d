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
# tests/test_ssh.py runs a private OpenSSH server (and ip for a network namespace): install
# them when missing and we can (root with apt-get).
need=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)
[ "${#need[@]}" -eq 0 ] || command -v csh >/dev/null 2>&1 || need+=(csh)  # shell="csh" quoting
if [ "${#need[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "== installing ${need[*]} for the SSH tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq "${need[@]}" >/dev/null 2>&1; } \
    || echo "could not install ${need[*]}: SSH tests will skip (or fail under CI)" >&2
fi
echo "== ruff"
"$venv/bin/ruff" check src tests benchmarks examples
"$venv/bin/ruff" format --check src tests benchmarks examples
echo "== mypy"
"$venv/bin/mypy"
echo "== benchmark smoke"
"$venv/bin/python" -m benchmarks --quick --only roundtrip --out "$(mktemp -d)"
echo "== pytest"
"$venv/bin/python" -m pytest "$@"
