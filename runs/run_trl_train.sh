#!/usr/bin/env bash
# The seed's training command with its defaults; each is overridable by an environment variable
# (MODEL_NAME=gpt2 DEVICE=cpu ./runs/run_trl_train.sh) and extra flags are passed through
# (./runs/run_trl_train.sh --max_steps 40 --save_steps 20).
# Rewards come from the Ray RetrievalService that ./runs/run_retrieval.sh started (the seed's architecture); with none
# running it stops with "Error: RetrievalService not found!" and the fix. RETRIEVAL=local computes them in-process.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
exec "$PYTHON" src/train_with_trl.py \
    --model_name "${MODEL_NAME:-smollm2-135m-instruct}" \
    --device "${DEVICE:-cuda}" \
    --max_length "${MAX_LENGTH:-128}" \
    --max_new_tokens "${MAX_NEW_TOKENS:-64}" \
    --reward_type "${REWARD_TYPE:-ndcg}" \
    --k "${K:-10}" \
    --dataset_name "${DATASET_NAME:-beauty}" \
    --learning_rate "${LEARNING_RATE:-1e-5}" \
    --batch_size "${BATCH_SIZE:-16}" \
    --mini_batch_size "${MINI_BATCH_SIZE:-4}" \
    --ppo_epochs "${PPO_EPOCHS:-4}" \
    --num_epochs "${NUM_EPOCHS:-3}" \
    --max_steps "${MAX_STEPS:-10000}" \
    --checkpoint_dir "${CHECKPOINT_DIR:-checkpoints/trl_ppo}" \
    --log_with "${LOG_WITH:-auto}" \
    --project_name "${PROJECT_NAME:-rl4rec-experiment}" \
    --algorithm "${ALGORITHM:-ppo}" \
    --retrieval "${RETRIEVAL:-ray}" \
    --data_dir "${DATA_DIR:-data}" \
    "$@"
