#!/usr/bin/env bash
# The test suite (both cores).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh test
exec .venv/bin/python -m pytest -n 2 -q "$@"
