#!/usr/bin/env bash
# The training acceptance runs of docs/RESULTS.md ("Training reward"). Usage:
#   scripts/acceptance.sh grpo OUT [FLAG ...]  issue 4: the seed command at CPU sizes (GRPO), killed with SIGKILL
#                                             once checkpoint_step_20/ exists, then rerun with --resume to step 40
#   scripts/acceptance.sh ppo OUT [FLAG ...]   issue 6: the PPO command, 40 steps
# Extra flags are appended to the command (e.g. --reward_type auc). Prints the first-10 vs last-10 reward trend.
set -euo pipefail
cd "$(dirname "$0")/.."
export RL4REC_CACHE_DIR="${RL4REC_CACHE_DIR:-$PWD/.cache/rl4rec}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
algo=${1:?usage: scripts/acceptance.sh grpo|ppo OUT [FLAG ...]}; out=${2:?missing OUT}; shift 2
PY=.venv/bin/python
case $algo in
  grpo) cmd=($PY src/train_with_trl.py --algorithm grpo --dataset_name ml-100k --device cpu --batch_size 8
             --num_generations 4 --max_steps 40 --save_steps 20 --checkpoint_dir "$out" --log_with none "$@") ;;
  ppo)  cmd=($PY src/train_with_trl.py --dataset_name ml-100k --device cpu --batch_size 8 --mini_batch_size 4
             --ppo_epochs 2 --max_steps 40 --save_steps 20 --checkpoint_dir "$out" --log_with none "$@") ;;
  *) echo "unknown run $algo (grpo or ppo)" >&2; exit 2 ;;
esac
mkdir -p "$(dirname "$out")"
start=$(date +%s)
echo "\$ ${cmd[*]}"
if [ "$algo" = grpo ]; then
  "${cmd[@]}" > "$out.part1.log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    if [ -d "$out/checkpoint_step_20" ]; then kill -9 "$pid"; echo "SIGKILL after checkpoint_step_20"; break; fi
    sleep 1
  done
  wait "$pid" || true
  echo "\$ ${cmd[*]} --resume"
  "${cmd[@]}" --resume > "$out.part2.log" 2>&1
else
  "${cmd[@]}" > "$out.log" 2>&1
fi
echo "wall time: $(( ($(date +%s) - start) / 60 )) min"
ls -d "$out"/checkpoint_*
$PY scripts/reward_trend.py "$out/metrics.jsonl"
