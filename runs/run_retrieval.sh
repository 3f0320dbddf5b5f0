#!/usr/bin/env bash
# Start the RetrievalService Ray actor (and a Ray head on this machine if none is running), then return.
# Same as `rl4rec serve`; extra arguments are passed through, e.g.
#   ./runs/run_retrieval.sh --datasets beauty ml-100k --data_dir ../shared/data
#   ./runs/run_retrieval.sh --stop
set -euo pipefail
cd "$(dirname "$0")/.."
RL4REC="${RL4REC:-$( [ -x .venv/bin/rl4rec ] && echo .venv/bin/rl4rec || echo rl4rec )}"
exec "$RL4REC" serve \
    --datasets ${DATASETS:-beauty} \
    --data_dir "${DATA_DIR:-data}" \
    "$@"
