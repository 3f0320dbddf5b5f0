"""The recipe search of docs/experiments/ (learning-search, next-items): every attempt by name, resumable, one row each.

    python scripts/experiments.py list                    # the registry
    python scripts/experiments.py run NAME [NAME ...]     # train (resumes), held-out curve on validation users
    python scripts/experiments.py test NAME [--test_users N] [--checkpoint best]  # trained vs its start, paired
    python scripts/experiments.py merge NAME [--split valid --users 128 --num_queries 4]  # greedy vs N samples merged
    python scripts/experiments.py table [NAME ...]        # markdown rows for the experiments log

Each run trains with ``rl4rec train`` (or ``rl4rec sft``) and the held-out instrument on (``--eval_steps``:
greedy queries of 128 seeded validation users at step 0, every N steps and at the end, paired with step 0).
Choices are made on validation; ``test`` evaluates the final policy and its starting policy on the same seeded
test users and pairs them with ``rl4rec compare``. Outputs: ``outputs/experiments/NAME/``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "outputs" / "experiments"
RL4REC = str(REPO / ".venv" / "bin" / "rl4rec")
BEAUTY = str(REPO.parent / "shared" / "data")

ML = ["--dataset_name", "ml-100k", "--data_dir", str(REPO / "data")]
COMMON = [
    "--device",
    "cpu",
    "--log_with",
    "none",
    "--seed",
    "42",
    "--eval_split",
    "valid",
    "--eval_users",
    "128",
]
GRPO_ML = [*ML, *COMMON, "--algorithm", "grpo", "--reward_type", "auc", "--temperature", "0.8",
           "--max_new_tokens", "32", "--max_length", "256", "--ppo_epochs", "1", "--save_steps", "10"]  # fmt: skip


def grpo(prompts: int, group: int, lr: str, steps: int, *extra: str, eval_steps: int = 10) -> list[str]:
    batch = prompts * group
    return [*GRPO_ML, "--batch_size", str(batch), "--num_generations", str(group), "--mini_batch_size", str(batch),
            "--learning_rate", lr, "--max_steps", str(steps), "--eval_steps", str(eval_steps), *extra]  # fmt: skip


def h5_constant(lr: str, steps: int, *extra: str, eval_steps: int = 20) -> list[str]:
    """ml-next5-h5's recipe (next-5 AUC, 5 history items, 4 prompts x 4) at a constant rate."""
    return grpo(4, 4, lr, steps, "--next_items", "5", "--max_history_items", "5", "--lr_scheduler", "constant",
                "--save_total_limit", "1", *extra, eval_steps=eval_steps)  # fmt: skip


def rft(lr: str, steps: int, *extra: str, eval_steps: int = 10) -> list[str]:
    """Reward-ranked fine-tuning: the SFT half; ``run`` first samples with `rl4rec headroom --split train`."""
    return [*ML, "--device", "cpu", "--seed", "42", "--eval_split", "valid", "--eval_users", "128",
            "--max_length", "256", "--batch_size", "8", "--mini_batch_size", "8", "--learning_rate", lr,
            "--max_steps", str(steps), "--save_steps", str(eval_steps), "--save_total_limit", "1", "--eval_steps",
            str(eval_steps), "--max_completion_tokens", "32",
            "--keep_best", "auc", *extra]  # fmt: skip


def dpo(lr: str, *extra: str) -> list[str]:
    """DPO on reward-ranked pairs (each user's best sample against its worst), beta 0.1, held-out every 20 steps."""
    return rft(lr, 118, "--loss", "dpo", "--dpo_beta", "0.1", *extra, eval_steps=20)


#: Reward-ranked runs: name -> (users sampled, samples per user, user-sample seed, sampling policy or None for the
#: default) for `rl4rec headroom --split train`.
SAMPLING: dict[str, tuple[int, int, int, str | None]] = {
    "ml-rft400x4": (400, 4, 0, None),
    # expert iteration: round 2 samples other users (seed 1) with round 1's policy and fine-tunes it further
    "ml-rft400x4-r2": (400, 4, 1, str(OUT / "ml-rft400x4" / "checkpoint_final")),
    # scale: every training user, best of 8 (best-of-8 held 0.86 AUC on validation users against 0.58 for the mean)
    "ml-rft943x8": (943, 8, 0, None),
}
#: Runs that train on another run's samples instead of drawing them again.
SAMPLES_FROM = {name: "ml-rft943x8" for name in ("ml-dpo943x8", "ml-dpo943x8-lr2e-5", "ml-dpo943x8-e2")}


def sampling(name: str) -> tuple[int, int, int, str | None] | None:
    """The sampling a reward-ranked run trains on (its own, or the run it borrows samples from), else None."""
    return SAMPLING.get(SAMPLES_FROM.get(name, name))


def sft_ml(lr: str, steps: int, examples: int, *extra: str) -> list[str]:
    """The supervised warm start on ml-100k: the RL prompt -> the training target's text."""
    return [*ML, "--device", "cpu", "--seed", "42", "--eval_split", "valid", "--eval_users", "128",
            "--max_length", "256", "--batch_size", "8", "--mini_batch_size", "8", "--learning_rate", lr,
            "--max_steps", str(steps), "--max_examples", str(examples), "--save_steps", "10", "--eval_steps", "10",
            "--max_completion_tokens", "32", *extra]  # fmt: skip


SFT_ML = str(OUT / "ml-sft48" / "checkpoint_final")
DPO_ML = str(OUT / "ml-dpo943x8" / "checkpoint_final")
#: ml-100k fusion: history weights tuned on validation users (`prepare` writes it), and the same with a fixed
#: text weight for candidate-aware rewards.
FUSION_ML = str(OUT / "fusion-ml100k.json")
FUSION_ML_REWARD = str(OUT / "fusion-ml100k-reward.json")
CANDIDATES_ML = ["--candidates", "10", "--candidate_fusion", FUSION_ML, "--max_length", "384", "--fusion", FUSION_ML_REWARD,
                 "--eval_fusion", FUSION_ML_REWARD]  # fmt: skip

#: name -> (command, flags, what it tests)
EXPERIMENTS: dict[str, tuple[str, list[str], str]] = {
    "ml-sft48": (
        "sft",
        sft_ml("1e-4", 48, 1024),
        "supervised warm start: 48 steps x 8 (prompt -> target text), lr 1e-4",
    ),
    "ml-cand-grpo60": (
        "train",
        grpo(2, 4, "1e-5", 60, *CANDIDATES_ML),
        "candidate-aware GRPO (10 recall candidates in the prompt, fused AUC reward, w_text 0.5)",
    ),
    "ml-sft-grpo60": (
        "train",
        grpo(2, 4, "1e-5", 60, "--model_name", SFT_ML),
        "GRPO from the warm start (full FT, lr 1e-5, 2 prompts x 4), 60 steps",
    ),
    "ml-rft400x4": (
        "sft",
        rft("5e-5", 50),
        "reward-ranked fine-tuning: best of 4 samples (T 0.8) of 400 training users, 50 SFT steps",
    ),
    "ml-rft400x4-r2": (
        "sft",
        rft("5e-5", 50, "--model_name", str(OUT / "ml-rft400x4" / "checkpoint_final")),
        "reward-ranked fine-tuning, round 2: best of 4 samples of 400 other training users by round 1's policy, "
        "50 more SFT steps from it",
    ),
    "ml-rft943x8": (
        "sft",
        rft("5e-5", 118, eval_steps=20),
        "reward-ranked fine-tuning at scale: best of 8 samples (T 0.8) of all 943 training users, 118 SFT steps "
        "(one pass)",
    ),
    # the same samples as ml-rft943x8 (sampled once), DPO instead of imitating the best: the best sample against the
    # worst of each user, so what separates them (a style) is learned rather than the best one's title
    "ml-dpo943x8": (
        "sft",
        dpo("5e-6"),
        "DPO on ml-rft943x8's samples: each training user's best of 8 against its worst, lr 5e-6, 118 steps",
    ),
    # ml-dpo943x8's pair loss stayed near chance (0.69) while its held-out AUC rose: is the step too small?
    "ml-dpo943x8-lr2e-5": (
        "sft",
        dpo("2e-5"),
        "as ml-dpo943x8 at 4x the learning rate (2e-5)",
    ),
    # ml-dpo943x8's curve still rose at its last step (its rate decayed to 0 there): a second pass over the same
    # pairs from its end, that end as the new reference (iterated DPO on the same, now older, samples)
    "ml-dpo943x8-e2": (
        "sft",
        dpo("5e-6", "--model_name", DPO_ML),
        "ml-dpo943x8's second pass: the same 943 pairs from its end (the new reference), lr 5e-6, 118 steps",
    ),
    "ml-demo60": (
        "train",
        grpo(2, 4, "1e-5", 60),
        "the demo's recipe (full FT, lr 1e-5, 2 prompts x 4), 60 steps",
    ),
    "ml-lora2e-4": ("train", grpo(4, 4, "2e-4", 60, "--use_peft"), "LoRA r16 at lr 2e-4, 4 prompts x 4"),
    "ml-full3e-6-g8": ("train", grpo(4, 8, "3e-6", 40), "full FT at lr 3e-6, 4 prompts x 8"),
    # the reward against the next 5 training items: less about which title a sample names, more about what carries
    "ml-next5-grpo": (
        "train",
        grpo(
            4,
            4,
            "1e-5",
            300,
            "--next_items",
            "5",
            "--save_total_limit",
            "1",
            "--keep_best",
            "auc",
            eval_steps=50,
        ),
        "GRPO rewarded by the mean AUC of the next 5 training items (full FT, lr 1e-5, 4 prompts x 4), 300 steps",
    ),
    # AUC taught an era and genres (AUC +0.044 on test, NDCG@10 flat): does a top-of-ranking bonus teach titles?
    "ml-next5-aucndcg": (
        "train",
        grpo(
            4,
            4,
            "1e-5",
            300,
            "--next_items",
            "5",
            "--reward_type",
            "auc_ndcg",
            "--k",
            "100",
            "--mixed_weight",
            "0.5",
            "--save_total_limit",
            "1",
            "--keep_best",
            "ndcg@10",
            eval_steps=50,
        ),
        "as ml-next5-grpo, rewarded by 0.5 NDCG@100 + 0.5 AUC over the next 5 items (later flags win)",
    ),
    # can the demo's budget (about 10 min of steps) reach ml-next5-grpo's gain with a 3x larger step?
    "ml-next5-lr3e-5": (
        "train",
        grpo(4, 4, "3e-5", 50, "--next_items", "5", "--save_total_limit", "1", eval_steps=25),
        "as ml-next5-grpo at lr 3e-5 for 50 steps (a demo-sized budget)",
    ),
    # the prompt budget is the biggest lever on a step's cost (docs/BENCHMARKS.md): does half the history learn as
    # well per step? (the learned style names the recent era and genres, which 5 items still show)
    "ml-next5-h5": (
        "train",
        grpo(
            4,
            4,
            "1e-5",
            200,
            "--next_items",
            "5",
            "--max_history_items",
            "5",
            "--save_total_limit",
            "1",
            eval_steps=50,
        ),
        "as ml-next5-grpo with the 5 most recent history items in the prompt (10 before), 200 steps",
    ),
    # rollout reuse: each rollout batch serves N optimizer steps (TRL num_iterations = --ppo_epochs)
    **{
        f"ml-next5-h5-it{reuse}": (
            "train",
            grpo(
                4,
                4,
                "1e-5",
                60,
                "--next_items",
                "5",
                "--max_history_items",
                "5",
                "--ppo_epochs",
                str(reuse),
                "--save_total_limit",
                "1",
                eval_steps=20,
            ),
            f"as ml-next5-h5, each rollout batch used for {reuse} optimizer steps (TRL num_iterations {reuse}), "
            "60 steps",
        )
        for reuse in (2, 4)
    },
    # the demo's budget (40 steps fit 15 minutes with AVX-512 BF16): a linear schedule cut to 40 steps learns at half
    # its rate on average; does a constant rate, a larger one, or advantages not divided by each group's std (a group
    # whose 4 AUCs differ by 0.001 otherwise pushes as hard as one whose AUCs differ by 0.3) reach the full recipe's
    # early gain (ml-next5-h5: +0.048 at step 50) inside the demo's budget?
    **{
        f"ml-h5-const40{suffix}": (
            "train",
            h5_constant(lr, 40, *extra),
            f"as ml-next5-h5 for 40 steps at a constant lr {lr}{what}",
        )
        for suffix, lr, extra, what in (
            ("", "1e-5", (), ""),
            ("-srnone", "1e-5", ("--scale_rewards", "none"), ", advantages not divided by the group's std"),
            ("-lr2e-5", "2e-5", (), ""),
        )
    },
    # ml-h5-const40-lr2e-5 was still rising at its end: at a constant rate, continuing it is the same as a longer run
    "ml-h5-const100-lr2e-5": (
        "train",
        h5_constant("2e-5", 100),
        "ml-h5-const40-lr2e-5 continued from its step 40 to step 100 (constant lr 2e-5)",
    ),
    # the demo on a CPU without native bf16 (29 s a step in fp32) has room for 16 steps: does a larger constant rate
    # reach in 16 steps what 2e-5 reaches in 40? Held-out every 8 steps; run on such a CPU.
    **{
        f"ml-h5-const16-lr{lr}": (
            "train",
            h5_constant(lr, 16, eval_steps=8),
            f"as ml-next5-h5 for 16 steps at a constant lr {lr} (the demo's size on a CPU without native bf16)",
        )
        for lr in ("2e-5", "5e-5")
    },
    # both read below 0 at steps 8 and 16 on such a CPU (fp32 training): another seed's trajectory, and the first
    # run continued to 40 steps (where the bf16 run of the same recipe stood at +0.0428)
    **{
        f"ml-h5-const16-lr2e-5-seed{seed}": (
            "train",
            h5_constant("2e-5", 16, "--seed", str(seed), eval_steps=8),
            f"ml-h5-const16-lr2e-5 with training seed {seed}",
        )
        for seed in (1, 2)
    },
    "ml-h5-const16to40-lr2e-5": (
        "train",
        h5_constant("2e-5", 40, eval_steps=8),
        "ml-h5-const16-lr2e-5 continued from its step 16 to step 40 (constant lr 2e-5)",
    ),
}
#: Runs that start from another run's last step checkpoint (its logs and held-out step 0 copied), e.g. to extend a
#: constant-rate run: new name -> the run it continues.
CONTINUES = {
    "ml-h5-const100-lr2e-5": "ml-h5-const40-lr2e-5",
    "ml-h5-const16to40-lr2e-5": "ml-h5-const16-lr2e-5",
}


def flag_value(flags: list[str], flag: str) -> str | None:
    """A flag's value in a command line, the last one where it is given twice (later flags win), else None."""
    where = [i for i, given in enumerate(flags) if given == flag]
    return flags[where[-1] + 1] if where else None


def run_dir(name: str) -> Path:
    return OUT / name


def prepare_fusion() -> None:
    """ml-100k (prepared on a fresh checkout), its history weights (tune-fusion on validation users) and the
    reward's fixed text weight."""
    if not (REPO / "data" / "ml-100k" / "sequential_data.txt").is_file():
        subprocess.check_call(
            [RL4REC, "prepare", "--dataset", "ml-100k", "--data_dir", str(REPO / "data")], cwd=REPO
        )
    if not Path(FUSION_ML).is_file():
        subprocess.check_call([RL4REC, "tune-fusion", "--dataset", "ml-100k", "--data_dir", str(REPO / "data"),
                               "--output", FUSION_ML], cwd=REPO)  # fmt: skip
    if not Path(FUSION_ML_REWARD).is_file():
        fusion = json.loads(Path(FUSION_ML).read_text())["fusion"] | {"w_text": 0.5}
        Path(FUSION_ML_REWARD).write_text(json.dumps({"fusion": fusion, "chosen": "history weights of "
                                                      "fusion-ml100k.json, w_text fixed at 0.5"}, indent=1))  # fmt: skip


def run(name: str) -> None:
    command, flags, _ = EXPERIMENTS[name]
    out = run_dir(name)
    if name in CONTINUES and not out.exists():
        source = run_dir(CONTINUES[name])
        last = max(
            source.glob("checkpoint_step_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]), default=None
        )
        if last is None:
            raise SystemExit(
                f"{name} continues {CONTINUES[name]}, which has no checkpoint_step_N: run it first"
            )
        shutil.copytree(source, out, ignore=lambda d, names: [n for n in names if d == str(source) and (
            n.startswith(("checkpoint_", "test-", "merge")) and n != last.name)])  # fmt: skip
    resume = ["--resume"] if (out / "run_config.json").is_file() else []
    if (out / "checkpoint_final").is_dir():
        print(f"{name}: finished already ({out / 'checkpoint_final'})")
        return
    out.mkdir(parents=True, exist_ok=True)
    extra: list[str] = []
    if sampling(name):  # reward-ranked: sample K queries per training user once, train on each user's best
        users, samples, seed, policy = sampling(name)
        ranked = run_dir(SAMPLES_FROM.get(name, name)) / "samples.json"
        if not ranked.with_suffix(".ranks.jsonl").is_file():
            sample = [RL4REC, "headroom", "--dataset", "ml-100k", "--data_dir", str(REPO / "data"), "--split", "train",
                      "--num_users", str(users), "--samples", str(samples), "--temperature", "0.8", "--max_new_tokens",
                      "32", "--max_length", "256", "--users_per_batch", "8", "--seed", str(seed), "--output",
                      str(ranked), *(["--model", policy] if policy else [])]  # fmt: skip
            with open(out / "sample.log", "a") as log:
                if subprocess.call(sample, cwd=REPO, stdout=log, stderr=subprocess.STDOUT):
                    raise SystemExit(f"{name}: sampling failed; see {out / 'sample.log'}")
        extra = ["--completions_from", str(ranked.with_suffix(".ranks.jsonl"))]
    argv = [RL4REC, command, *flags, *extra, "--checkpoint_dir", str(out), *resume]
    (out / "command.txt").write_text(" ".join(argv[1:]) + "\n")
    started = time.time()
    with open(out / "train.log", "a") as log:
        code = subprocess.call(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    with open(out / "wall_time.txt", "a") as f:
        f.write(f"{time.time() - started:.0f} s, exit {code}, {time.strftime('%Y-%m-%d %H:%M')}\n")
    if code:
        raise SystemExit(f"{name}: rl4rec {command} exited {code}; see {out / 'train.log'}")


def records(name: str) -> list[dict]:
    path = run_dir(name) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def row(name: str) -> str:
    command, flags, what = EXPERIMENTS[name]
    recs = records(name)
    evals = [r for r in recs if "eval/auc" in r]
    steps = [r for r in recs if "loss" in r]
    if not evals:
        return f"| {name} | {what} | not run | | | |"
    last = evals[-1]
    completions = (steps[-1]["step"] if steps else 0) * int(flag_value(flags, "--batch_size") or 0)
    prompts = completions // int(flag_value(flags, "--num_generations") or 1)
    if command == "train":  # each rollout batch serves --ppo_epochs optimizer steps (TRL num_iterations)
        prompts //= int(flag_value(flags, "--ppo_epochs") or 1)
    if command == "sft" and sampling(name):
        # one example (a user's best sample, or its best/worst pair) per sampled user: a run stopped early saw fewer
        prompts = min(sampling(name)[0], completions)

    def delta(key: str) -> str:
        if f"{key}_vs_step0" not in last:
            return "-"
        return f"{last[f'{key}_vs_step0']:+.4f} [{last[f'{key}_vs_step0_lo']:+.4f}, {last[f'{key}_vs_step0_hi']:+.4f}]"

    best = max(evals, key=lambda r: r["eval/auc"])
    secs = sum(r.get("time/step", 0) or 0 for r in steps) + sum(r.get("eval/seconds", 0) for r in evals)
    return (f"| {name} | {what} | {last['step']} steps, {prompts} prompts, {secs / 60:.0f} min | "
            f"{evals[0]['eval/auc']:.4f} → {last['eval/auc']:.4f}, {delta('eval/auc')} | {delta('eval/ndcg@10')} | "
            f"best AUC {best['eval/auc']:.4f} at step {best['step']} |")  # fmt: skip


def start_model(name: str) -> str | None:
    """The policy a run started from (``--model_name``), or None for the default policy."""
    model = flag_value(EXPERIMENTS[name][1], "--model_name")
    if model is not None:
        return model
    return sampling(name)[3] if sampling(name) else None


#: Prompt flags a run may change; its test read gives the starting policy the same ones (`evaluate` reads a trained
#: checkpoint's own settings, but the untrained policy has none).
PROMPT_FLAGS = ("--max_history_items",)


def prompt_flags(name: str) -> dict[str, str]:
    """The run's own prompt flags and their values."""
    values = {flag: flag_value(EXPERIMENTS[name][1], flag) for flag in PROMPT_FLAGS}
    return {flag: value for flag, value in values.items() if value is not None}


def test(name: str, users: str, checkpoint: str = "final") -> None:
    """Read the test split once: a policy of the run (its final one unless ``checkpoint`` names another, e.g. ``best``
    chosen on validation by ``--keep_best``) and the policy it started from on the same seeded users, paired."""
    out = run_dir(name)
    policy = out / f"checkpoint_{checkpoint}"
    if not policy.is_dir():
        found = sorted(p.name.removeprefix("checkpoint_") for p in out.glob("checkpoint_*") if p.is_dir())
        raise SystemExit(f"{name}: no {policy.name} in {out} (found: {', '.join(found) or 'none'}); "
                         f"`run {name}` first, or pass --checkpoint with one of those")  # fmt: skip
    start = start_model(name)
    prompt = prompt_flags(name)
    prompt_argv = [word for pair in prompt.items() for word in pair]
    policies = {"start": ["--method", "zero-shot"] if start is None else ["--method", "policy", "--model", start],
                "final": ["--method", "policy", "--model", str(policy)]}  # fmt: skip
    # the untrained policy's test queries are the same for every run that starts from it (and has its prompt):
    # evaluated once
    suffix = "".join(f"-{flag.strip('-')}{value}" for flag, value in prompt.items())
    folders = {"start": OUT / f"test-zero-shot-{users}{suffix}" if start is None else out / f"test-start-{users}",
               "final": out / f"test-{checkpoint}-{users}"}  # fmt: skip
    for label, method in policies.items():
        evaluate(folders[label], "test", users, *method, *prompt_argv)
    subprocess.check_call([RL4REC, "compare", str(folders["start"]), str(folders["final"]),
                           "--output", str(out / f"test-{checkpoint}-vs-start-{users}.json")], cwd=REPO)  # fmt: skip


def evaluate(folder: Path, split: str, users: str, *method: str) -> None:
    """One `rl4rec evaluate` run on ml-100k (resumable), with the experiments' prompt and decoding settings."""
    argv = [RL4REC, "evaluate", "--dataset", "ml-100k", "--data_dir", str(REPO / "data"), "--split", split,
            "--num_users", users, "--seed", "0", "--max_new_tokens", "32", "--max_length", "256", "--batch_size",
            "32", "--device", "cpu", *method, "--run_dir", str(folder), "--output", f"{folder}.json"]  # fmt: skip
    subprocess.check_call(argv, cwd=REPO)


def merge(name: str, split: str, users: str, num_queries: int, temperature: float) -> None:
    """The final policy's greedy query against N sampled queries ranked once (`evaluate --num_queries`), paired
    on the same seeded users: does merging samples beat the one greedy text?"""
    out = run_dir(name)
    model = ["--method", "policy", "--model", str(out / "checkpoint_final")]
    greedy = out / f"{split}-final-{users}"
    merged = out / f"{split}-final-{users}-n{num_queries}-t{temperature:g}"
    evaluate(greedy, split, users, *model)  # for the test split: the same folder `test` writes (read once)
    evaluate(merged, split, users, *model, "--num_queries", str(num_queries), "--temperature", str(temperature),
             "--batch_size", str(max(1, 32 // num_queries)))  # fmt: skip
    subprocess.check_call([RL4REC, "compare", str(greedy), str(merged), "--output", f"{merged}-vs-greedy.json"],
                          cwd=REPO)  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["list", "run", "test", "merge", "table"])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--test_users", default="all", help="test: seeded test users ('all' = every user)")
    parser.add_argument("--checkpoint", default="final",
                        help="test: which checkpoint_* of the run to read (final, best, step_150, ...)")  # fmt: skip
    parser.add_argument("--split", default="valid", choices=["valid", "test"], help="merge: the split")
    parser.add_argument("--users", default="128", help="merge: seeded users ('all' = every user)")
    parser.add_argument("--num_queries", type=int, default=4, help="merge: sampled queries per user")
    parser.add_argument("--temperature", type=float, default=0.8, help="merge: sampling temperature")
    args = parser.parse_args()
    names = args.names or list(EXPERIMENTS)
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise SystemExit(f"unknown experiment(s) {unknown}; `list` shows the registry")
    if args.action == "list":
        for name in names:
            print(f"{name:24} {EXPERIMENTS[name][2]}")
    elif args.action == "run":
        prepare_fusion()
        for name in names:
            run(name)
    elif args.action == "test":
        for name in args.names or []:
            test(name, args.test_users, args.checkpoint)
    elif args.action == "merge":
        for name in args.names or []:
            merge(name, args.split, args.users, args.num_queries, args.temperature)
    else:
        print(
            "| run | what | length | held-out AUC, step 0 → last, last − step 0 [95% CI] | NDCG@10 last − step 0 | |"
        )
        print("|---|---|---|---|---|---|")
        for name in names:
            print(row(name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
