"""fp32 vs bf16 on the CPU, in one process: SFT step, GRPO-like update, real TRL GRPO step, generation.

Each section runs its variants interleaved (A B, B A, A B, ...: the order rotates each repetition, so
drift in the machine's load hits both alike) and reports medians and ratios against fp32 measured in the
same run, plus how far bf16 moves the numbers that matter on the same inputs:

* ``sft``: forward + backward + AdamW step on prompt + target-item-text sequences (loss on the completion).
  Two copies of the policy start from the same weights and see the same batches, one in fp32, one under
  ``torch.autocast("cpu", bfloat16)`` (fp32 master weights and optimizer). Quality: loss, per-token
  log-probs and gradient direction at the same weights; the fp32 loss of a held-out batch after the steps.
  Also one step with the weights themselves in bf16, to show why that is not used for training.
* ``grpo``: the same for a GRPO-style update (clipped-ratio policy-gradient loss on sampled completions with
  fixed group-normalised advantages), completion log-probs only (``logits_to_keep``), like TRL.
* ``trl``: the real thing, rl4rec's GRPO trainer (TRL ``GRPOTrainer``, the demo's settings) with
  ``--bf16 off`` vs ``--bf16 on`` (transformers ``bf16=True, use_cpu=True``: accelerate wraps the forward in
  CPU autocast, generation included), one optimizer step per ``train()`` call, alternating.
* ``gen``: greedy generation of held-out (test) users' queries in fp32, under autocast, and with bf16
  weights; the generated texts are compared with fp32's and scored by the retrieval service (AUC, NDCG@10).

    .venv/bin/python benchmarks/bench_precision.py       # writes benchmarks/results/bench_precision.json
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import gc
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, RESULTS, add_threads_flag, apply_threads, write_result

SECTIONS = ("gen", "sft", "grpo", "trl")


# -- helpers ------------------------------------------------------------------------------------------
def autocast(bf16: bool) -> Any:
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def rotations(variants: list[str], reps: int) -> list[list[str]]:
    """A B C, B C A, C A B, ...: every variant takes every position equally often."""
    return [variants[r % len(variants) :] + variants[: r % len(variants)] for r in range(reps)]


def timing_summary(times: dict[str, list[float]], baseline: str = "fp32") -> dict[str, Any]:
    out: dict[str, Any] = {}
    base = statistics.median(times[baseline])
    for name, values in times.items():
        med = statistics.median(values)
        paired = [b / v for b, v in zip(times[baseline], values, strict=True)]
        out[name] = {"median_s": med, "min_s": min(values), "all_s": values,
                     "speedup_vs_fp32": base / med, "paired_speedup_median": statistics.median(paired)}  # fmt: skip
    return out


def diff_stats(a: Any, b: Any) -> dict[str, float]:
    """Max / mean absolute difference of two tensors, and the max relative to ``a``'s magnitude."""
    a, b = a.double(), b.double()
    d = (a - b).abs()
    return {"max_abs": d.max().item(), "mean_abs": d.mean().item(),
            "max_rel": (d / a.abs().clamp_min(1e-12)).max().item()}  # fmt: skip


def grad_vector(model: Any) -> Any:
    import torch

    return torch.cat([p.grad.detach().double().flatten() for p in model.parameters() if p.grad is not None])


def grad_agreement(a: Any, b: Any) -> dict[str, float]:
    import torch

    ga, gb = grad_vector(a), grad_vector(b)
    return {"cosine": torch.nn.functional.cosine_similarity(ga, gb, dim=0).item(),
            "norm_fp32": ga.norm().item(), "norm_bf16": gb.norm().item(),
            "rel_l2_diff": ((ga - gb).norm() / ga.norm()).item()}  # fmt: skip


def make_optimizer(model: Any, lr: float) -> Any:
    import torch

    # transformers' Trainer defaults: AdamW, betas (0.9, 0.999), eps 1e-8, no weight decay
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)


# -- data -----------------------------------------------------------------------------------------------
class Data:
    def __init__(self, args: Any, tokenizer: Any) -> None:
        from rl4rec.data import leave_one_out
        from rl4rec.data.dataset import load_dataset
        from rl4rec.data.prompts import PromptBuilder, PromptConfig

        self.tokenizer = tokenizer
        self.dataset = load_dataset(args.dataset, args.data_dir)
        self.builder = PromptBuilder(
            self.dataset, tokenizer, PromptConfig(max_items=10, max_length=args.max_length)
        )
        rng = random.Random(args.seed)
        test = leave_one_out(self.dataset.sequences, "test").examples
        train = leave_one_out(self.dataset.sequences, "train").examples
        self.test = rng.sample(test, args.gen_batch * args.gen_reps)
        self.train = rng.sample(train, args.sft_batch * (args.reps + 2))

    def prompt_ids(self, example: Any) -> list[int]:
        prompt = self.builder.build(example.history)
        return list(self.tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True,
                                                       return_dict=False))  # fmt: skip

    def rendered(self, example: Any) -> str:
        from rl4rec.policy.generation import render_prompts

        return render_prompts(self.tokenizer, [self.builder.build(example.history)])[0]

    def sft_batch(self, examples: list[Any]) -> dict[str, Any]:
        """Right-padded prompt + completion (the target's text, then EOS); labels only on the completion."""
        import torch

        tok = self.tokenizer
        rows = []
        for ex in examples:
            prompt = self.prompt_ids(ex)
            completion = tok(self.dataset.item_text(ex.target), add_special_tokens=False)["input_ids"] + [
                tok.eos_token_id
            ]
            rows.append((prompt + completion, [-100] * len(prompt) + completion))
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.full((len(rows), width), tok.pad_token_id)
        labels = torch.full((len(rows), width), -100)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (ids, lab) in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            labels[i, : len(lab)] = torch.tensor(lab)
            mask[i, : len(ids)] = 1
        return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


# -- SFT -----------------------------------------------------------------------------------------------
def sft_forward(model: Any, batch: dict[str, Any], bf16: bool) -> tuple[Any, Any]:
    """Loss (mean over completion tokens) and per-token log-probs of the labels (fp32 log-softmax)."""
    import torch

    with autocast(bf16):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    logits = out.logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    logps = torch.log_softmax(logits, dim=-1).gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    loss = -(logps * keep).sum() / keep.sum()
    return loss, logps[keep].detach()


def run_sft(args: Any, data: Data, load: Any) -> dict[str, Any]:
    import torch

    batches = [
        data.sft_batch(data.train[i * args.sft_batch : (i + 1) * args.sft_batch])
        for i in range(args.reps + 2)
    ]
    held_out = batches.pop()
    models = {"fp32": load(), "bf16_autocast": load()}
    opts = {name: make_optimizer(m, args.lr) for name, m in models.items()}
    for m in models.values():
        m.train()

    held_out_bf16_view: list[dict[str, float]] = []

    def held_out_losses() -> dict[str, float]:
        # the same held-out batch after 0, 1, 2, ... steps, scored in fp32 (the master weights) and, apart, under
        # autocast (what the bf16 run's forward sees: the weights rounded to bf16)
        with torch.no_grad():
            held_out_bf16_view.append(
                {name: sft_forward(m, held_out, True)[0].item() for name, m in models.items()}
            )
            return {name: sft_forward(m, held_out, False)[0].item() for name, m in models.items()}

    held_out_trajectory = [held_out_losses()]

    # step 0 (warm-up, not timed): same weights, same batch -> quality of one step
    losses: dict[str, list[float]] = {name: [] for name in models}
    logps = {}
    for name, m in models.items():
        loss, logps[name] = sft_forward(m, batches[0], name != "fp32")
        loss.backward()
        losses[name].append(loss.item())
    quality = {"loss_fp32": losses["fp32"][0], "loss_bf16": losses["bf16_autocast"][0],
               "loss_abs_diff": abs(losses["fp32"][0] - losses["bf16_autocast"][0]),
               "loss_rel_diff": abs(losses["fp32"][0] - losses["bf16_autocast"][0]) / abs(losses["fp32"][0]),
               "token_logprob_diff": diff_stats(logps["fp32"], logps["bf16_autocast"]),
               "gradient": grad_agreement(models["fp32"], models["bf16_autocast"])}  # fmt: skip
    for name in models:
        opts[name].step()
        opts[name].zero_grad(set_to_none=True)
    held_out_trajectory.append(held_out_losses())

    times: dict[str, list[float]] = {name: [] for name in models}
    for rep, order in enumerate(rotations(list(models), args.reps), start=1):
        for name in order:
            t0 = time.perf_counter()
            loss, _ = sft_forward(models[name], batches[rep], name != "fp32")
            loss.backward()
            opts[name].step()
            opts[name].zero_grad(set_to_none=True)
            times[name].append(time.perf_counter() - t0)
            losses[name].append(loss.item())
            print(f"sft rep {rep} {name}: {times[name][-1]:.1f}s loss {loss.item():.4f}", flush=True)
        held_out_trajectory.append(held_out_losses())
    quality["train_loss_trajectory"] = losses  # each model's own batch loss, in its own precision
    quality["train_loss_max_abs_diff"] = max(abs(a - b) for a, b in zip(*losses.values(), strict=True))
    # the same held-out batch scored in fp32 after 0, 1, 2, ... steps: how far the two trainings drift apart
    quality["held_out_fp32_loss_trajectory"] = {
        name: [h[name] for h in held_out_trajectory] for name in models
    }
    quality["held_out_max_abs_diff"] = max(abs(h["fp32"] - h["bf16_autocast"]) for h in held_out_trajectory)
    quality["held_out_autocast_view_trajectory"] = {
        name: [h[name] for h in held_out_bf16_view] for name in models
    }
    quality["autocast_view_minus_fp32_max_abs"] = max(
        abs(v[name] - h[name])
        for v, h in zip(held_out_bf16_view, held_out_trajectory, strict=True)
        for name in models
    )
    quality["held_out_drop_fp32"] = held_out_trajectory[0]["fp32"] - held_out_trajectory[-1]["fp32"]
    quality["held_out_drop_bf16"] = (
        held_out_trajectory[0]["bf16_autocast"] - held_out_trajectory[-1]["bf16_autocast"]
    )
    models.clear()
    opts.clear()
    gc.collect()
    return {"timing": timing_summary(times), "quality": quality, "bf16_weights_step": bf16_weight_step(args, batches[0], load),
            "batch_shape": list(batches[0]["input_ids"].shape),
            "completion_tokens": int((batches[0]["labels"] != -100).sum())}  # fmt: skip


def bf16_weight_step(args: Any, batch: dict[str, Any], load: Any) -> dict[str, Any]:
    """One AdamW step with the weights themselves in bf16: how many weights does the update leave unchanged?"""
    import torch

    model = load().to(torch.bfloat16)
    model.train()
    opt = make_optimizer(model, args.lr)
    before = [p.detach().clone() for p in model.parameters()]
    t0 = time.perf_counter()
    loss, _ = sft_forward(model, batch, False)
    loss.backward()
    opt.step()
    seconds = time.perf_counter() - t0
    changed = sum(int((p.detach() != b).sum()) for p, b in zip(model.parameters(), before, strict=True))
    total = sum(b.numel() for b in before)
    del model, opt, before
    gc.collect()
    return {"seconds_single_step": seconds, "loss": loss.item(), "learning_rate": args.lr,
            "fraction_of_weights_changed": changed / total,
            "note": "AdamW's first update is ~lr per weight; a bf16 weight of magnitude 0.02 has a spacing of "
                    "~1e-4, so an update of 1e-5 rounds away: pure-bf16 training does not train at this lr"}  # fmt: skip


# -- GRPO-like update --------------------------------------------------------------------------------
def grpo_batch(args: Any, data: Data, model: Any) -> dict[str, Any]:
    """Sampled completions of ``grpo_prompts`` prompts x ``grpo_generations`` (fp32 policy), left-padded
    prompts + right-padded completions, fixed group-normalised advantages."""
    import torch

    tok = data.tokenizer
    examples = data.train[: args.grpo_prompts]
    texts = [data.rendered(ex) for ex in examples for _ in range(args.grpo_generations)]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    torch.manual_seed(args.seed)
    model.eval()
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=args.max_new_tokens, do_sample=True, temperature=0.8, top_p=0.95,
                             pad_token_id=tok.pad_token_id)  # fmt: skip
    completion = out[:, enc["input_ids"].shape[1] :]
    is_eos = completion == tok.eos_token_id
    first = torch.where(is_eos.any(1), is_eos.int().argmax(1), torch.full((len(texts),), completion.shape[1]))
    cmask = (torch.arange(completion.shape[1]).unsqueeze(0) <= first.unsqueeze(1)).long()
    completion = completion.masked_fill(cmask == 0, tok.pad_token_id)
    g = torch.Generator().manual_seed(args.seed)
    rewards = torch.rand(args.grpo_prompts, args.grpo_generations, generator=g)
    adv = ((rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)).flatten()
    return {"input_ids": torch.cat([enc["input_ids"], completion], 1),
            "attention_mask": torch.cat([enc["attention_mask"], cmask], 1),
            "completion_ids": completion, "completion_mask": cmask, "advantages": adv}  # fmt: skip


def grpo_forward(model: Any, batch: dict[str, Any], bf16: bool, micro: int) -> tuple[list[Any], Any]:
    """DAPO loss (TRL's default) in micro-batches; returns the per-micro-batch losses (already backpropagated
    when grad is enabled) and the completion tokens' log-probs."""
    import torch

    n, width = batch["completion_ids"].shape
    total_tokens = batch["completion_mask"].sum()
    losses, all_logps = [], []
    for s in range(0, n, micro):
        sl = slice(s, s + micro)
        with autocast(bf16):
            out = model(input_ids=batch["input_ids"][sl], attention_mask=batch["attention_mask"][sl],
                        logits_to_keep=width + 1)  # fmt: skip
        logits = out.logits[:, :-1].float()
        logps = (
            torch.log_softmax(logits, -1).gather(-1, batch["completion_ids"][sl].unsqueeze(-1)).squeeze(-1)
        )
        mask = batch["completion_mask"][sl]
        ratio = torch.exp(logps - logps.detach())
        adv = batch["advantages"][sl].unsqueeze(1)
        per_token = -torch.min(ratio * adv, torch.clamp(ratio, 0.8, 1.28) * adv)
        loss = (per_token * mask).sum() / total_tokens
        if loss.requires_grad:
            loss.backward()
        losses.append(loss.detach())
        all_logps.append(logps.detach()[mask.bool()])
    return losses, torch.cat(all_logps)


def run_grpo(args: Any, data: Data, load: Any) -> dict[str, Any]:
    import torch

    models = {"fp32": load(), "bf16_autocast": load()}
    t0 = time.perf_counter()
    batch = grpo_batch(args, data, models["fp32"])
    sample_s = time.perf_counter() - t0
    opts = {name: make_optimizer(m, args.lr) for name, m in models.items()}
    for m in models.values():
        m.train()
    logps, losses = {}, {}
    for name, m in models.items():
        mb_losses, logps[name] = grpo_forward(m, batch, name != "fp32", args.grpo_micro_batch)
        losses[name] = sum(x.item() for x in mb_losses)
    # the loss itself is ~0 at ratio 1 (advantages sum to 0 per group); what matters is the gradient
    ratio = torch.exp(logps["bf16_autocast"] - logps["fp32"])
    quality = {"token_logprob_diff": diff_stats(logps["fp32"], logps["bf16_autocast"]),
               "importance_ratio_bf16_over_fp32": {"min": ratio.min().item(), "max": ratio.max().item(),
                                                   "mean_abs_dev_from_1": (ratio - 1).abs().mean().item()},
               "loss_fp32": losses["fp32"], "loss_bf16": losses["bf16_autocast"],
               "gradient": grad_agreement(models["fp32"], models["bf16_autocast"]),
               "completion_tokens": int(batch["completion_mask"].sum())}  # fmt: skip
    for name in models:
        opts[name].step()
        opts[name].zero_grad(set_to_none=True)
    times: dict[str, list[float]] = {name: [] for name in models}
    for rep, order in enumerate(rotations(list(models), args.reps), start=1):
        for name in order:
            t0 = time.perf_counter()
            grpo_forward(models[name], batch, name != "fp32", args.grpo_micro_batch)
            opts[name].step()
            opts[name].zero_grad(set_to_none=True)
            times[name].append(time.perf_counter() - t0)
            print(f"grpo rep {rep} {name}: {times[name][-1]:.1f}s", flush=True)
    del models, opts
    gc.collect()
    return {"timing": timing_summary(times), "quality": quality, "sampling_s": sample_s,
            "batch_shape": list(batch["input_ids"].shape), "micro_batch": args.grpo_micro_batch}  # fmt: skip


# -- generation ------------------------------------------------------------------------------------------
def run_generation(args: Any, data: Data, load: Any) -> dict[str, Any]:
    import torch

    from rl4rec.retrieval.service import RetrievalService

    tok = data.tokenizer
    fp32 = load()
    fp32.eval()
    bf16_model = copy.deepcopy(fp32).to(torch.bfloat16)
    variants = {"fp32": (fp32, False), "bf16_autocast": (fp32, True), "bf16_weights": (bf16_model, False)}
    kwargs = {
        "do_sample": False,
        "temperature": None,
        "top_p": None,
        "top_k": None,
        "pad_token_id": tok.pad_token_id,
    }

    def generate(name: str, texts: list[str], max_new_tokens: int) -> tuple[float, Any]:
        model, bf16 = variants[name]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        t0 = time.perf_counter()
        with torch.inference_mode(), autocast(bf16):
            out = model.generate(**enc, max_new_tokens=max_new_tokens, **kwargs)
        return time.perf_counter() - t0, out[:, enc["input_ids"].shape[1] :]

    batches = [data.test[i * args.gen_batch : (i + 1) * args.gen_batch] for i in range(args.gen_reps)]
    warm = [data.rendered(batches[0][0])]
    for name in variants:
        generate(name, warm, 4)
    times: dict[str, list[float]] = {name: [] for name in variants}
    steps: dict[str, list[int]] = {name: [] for name in variants}
    outputs: dict[str, list[Any]] = {name: [] for name in variants}
    for rep, order in enumerate(rotations(list(variants), args.gen_reps)):
        texts = [data.rendered(ex) for ex in batches[rep]]
        for name in order:
            seconds, new = generate(name, texts, args.max_new_tokens)
            times[name].append(seconds)
            steps[name].append(int(new.shape[1]))
            outputs[name].extend(new.tolist())
            print(f"gen rep {rep} {name}: {seconds:.1f}s ({new.shape[1]} steps)", flush=True)

    def strip(ids: list[int]) -> list[int]:
        out = []
        for t in ids:
            if t in (tok.eos_token_id, tok.pad_token_id):
                break
            out.append(t)
        return out

    examples = [ex for b in batches for ex in b]
    service = RetrievalService(args.dataset, data_dir=args.data_dir, show_progress=False)
    quality: dict[str, Any] = {}
    base_texts = None
    for name in variants:
        ids = [strip(x) for x in outputs[name]]
        texts = [t.strip() for t in tok.batch_decode(ids, skip_special_tokens=True)]
        targets = [ex.target for ex in examples]
        hist = [list(ex.history) for ex in examples]
        auc = service.evaluate(texts, args.dataset, targets, hist, reward_type="auc")
        ndcg = service.evaluate(texts, args.dataset, targets, hist, reward_type="ndcg", k=10)
        entry = {"auc_mean": statistics.fmean(auc["reward"]), "ndcg10_mean": statistics.fmean(ndcg["reward"]),
                 "auc": auc["reward"], "ranks": auc["rank"], "mean_tokens": statistics.fmean(len(x) for x in ids)}  # fmt: skip
        if name == "fp32":
            base_ids, base_texts, base_auc = ids, texts, auc["reward"]
        else:
            prefix = [next((i for i, (a, b) in enumerate(zip(x, y, strict=False)) if a != b), min(len(x), len(y)))
                      for x, y in zip(base_ids, ids, strict=True)]  # fmt: skip
            entry.update(identical_texts=sum(a == b for a, b in zip(base_texts, texts, strict=True)) / len(texts),
                         mean_common_prefix_tokens=statistics.fmean(prefix),
                         auc_paired_diff_vs_fp32=statistics.fmean(b - a for a, b in zip(base_auc, auc["reward"], strict=True)),
                         auc_max_abs_diff_vs_fp32=max(abs(b - a) for a, b in zip(base_auc, auc["reward"], strict=True)))  # fmt: skip
        entry["examples"] = texts[:2]
        quality[name] = entry
    variants.clear()
    del fp32, bf16_model
    gc.collect()
    return {"timing": timing_summary(times), "generate_steps": steps, "quality": quality,
            "users": len(examples), "batch": args.gen_batch, "max_new_tokens": args.max_new_tokens}  # fmt: skip


# -- the real TRL GRPO step --------------------------------------------------------------------------------
def run_trl(args: Any, tmp: Path) -> dict[str, Any]:
    import torch
    from accelerate.state import AcceleratorState
    from transformers import TrainerCallback

    from rl4rec.policy.loading import load_policy
    from rl4rec.rewards.boundary import build_reward, training_reward
    from rl4rec.training.config import TrainConfig
    from rl4rec.training.data import build_train_dataset
    from rl4rec.training.trl_backend import build_trainer, trl_args

    class Record(TrainerCallback):
        def __init__(self) -> None:
            self.logs: list[dict[str, Any]] = []
            self.walls: list[float] = []
            self.started = 0.0

        def on_step_begin(self, a: Any, s: Any, c: Any, **kw: Any) -> None:
            self.started = time.perf_counter()

        def on_step_end(self, a: Any, s: Any, c: Any, **kw: Any) -> None:
            self.walls.append(time.perf_counter() - self.started)

        def on_log(self, a: Any, s: Any, c: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                self.logs.append(dict(logs))

    def config(bf16: str) -> TrainConfig:
        return TrainConfig(
            algorithm="grpo", device="cpu", dataset_name=args.dataset, data_dir=args.data_dir, reward_type="auc",
            learning_rate=args.lr, temperature=0.8, batch_size=8, num_generations=4, mini_batch_size=8,
            ppo_epochs=1, max_new_tokens=args.max_new_tokens, max_length=args.max_length, log_with="none",
            max_steps=1, save_steps=100000, checkpoint_dir=str(tmp / f"trl-{bf16}"), train_users=64, seed=args.seed,
            bf16=bf16, log_completions=0,
        ).validate()  # fmt: skip

    trainers: dict[str, Any] = {}
    records: dict[str, Record] = {}
    dtype_seen: dict[str, set[str]] = {}
    reward_fn = None
    for name, flag in (("fp32", "off"), ("bf16_autocast", "on")):
        cfg = config(flag)
        reward_fn = reward_fn or build_reward(cfg)
        targs = trl_args(cfg, "cpu")
        targs.save_strategy = "no"  # train() is called once per step here; no checkpoint at its end
        AcceleratorState._reset_state()  # one process, two trainers with different mixed precision
        model, tokenizer = load_policy(cfg.model_name, device="cpu")
        dtype_seen[name] = set()
        model.model.layers[0].self_attn.q_proj.register_forward_hook(
            lambda m, i, o, key=name: dtype_seen[key].add(
                f"{'update' if torch.is_grad_enabled() else 'generation'}: {str(o.dtype).replace('torch.', '')}"
            )
        )
        records[name] = Record()
        trainer = build_trainer("grpo", cfg, model, tokenizer, targs, build_train_dataset(cfg, tokenizer),
                                [training_reward(reward_fn)], [records[name]])  # fmt: skip
        trainers[name] = trainer
    # warm-up (step 1 of each pays one-off costs), then alternate
    for rep, order in enumerate(rotations(list(trainers), args.trl_reps + 1)):
        for name in order:
            trainer = trainers[name]
            # accelerate wraps the forward in autocast on the first train() only (the model is then marked
            # prepared), so later calls run exactly like steps 2.. of one run
            trainer.train()
            log = records[name].logs[-1]
            print(f"trl rep {rep} {name}: {records[name].walls[-1]:.1f}s (gen {log['time/generation']:.1f}, "
                  f"update {log['time/update']:.1f}) reward {log.get('reward', float('nan')):.3f}", flush=True)  # fmt: skip
    out: dict[str, Any] = {"bf16_flag_maps_to": {name: {"bf16": t.args.bf16, "use_cpu": t.args.use_cpu,
                                                        "accelerate_native_amp": t.accelerator.native_amp}
                                                 for name, t in trainers.items()},
                           "q_proj_output_dtypes": {k: sorted(v) for k, v in dtype_seen.items()}}  # fmt: skip
    times = {name: r.walls[1:] for name, r in records.items()}
    out["timing"] = timing_summary(times)
    parts = ("generation", "reward", "update")
    out["split_median_s"] = {name: {p: statistics.median(log[f"time/{p}"] for log in r.logs[1:]) for p in parts}
                             for name, r in records.items()}  # fmt: skip
    out["steps"] = {name: [{"wall_s": w, **{p: log[f"time/{p}"] for p in parts}, "reward": log.get("reward"),
                            "loss": log.get("loss"), "completion_length": log.get("completions/mean_length")}
                           for w, log in zip(r.walls, r.logs, strict=True)] for name, r in records.items()}  # fmt: skip
    out["note"] = (
        "step 1 of each variant is a warm-up and excluded; rewards are of sampled completions "
        "(temperature 0.8), so they differ between variants by sampling noise, not only precision"
    )
    del trainers
    gc.collect()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--data_dir", default=str(REPO / "data"))
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per variant (sft, grpo)")
    parser.add_argument("--sft_batch", type=int, default=4, help="sequences per SFT step")
    parser.add_argument("--grpo_prompts", type=int, default=2)
    parser.add_argument("--grpo_generations", type=int, default=4)
    parser.add_argument("--grpo_micro_batch", type=int, default=8)
    parser.add_argument("--gen_batch", type=int, default=8, help="prompts per generate call")
    parser.add_argument(
        "--gen_reps", type=int, default=3, help="generate calls per variant (different users)"
    )
    parser.add_argument(
        "--trl_reps", type=int, default=2, help="timed TRL steps per variant (after 1 warm-up)"
    )
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--max_length", type=int, default=256, help="prompt token budget")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    add_threads_flag(parser)
    parser.add_argument("--out", default="bench_precision")
    parser.add_argument(
        "--update",
        action="store_true",
        help="rerun only --sections and keep the other sections of --out's JSON",
    )
    args = parser.parse_args(argv)
    apply_threads(args.torch_threads)

    import torch

    from rl4rec.policy.loading import load_policy
    from rl4rec.policy.precision import cpu_flags, cpu_supports_bf16

    torch.manual_seed(args.seed)
    started = time.perf_counter()
    model, tokenizer = load_policy("smollm2-135m-instruct")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    del model

    def load() -> Any:
        m, _ = load_policy("smollm2-135m-instruct")
        m.load_state_dict(state)
        return m

    data = Data(args, tokenizer)
    flags = cpu_flags()
    payload: dict[str, Any] = {
        "config": vars(args),
        "cpu_bf16": {"native": cpu_supports_bf16(flags), "flags": sorted(f for f in flags if "bf16" in f or "amx" in f)},
        "policy_dtype": str(next(iter(state.values())).dtype),
        "results": {},
    }  # fmt: skip
    section_s = {}
    for section in args.sections:
        t0 = time.perf_counter()
        if section == "gen":
            payload["results"]["generation"] = run_generation(args, data, load)
        elif section == "sft":
            payload["results"]["sft"] = run_sft(args, data, load)
        elif section == "grpo":
            payload["results"]["grpo_update"] = run_grpo(args, data, load)
        else:
            with tempfile.TemporaryDirectory(prefix="rl4rec-bench-precision-") as tmp:
                payload["results"]["trl_grpo_step"] = run_trl(args, Path(tmp))
        section_s[section] = time.perf_counter() - t0
        print(f"section {section}: {section_s[section]:.0f}s", flush=True)
    payload["section_s"] = section_s
    # which command produced each section (with --update, sections come from different runs)
    this_run = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "load_average_1m": os.getloadavg()[0]}  # fmt: skip
    payload["section_runs"] = {name: this_run for name in payload["results"]}
    previous = RESULTS / f"{args.out}.json"
    if args.update and previous.is_file():
        old = json.loads(previous.read_text())
        old_run = {"command": old.get("command"), "date": old.get("machine", {}).get("date"),
                   "load_average_1m": old.get("machine", {}).get("load_average_1m")}  # fmt: skip
        old_runs = {name: old.get("section_runs", {}).get(name, old_run) for name in old.get("results", {})}
        payload["results"] = {**old.get("results", {}), **payload["results"]}
        payload["section_s"] = {**old.get("section_s", {}), **section_s}
        payload["section_runs"] = {**old_runs, **payload["section_runs"]}
    payload["run_total_s"] = time.perf_counter() - started
    summary = {name: {v: round(t["speedup_vs_fp32"], 2) for v, t in r["timing"].items()}
               for name, r in payload["results"].items()}  # fmt: skip
    payload["speedup_summary"] = summary
    print(json.dumps(summary, indent=1))
    write_result(args.out, payload)
    return 0 if all(math.isfinite(x) for r in summary.values() for x in r.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
