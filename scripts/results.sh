#!/usr/bin/env bash
# Regenerates the tables of docs/RESULTS.md. Usage: scripts/results.sh STAGE [DATASET]
#   baselines DATASET      random / popularity / last-item / history-mean on all test users
#   zero-shot DATASET N [B] the untrained policy on a seeded sample of N test users (0 = all), prompt budget B
#   train-grpo DATASET S   GRPO (NDCG@1000 reward, the demo's CPU settings) for S steps
#   train-ppo DATASET S    PPO with a value head, same reward and sizes
#   policy DATASET RUN N   evaluate RUN/checkpoint_final on the same N users, then compare with zero-shot
# Outputs go to outputs/results/DATASET/. Seeds: training 42 (TrainConfig default), evaluation sample 0.
set -euo pipefail
cd "$(dirname "$0")/.."
export RL4REC_CACHE_DIR="${RL4REC_CACHE_DIR:-$PWD/.cache/rl4rec}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
RL4REC=".venv/bin/rl4rec"
stage=$1; dataset=${2:-ml-100k}; out=outputs/results/$dataset
TRAIN=(--device cpu --dataset_name "$dataset" --reward_type ndcg --k 1000 --learning_rate 5e-5 --temperature 0.8
       --batch_size 16 --num_generations 4 --mini_batch_size 8 --ppo_epochs 1 --max_new_tokens 32 --max_length 256
       --log_with none)
EVAL=(--dataset "$dataset" --split test --seed 0 --max_new_tokens 32)
case $stage in
  baselines)
    for m in random popularity last-item history-mean; do
      $RL4REC evaluate --dataset "$dataset" --split test --method $m --run_dir "$out/$m" --output "$out/$m.json"
    done ;;
  zero-shot)  # optional 4th argument: the prompt token budget (default 256; the seed's training default is 128)
    if [ -n "${4:-}" ]; then name=zero-shot-$4; budget=(--max_length "$4"); else name=zero-shot; budget=(); fi
    $RL4REC evaluate "${EVAL[@]}" --method zero-shot --num_users "$3" "${budget[@]}" --run_dir "$out/$name" \
      --output "$out/$name.json" ;;
  train-grpo)
    $RL4REC train "${TRAIN[@]}" --algorithm grpo --max_steps "$3" --save_steps 10 --checkpoint_dir "$out/train-grpo" \
      $( [ -d "$out/train-grpo/checkpoint_step_10" ] && echo --resume ) ;;
  train-ppo)
    $RL4REC train "${TRAIN[@]}" --algorithm ppo --mini_batch_size 8 --max_steps "$3" --save_steps 10 \
      --checkpoint_dir "$out/train-ppo" $( [ -d "$out/train-ppo/checkpoint_step_10" ] && echo --resume ) ;;
  policy)
    run=$3
    $RL4REC evaluate "${EVAL[@]}" --method policy --model "$out/$run/checkpoint_final" --num_users "$4" \
      --run_dir "$out/eval-$run" --output "$out/eval-$run.json"
    $RL4REC compare "$out/zero-shot" "$out/eval-$run" --output "$out/$run-vs-zero-shot.json"
    # a policy trained with the seed's 128-token prompt budget is evaluated with it: compare like with like too
    if [ -d "$out/zero-shot-128" ]; then
      $RL4REC compare "$out/zero-shot-128" "$out/eval-$run" --output "$out/$run-vs-zero-shot-128.json"
    fi ;;
  *) echo "unknown stage $stage" >&2; exit 2 ;;
esac
