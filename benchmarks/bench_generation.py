"""Tokens per second of the Hugging Face generation options on CPU, greedy, outputs checked equal.

Options (all on the offline SmolLM2-135M-Instruct policy, real ml-100k prompts, one batch):

* ``plain``        ``model.generate`` as loaded (dynamic KV cache, the model's default attention);
* ``eager`` / ``sdpa``  the same with that attention implementation;
* ``static``       ``cache_implementation="static"`` (pre-allocated KV cache);
* ``static_compile``  static cache + ``torch.compile`` of the forward (HF's CompileConfig, forced on CPU);
* ``paged``        continuous batching with a paged KV cache (``model.generate_batch``, what TRL's
                   ``use_transformers_paged`` uses), if it runs on CPU;
* ``plain_all_cores``  ``plain`` with one torch thread per core instead of ``--torch_threads``: not a
                   generation option but the machine's, measured because on a shared 2-core machine
                   torch's default of 2 threads is many times slower than 1 (busy cores stall its
                   thread barrier).

Each option is timed ``--reps`` times after one warm-up call (compile time reported apart); the
ratio is tokens/s against ``plain`` in the same run. Under greedy decoding every option must give
the plain outputs; only a correct option more than ``NOISE`` (5 %) faster than ``plain`` may become
the default of ``GenerationSettings`` (``recommended_default`` in the JSON).

    .venv/bin/python benchmarks/bench_generation.py            # writes benchmarks/results/bench_generation.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, add_threads_flag, apply_threads, write_result

#: Speed-ups below this fraction are treated as noise when choosing the default.
NOISE = 0.05
OPTIONS = ("plain", "eager", "sdpa", "static", "static_compile", "paged", "plain_all_cores")


def build_prompts(tokenizer: Any, n: int, data_dir: str) -> list[str]:
    from rl4rec.data import PromptBuilder, PromptConfig, leave_one_out, load_dataset
    from rl4rec.policy import render_prompts

    dataset = load_dataset("ml-100k", data_dir)
    examples = leave_one_out(dataset.sequences, "test").examples[:n]
    builder = PromptBuilder(dataset, tokenizer, PromptConfig(max_items=10))
    return render_prompts(tokenizer, [builder.build(ex.history) for ex in examples])


def hf_generate(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, **extra: Any):
    """One left-padded batch through ``generate``; returns (texts, generated token count)."""
    import torch

    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None,
                             top_k=None, pad_token_id=tokenizer.pad_token_id, **extra)  # fmt: skip
    new = out[:, enc["input_ids"].shape[1] :]
    tokens = int((new != tokenizer.pad_token_id).sum())
    return [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)], tokens


def paged_generate(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int):
    from transformers import GenerationConfig

    ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    results = model.generate_batch(inputs=ids, generation_config=config, progress_bar=False)
    ordered = sorted(results.values(), key=lambda r: int(str(r.request_id).rsplit("_", 1)[-1]))
    texts = [tokenizer.decode(r.generated_tokens, skip_special_tokens=True).strip() for r in ordered]
    return texts, sum(len([t for t in r.generated_tokens if t != tokenizer.pad_token_id]) for r in ordered)


def runner(option: str, model: Any, tokenizer: Any, max_new_tokens: int):
    if option in ("plain", "eager", "sdpa", "plain_all_cores"):
        return lambda p: hf_generate(model, tokenizer, p, max_new_tokens)
    if option == "static":
        return lambda p: hf_generate(model, tokenizer, p, max_new_tokens, cache_implementation="static")
    if option == "static_compile":
        from transformers import CompileConfig

        compile_config = CompileConfig(fullgraph=False, dynamic=False, mode="default")
        compile_config._compile_all_devices = True  # HF compiles only on GPUs unless told
        return lambda p: hf_generate(model, tokenizer, p, max_new_tokens, cache_implementation="static",
                                     compile_config=compile_config)  # fmt: skip
    if option == "paged":
        return lambda p: paged_generate(model, tokenizer, p, max_new_tokens)
    raise ValueError(option)


def measure(option: str, prompts: list[str], args: Any, reference: list[str] | None) -> dict[str, Any]:
    import torch

    from rl4rec.policy import load_policy

    model, tokenizer = load_policy(args.model, "cpu")
    model.eval()
    if option in ("eager", "sdpa"):
        model.set_attn_implementation(option)
    entry: dict[str, Any] = {"attn_implementation": model.config._attn_implementation}
    run = runner(option, model, tokenizer, args.max_new_tokens)
    threads = torch.get_num_threads()
    if option == "plain_all_cores":
        torch.set_num_threads(os.cpu_count() or 1)
    entry["torch_threads"] = torch.get_num_threads()
    try:
        t0 = time.perf_counter()
        slow = option == "plain_all_cores"  # one short warm-up and one timed call: it is slow on a busy box
        texts, _ = run(prompts[:2] if slow else prompts)  # warm-up (and compilation)
        entry["warmup_s"] = time.perf_counter() - t0
        times, tokens = [], 0
        for _ in range(1 if slow else args.reps):
            t0 = time.perf_counter()
            texts, tokens = run(prompts)
            times.append(time.perf_counter() - t0)
    except Exception as exc:  # an option that does not run here is reported, not fatal
        return {**entry, "error": f"{type(exc).__name__}: {str(exc)[:400]}"}
    finally:
        torch.set_num_threads(threads)
    entry.update(
        seconds=times,
        median_s=statistics.median(times),
        generated_tokens=tokens,
        tokens_per_s=tokens / statistics.median(times),
        outputs_equal_to_plain=None if reference is None else texts == reference,
        mismatched_prompts=None
        if reference is None
        else sum(a != b for a, b in zip(texts, reference, strict=True)),
        texts=texts,
    )
    return entry


def check_default(prompts: list[str], args: Any, reference: list[str]) -> dict[str, Any]:
    """The shipped default (``GenerationSettings()``) through ``HFGenerator`` must reproduce ``plain``."""
    from rl4rec.policy import GenerationSettings, load_policy, make_generator

    model, tokenizer = load_policy(args.model, "cpu")
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, batch_size=len(prompts), backend="hf")
    generator = make_generator(model, tokenizer, settings)
    generator.generate(prompts)
    t0 = time.perf_counter()
    texts = generator.generate(prompts)
    return {"cache_implementation": settings.cache_implementation, "seconds": time.perf_counter() - t0,
            "outputs_equal_to_plain": texts == reference}  # fmt: skip


def choose_default(results: dict[str, Any]) -> tuple[str, str, float]:
    """(fastest correct option, recommended default, noise margin used).

    The noise margin is measured in the run itself: the ``eager``/``sdpa`` option that repeats the
    plain configuration (same attention implementation) differs from plain only by noise; a default
    changes only for a correct option faster than plain by more than that margin (at least NOISE).
    """
    correct = {
        o: r for o, r in results.items() if "tokens_per_s" in r and r["outputs_equal_to_plain"] is not False
    }
    fastest = max(correct, key=lambda o: correct[o]["tokens_per_s"])
    plain_attn = results["plain"].get("attn_implementation")
    twins = [r["speedup_vs_plain"] for o, r in correct.items()
             if o in ("eager", "sdpa") and r["attn_implementation"] == plain_attn]  # fmt: skip
    noise = max([NOISE, *(abs(t - 1) for t in twins)])
    wins = {o: r for o, r in correct.items() if o != "plain_all_cores" and r["speedup_vs_plain"] > 1 + noise}
    recommended = max(wins, key=lambda o: wins[o]["tokens_per_s"]) if wins else "plain"
    return fastest, recommended, noise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data_dir", default=str(REPO / "data"))
    parser.add_argument("--batch", type=int, default=8, help="prompts generated together")
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--options", nargs="+", default=list(OPTIONS), choices=OPTIONS)
    add_threads_flag(
        parser,
        default=1,
        help="torch threads for every option (1: robust on a shared machine; 0: torch's default)",
    )
    parser.add_argument("--out", default="bench_generation")
    args = parser.parse_args(argv)
    if args.options[0] != "plain":
        args.options = ["plain", *[o for o in args.options if o != "plain"]]

    import torch

    from rl4rec.policy import load_tokenizer

    apply_threads(args.torch_threads)

    prompts = build_prompts(load_tokenizer(args.model), args.batch, args.data_dir)
    results: dict[str, Any] = {}
    reference = None
    for option in args.options:
        results[option] = measure(option, prompts, args, reference)
        if option == "plain":
            reference = results["plain"].get("texts")
        base = results["plain"].get("tokens_per_s")
        if base and "tokens_per_s" in results[option]:
            results[option]["speedup_vs_plain"] = results[option]["tokens_per_s"] / base
        r = results[option]
        print(f"{option}: " + (r["error"] if "error" in r else
              f"{r['tokens_per_s']:.1f} tok/s, x{r.get('speedup_vs_plain', 1):.2f}, equal={r['outputs_equal_to_plain']}"))  # fmt: skip
    fastest, recommended, noise = choose_default(results)
    payload = {"model": args.model, "torch_threads": torch.get_num_threads(), "batch": args.batch, "max_new_tokens": args.max_new_tokens, "reps": args.reps,
               "decoding": "greedy", "prompts": "ml-100k test users, 10 history items, chat template",
               "options": results, "fastest_correct": fastest, "noise_margin": noise, "recommended_default": recommended,
               "shipped_default": check_default(prompts, args, reference)}  # fmt: skip
    print(f"fastest correct: {fastest}; recommended default: {recommended} (noise margin {noise:.0%})")
    write_result(args.out, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
