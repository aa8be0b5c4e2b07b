#!/usr/bin/env bash
# Set up everything, then run lint, type checks and the whole test suite
# (unit and integration; integration tests share one real control plane).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.tools/bin:$PATH"

echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pip-audit (known vulnerabilities in the installed, pinned dependency set)"
.venv/bin/python scripts/audit.py
echo "==> pytest"
.venv/bin/pytest "$@"
