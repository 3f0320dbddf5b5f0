#!/usr/bin/env bash
# The Beauty recipe of docs/RESULTS.md ("A recommender that beats its baselines"), stage by stage.
# Usage: scripts/beauty_recipe.sh STAGE          (every stage resumes: rerun the same line after a stop)
#   baselines   last-item and history-fusion (fusion-history.json) on all test users
#   tune        fusion-history.json: history + co-occurrence weights on 3000 seeded VALIDATION users
#   zero-shot   the untrained policy: validation queries -> fusion-zero-shot.json; test 500, test 500 + fusion
#   sft         rl4rec sft (48 steps x 8 of a 1024-example training-split sample); then as zero-shot
#   sft-long    data scaling: the sft recipe on SFT_LONG_STEPS x 8 examples (default 200 x 8 = 1600, 4.2x the
#               sft stage's 384) of a 4096-example sample; then as zero-shot
#   grpo        GRPO from the SFT checkpoint, AUC of the fused rank (fusion-sft-reward.json) as the reward
#   grpo-next   the long Beauty RL run of the learning issue: GRPO from the SFT checkpoint, text-only AUC reward over
#               each user's next 2 items (--next_items 2 keeps every user), 4 prompts x 4, NEXT_STEPS steps (default
#               500 = 2,000 prompts), held-out curve on 128 validation users every 50 steps; resumable across sessions
#               NEXT_LR (default 1e-5) and NEXT_SCHEDULER (default linear; `constant` is the ml-100k runs' faster
#               recipe) name another run (grpo-next2-beauty-SCHEDULER-LR) that grpo-next-eval reads the same way
#   grpo-next-eval  grpo-next's test read on NEXT_N_TEST (default 1000) seeded test users: its final and its
#               validation-best checkpoint (--keep_best auc) each minus SFT and minus last-item, paired
#   grpo-eval   the GRPO policy: validation queries -> fusion-sft-grpo.json; test text-only, fused, and fused
#               with the reward's weights (sft-reward-fusion is the SFT policy under the same weights)
#   compare     every LLM row minus last-item and minus history-fusion, paired on the shared users
#   precision   the sft stage's training in bf16 autocast and again in fp32 (--bf16 off); test text-only rows
#               sft and sft-fp32, paired: does bf16 training cost held-out quality?
#   cand-recall recall@K of the recall stage (history-fusion, fusion-history.json) on all validation and test users
#   cand-first  the "always candidate 1" baseline: its text weight on validation, then all test users
#   cand-sft    candidate-aware SFT (K=$CAND_K candidates in the prompt; every training example whose target the
#               recall stage found, about 11 %), then its rows: validation queries -> text weight on top of the
#               recall stage, test text-only and fused
#   cand-grpo   GRPO from cand-sft on the fused rank (text weight fixed at $CAND_W_TEXT), rewarded by
#               0.5 NDCG@10 + 0.5 AUC on training examples whose target is a candidate (--candidate_misses skip:
#               naming it lifts it into the top 10), held-out curve on validation users, then its rows as cand-sft
#   cand-compare  candidate rows minus history-fusion (the recall stage) on the same test users, and the recall
#               position of the candidate each policy's test query names (scripts/named_candidates.py)
#   cand-headroom best-of-K before any candidate-aware RL: CAND_HEADROOM_USERS validation users, 8 sampled queries
#               each from the untrained policy on the candidate prompt, ranked text-only and fused with the reward's
#               weights (fusion-cand-reward.json), against history-fusion on the same users
#   chooser     the discriminative re-ranker: the policy reads the candidate prompt (--task choose, candidates
#               lettered in a shuffled order) and one forward pass scores every letter; SFT on the target's letter
#               (training split, the targets the recall stage found), --recall_prior chosen on CHOOSER_N_VALID validation
#               users, then CHOOSER_N_TEST test users, paired with history-fusion (the recall stage; the forward
#               pass runs only for users whose target is a candidate: the others keep their recall rank)
# Data: $DATA_DIR (default ../shared/data). Outputs: outputs/results/beauty/. Seeds: evaluation sample 0,
# training 42. Test users are read once per reported row; every weight is chosen on validation users.
set -euo pipefail
cd "$(dirname "$0")/.."
export RL4REC_CACHE_DIR="${RL4REC_CACHE_DIR:-$PWD/.cache/rl4rec}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
RL4REC=".venv/bin/rl4rec"
DATA=${DATA_DIR:-../shared/data}
OUT=outputs/results/beauty
RUNS=outputs/runs
N_TEST=${N_TEST:-500}
N_VALID=${N_VALID:-300}
GRPO_STEPS=${GRPO_STEPS:-20}
NEXT_STEPS=${NEXT_STEPS:-500}
NEXT_N_TEST=${NEXT_N_TEST:-1000}
NEXT_LR=${NEXT_LR:-1e-5}
NEXT_SCHEDULER=${NEXT_SCHEDULER:-linear}
NEXT_TAG=grpo-next  # the reported run's names; another rate or schedule is another run
[ "$NEXT_LR/$NEXT_SCHEDULER" = 1e-5/linear ] || NEXT_TAG="grpo-next-$NEXT_SCHEDULER-$NEXT_LR"
NEXT_RUN="$RUNS/grpo-next2-beauty${NEXT_TAG#grpo-next}"
SFT_LONG_STEPS=${SFT_LONG_STEPS:-200}
PROMPT=(--max_length 256 --max_history_items 10)
CAND_K=${CAND_K:-10}
CAND_N_TEST=${CAND_N_TEST:-1000}
CAND_W_TEXT=${CAND_W_TEXT:-0.5}
CAND_STEPS=${CAND_STEPS:-150}
CAND_HEADROOM_USERS=${CAND_HEADROOM_USERS:-100}
CHOOSER_STEPS=${CHOOSER_STEPS:-150}
CHOOSER_N_VALID=${CHOOSER_N_VALID:-3000}
CHOOSER_N_TEST=${CHOOSER_N_TEST:-5000}
CHOOSER_MODELS=${CHOOSER_MODELS:-trained}  # "trained zero-shot" adds the untrained policy as a chooser
CAND=(--max_length 512 --max_history_items 10 --candidates "$CAND_K" --candidate_fusion "$OUT/fusion-history.json")
EVAL=(--dataset beauty --data_dir "$DATA" --seed 0 --max_new_tokens 48)
mkdir -p "$OUT" "$RUNS"

evaluate() {  # evaluate NAME SPLIT ARGS...: one evaluation run (resumable) + its result JSON
  local name=$1 split=$2; shift 2
  $RL4REC evaluate "${EVAL[@]}" --split "$split" --run_dir "$OUT/$name" --output "$OUT/$name.json" "$@"
}

sft_train() {  # sft_train RUN MAX_EXAMPLES MAX_STEPS BF16 SAVE_STEPS: the SFT recipe; skips a finished run,
                # resumes an interrupted one
  local run=$1 examples=$2 steps=$3 bf16=$4 save=$5
  [ -d "$run/checkpoint_final" ] || $RL4REC sft --dataset_name beauty --data_dir "$DATA" --checkpoint_dir "$run" \
    --device cpu "${PROMPT[@]}" --max_examples "$examples" --max_steps "$steps" --batch_size 8 --mini_batch_size 8 \
    --learning_rate 1e-4 --bf16 "$bf16" --save_steps "$save" $( [ -d "$run" ] && echo --resume )
}

llm_rows() {  # llm_rows NAME ARGS...: validation queries -> text weight (history weights from 3000 validation
              # users: fusion-history.json); test text-only and fused rows
  local name=$1; shift
  evaluate "$name-valid" valid --num_users "$N_VALID" "$@"
  [ -f "$OUT/fusion-$name.json" ] || $RL4REC tune-fusion --dataset beauty --data_dir "$DATA" \
    --queries "$OUT/$name-valid" --base "$OUT/fusion-history.json" --output "$OUT/fusion-$name.json"
  evaluate "$name" test --num_users "$N_TEST" "$@"
  evaluate "$name-fusion" test --num_users "$N_TEST" "$@" --queries_from "$OUT/$name" --fusion "$OUT/fusion-$name.json"
}

cand_reward_fusion() {  # the recall stage's history weights with a fixed text weight: the candidate runs' reward
  [ -f "$OUT/fusion-cand-reward.json" ] || .venv/bin/python - "$OUT" "$CAND_W_TEXT" <<'PY'
import json, sys
out, w_text = sys.argv[1], float(sys.argv[2])
fusion = json.load(open(f"{out}/fusion-history.json"))["fusion"] | {"w_text": w_text}
json.dump({"fusion": fusion, "chosen": "history weights of fusion-history.json (validation), w_text fixed"},
          open(f"{out}/fusion-cand-reward.json", "w"), indent=1)
PY
}

case ${1:-} in
  tune)
    [ -f "$OUT/fusion-history.json" ] || $RL4REC tune-fusion --dataset beauty --data_dir "$DATA" \
      --num_users 3000 --output "$OUT/fusion-history.json" ;;
  baselines)
    for m in last-item popularity; do evaluate "$m" test --method $m; done
    evaluate history-fusion test --method history-fusion --fusion "$OUT/fusion-history.json"
    # the same two on the LLM rows' user sample, for a same-users table (compare pairs on shared users anyway)
    evaluate last-item-$N_TEST test --method last-item --num_users "$N_TEST"
    evaluate history-fusion-$N_TEST test --method history-fusion --fusion "$OUT/fusion-history.json" --num_users "$N_TEST" ;;
  zero-shot)
    llm_rows zero-shot --method zero-shot "${PROMPT[@]}" ;;
  sft)
    sft_train "$RUNS/sft-beauty" 1024 48 on 16
    llm_rows sft --method policy --model "$RUNS/sft-beauty/checkpoint_final"
    # The RL reward needs a text weight > 0 to carry any signal: weights and text weight chosen jointly on the
    # SFT policy's validation texts (the full grid, no --base).
    [ -f "$OUT/fusion-sft-reward.json" ] || $RL4REC tune-fusion --dataset beauty --data_dir "$DATA" \
      --queries "$OUT/sft-valid" --output "$OUT/fusion-sft-reward.json"
    evaluate sft-reward-fusion test --num_users "$N_TEST" --method policy \
      --model "$RUNS/sft-beauty/checkpoint_final" --queries_from "$OUT/sft" --fusion "$OUT/fusion-sft-reward.json" ;;
  sft-long)
    sft_train "$RUNS/sft-beauty-long" 4096 "$SFT_LONG_STEPS" on 40
    llm_rows sft-long --method policy --model "$RUNS/sft-beauty-long/checkpoint_final" ;;
  grpo)
    $RL4REC train --algorithm grpo --model_name "$RUNS/sft-beauty/checkpoint_final" --dataset_name beauty \
      --data_dir "$DATA" --device cpu "${PROMPT[@]}" --fusion "$OUT/fusion-sft-reward.json" --reward_type auc \
      --learning_rate 1e-5 --temperature 0.8 --batch_size 8 --num_generations 4 --mini_batch_size 4 \
      --ppo_epochs 1 --max_new_tokens 48 --max_steps "$GRPO_STEPS" --save_steps 5 --log_with none \
      --checkpoint_dir "$RUNS/grpo-beauty" $( [ -d "$RUNS/grpo-beauty/checkpoint_step_5" ] && echo --resume ) ;;
  grpo-next)
    run=$NEXT_RUN
    [ -d "$run/checkpoint_final" ] || $RL4REC train --algorithm grpo --model_name "$RUNS/sft-beauty/checkpoint_final" \
      --dataset_name beauty --data_dir "$DATA" --device cpu "${PROMPT[@]}" --reward_type auc --next_items 2 \
      --learning_rate "$NEXT_LR" --lr_scheduler "$NEXT_SCHEDULER" --temperature 0.8 --batch_size 16 \
      --num_generations 4 --mini_batch_size 16 --ppo_epochs 1 --max_new_tokens 48 --max_steps "$NEXT_STEPS" \
      --save_steps 10 --save_total_limit 2 --log_with none \
      --eval_steps 50 --eval_users 128 --eval_split valid --keep_best auc --checkpoint_dir "$run" \
      $( ls -d "$run"/checkpoint_step_* >/dev/null 2>&1 && echo --resume ) ;;
  grpo-next-eval)  # the test read of grpo-next, once: final and validation-best policy - SFT, and - last-item, paired
    run=$NEXT_RUN n=$NEXT_N_TEST
    [ -d "$run/checkpoint_final" ] || {
      echo "$run has not finished: run scripts/beauty_recipe.sh grpo-next (with the same NEXT_LR / NEXT_SCHEDULER)"; exit 1; }
    B=(--batch_size 64)  # the held-out curve's batch (128 users in 65 s there); larger batches decode faster on a CPU
    evaluate "last-item-$n" test --method last-item --num_users "$n"
    evaluate "sft-$n" test --num_users "$n" "${B[@]}" --method policy --model "$RUNS/sft-beauty/checkpoint_final"
    for ck in final best; do
      evaluate "$NEXT_TAG-$ck-$n" test --num_users "$n" "${B[@]}" --method policy --model "$run/checkpoint_$ck"
      for base in "sft-$n" "last-item-$n"; do
        $RL4REC compare "$OUT/$base" "$OUT/$NEXT_TAG-$ck-$n" --output "$OUT/$NEXT_TAG-$ck-$n-vs-${base%-$n}.json" \
          | tail -n 4
      done
    done ;;
  grpo-eval)  # N_TEST=1000 in docs/RESULTS.md (the first 500 of them are the other rows' 500 users)
    GRPO=(--method policy --model "$RUNS/grpo-beauty/checkpoint_final")
    llm_rows sft-grpo "${GRPO[@]}"
    evaluate sft-grpo-reward-fusion test --num_users "$N_TEST" "${GRPO[@]}" --queries_from "$OUT/sft-grpo" \
      --fusion "$OUT/fusion-sft-reward.json" ;;
  compare)
    for b in zero-shot zero-shot-fusion sft sft-fusion sft-long sft-long-fusion sft-grpo sft-grpo-fusion sft-reward-fusion sft-grpo-reward-fusion; do
      [ -d "$OUT/$b" ] || continue
      for a in last-item history-fusion; do
        $RL4REC compare "$OUT/$a" "$OUT/$b" --output "$OUT/$b-vs-$a.json" | tail -n 4
      done
    done
    for pair in zero-shot:sft sft:sft-long sft-fusion:sft-long-fusion sft:sft-grpo zero-shot-fusion:sft-fusion sft-fusion:sft-grpo-fusion \
                sft-reward-fusion:sft-grpo-reward-fusion; do
      a=${pair%%:*} b=${pair##*:}
      [ -d "$OUT/$a" ] && [ -d "$OUT/$b" ] || continue
      $RL4REC compare "$OUT/$a" "$OUT/$b" --output "$OUT/$b-vs-$a.json" | tail -n 4
    done ;;
  precision)  # both trainings here, so the stage stands alone on a fresh checkout (the sft stage reuses them)
    sft_train "$RUNS/sft-beauty" 1024 48 on 16
    sft_train "$RUNS/sft-beauty-fp32" 1024 48 off 16
    evaluate sft test --num_users "$N_TEST" --method policy --model "$RUNS/sft-beauty/checkpoint_final"
    evaluate sft-fp32 test --num_users "$N_TEST" --method policy --model "$RUNS/sft-beauty-fp32/checkpoint_final"
    $RL4REC compare "$OUT/sft-fp32" "$OUT/sft" --output "$OUT/sft-vs-sft-fp32.json" | tail -n 4 ;;
  cand-recall)
    for split in valid test; do
      evaluate "recall-$split" "$split" --method history-fusion --fusion "$OUT/fusion-history.json" --ks 1,5,10,20,50
    done ;;
  cand-first)
    evaluate cand-first-valid valid --num_users "$N_VALID" --method first-candidate "${CAND[@]:4}"
    [ -f "$OUT/fusion-cand-first.json" ] || $RL4REC tune-fusion --dataset beauty --data_dir "$DATA" \
      --queries "$OUT/cand-first-valid" --base "$OUT/fusion-history.json" --output "$OUT/fusion-cand-first.json"
    evaluate cand-first test --method first-candidate "${CAND[@]:4}" --fusion "$OUT/fusion-cand-first.json" ;;
  cand-sft)
    run="$RUNS/cand-sft-beauty"
    cand_reward_fusion
    [ -d "$run/checkpoint_final" ] || $RL4REC sft --dataset_name beauty --data_dir "$DATA" --checkpoint_dir "$run" \
      --device cpu "${CAND[@]}" --max_steps 120 --batch_size 8 --mini_batch_size 8 \
      --learning_rate 1e-4 --save_steps 20 --eval_steps 40 --eval_users 128 \
      --eval_fusion "$OUT/fusion-cand-reward.json" $( [ -d "$run" ] && echo --resume )
    N_TEST=$CAND_N_TEST llm_rows cand-sft --method policy --model "$run/checkpoint_final" ;;
  cand-grpo)
    run="$RUNS/cand-grpo-beauty"
    cand_reward_fusion
    [ -d "$run/checkpoint_final" ] || $RL4REC train --algorithm grpo --model_name "$RUNS/cand-sft-beauty/checkpoint_final" \
      --dataset_name beauty --data_dir "$DATA" --device cpu "${CAND[@]}" --fusion "$OUT/fusion-cand-reward.json" \
      --candidate_misses skip --reward_type auc_ndcg --k 10 --mixed_weight 0.5 --learning_rate 1e-5 \
      --temperature 0.8 --batch_size 16 --num_generations 4 --mini_batch_size 16 --ppo_epochs 1 --max_new_tokens 48 \
      --max_steps "$CAND_STEPS" --save_steps 10 --save_total_limit 2 --eval_steps 25 --eval_users 128 \
      --eval_fusion "$OUT/fusion-cand-reward.json" --keep_best fused/ndcg@10 --log_with none --checkpoint_dir "$run" \
      $( ls -d "$run"/checkpoint_step_* >/dev/null 2>&1 && echo --resume )
    N_TEST=$CAND_N_TEST llm_rows cand-grpo --method policy --model "$run/checkpoint_final" ;;
  chooser)
    run="$RUNS/chooser-beauty"
    # 5 history items and a 384-token budget: a forward pass per user is the whole cost on a CPU
    CH=(--max_length 384 --max_history_items 5 --candidates "$CAND_K" --candidate_fusion "$OUT/fusion-history.json"
        --candidate_order shuffled)
    [ -d "$run/checkpoint_final" ] || $RL4REC sft --task choose --dataset_name beauty --data_dir "$DATA" \
      --checkpoint_dir "$run" --device cpu "${CH[@]}" --max_steps "$CHOOSER_STEPS" --batch_size 8 \
      --mini_batch_size 8 --learning_rate 1e-4 --save_steps 25 --eval_steps 50 --eval_users 128 --eval_batch_size 16 \
      --keep_best ndcg@10 $( [ -d "$run" ] && echo --resume )
    for model in $CHOOSER_MODELS; do
      args=(--method chooser --batch_size 16 --dtype bfloat16)  # bf16 forward passes: ~2x faster on this CPU
      [ $model = zero-shot ] && args+=("${CH[@]}") || args+=(--model "$run/checkpoint_final")
      for prior in 0 0.5 1 2 4; do  # the letter scores are cached: the forward passes run once per model
        evaluate "chooser-$model-valid-p$prior" valid --num_users "$CHOOSER_N_VALID" "${args[@]}" --recall_prior "$prior"
      done
      best=$(.venv/bin/python - "$OUT" "$model" <<'PY'
import json, sys
out, model = sys.argv[1:]
ndcg = {p: json.load(open(f"{out}/chooser-{model}-valid-p{p}.json"))["metrics"]["ndcg@10"]["mean"]
        for p in ("0", "0.5", "1", "2", "4")}
print(max(ndcg, key=lambda p: (ndcg[p], -float(p))))
PY
)
      echo "chooser $model: recall prior $best (validation NDCG@10)"
      evaluate "history-fusion-valid-$CHOOSER_N_VALID" valid --method history-fusion --fusion "$OUT/fusion-history.json" \
        --num_users "$CHOOSER_N_VALID"
      for prior in 0 "$best"; do
        $RL4REC compare "$OUT/history-fusion-valid-$CHOOSER_N_VALID" "$OUT/chooser-$model-valid-p$prior" \
          --output "$OUT/chooser-$model-valid-p$prior-vs-history-fusion.json" | tail -n 4
      done
      name="chooser-$model-$CHOOSER_N_TEST"
      evaluate "$name" test --num_users "$CHOOSER_N_TEST" "${args[@]}" --recall_prior "$best"
      [ -d "$OUT/recall-test" ] || $0 cand-recall
      $RL4REC compare "$OUT/recall-test" "$OUT/$name" --output "$OUT/$name-vs-history-fusion.json" | tail -n 4
    done ;;
  cand-headroom)
    cand_reward_fusion
    [ -f "$OUT/headroom-cand-zero-shot.json" ] || $RL4REC headroom --dataset beauty --data_dir "$DATA" --split valid \
      --num_users "$CAND_HEADROOM_USERS" --samples 8 --temperature 0.8 --max_new_tokens 48 "${CAND[@]}" \
      --fusion "$OUT/fusion-cand-reward.json" --device cpu --output "$OUT/headroom-cand-zero-shot.json" ;;
  cand-compare)
    evaluate "history-fusion-$CAND_N_TEST" test --method history-fusion --fusion "$OUT/fusion-history.json" \
      --num_users "$CAND_N_TEST"
    for b in cand-first cand-sft cand-sft-fusion cand-grpo cand-grpo-fusion; do
      [ -d "$OUT/$b" ] || continue
      $RL4REC compare "$OUT/history-fusion-$CAND_N_TEST" "$OUT/$b" --output "$OUT/$b-vs-history-fusion.json" | tail -n 4
    done
    if [ -d "$OUT/cand-grpo" ]; then
      $RL4REC compare "$OUT/cand-sft" "$OUT/cand-grpo" --output "$OUT/cand-grpo-vs-cand-sft.json" | tail -n 4
    fi
    if [ -d "$OUT/cand-grpo-fusion" ]; then
      $RL4REC compare "$OUT/cand-sft-fusion" "$OUT/cand-grpo-fusion" \
        --output "$OUT/cand-grpo-fusion-vs-cand-sft-fusion.json" | tail -n 4
    fi
    for b in cand-sft cand-grpo; do  # which candidate do the test queries name: the recall stage's #1, or the target?
      [ -d "$OUT/$b" ] || continue
      .venv/bin/python scripts/named_candidates.py "$OUT/$b" --data_dir "$DATA" --output "$OUT/$b-named.json"
    done ;;
  *) sed -n '2,/^# Data:/p' "$0"; exit 2 ;;
esac
