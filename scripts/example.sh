#!/usr/bin/env bash
# The main job on the bundled example model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh
exec .venv/bin/hnfc example "$@"
