"""Sampling speed: policyopt's sampler vs ``model.generate`` of transformers, side by side.

Same model (the built-in model; its untrained twin if the weights are not shipped yet: the speed does
not depend on the weight values), same prompts (real task prompts), same batch (prompts x
completions per prompt), the same number of new tokens on both sides (EOS disabled on ours,
``min_new_tokens == max_new_tokens`` on generate), plain sampling at temperature 1 (top-k/top-p off on
both), same thread count (1 unless ``--threads``), all in one process after a small warm-up. The
contenders run interleaved ``--repeats`` times; the JSON keeps every timing and the ratio of the
medians (headline) and of the best runs. The CPU is shared with other jobs, so single runs are noisy.

    python benchmarks/lm_sampling.py                  # writes benchmarks/results/lm_sampling.json

Rows: ``ours`` (auto backend: the fused Llama decode step), ``ours_hf_backend`` (the model's own
forward with our preallocated cache), ``generate`` (defaults: dynamic cache) and
``generate_static_cache`` (``cache_implementation="static"``) for reference. With the trained weights
(or ``--eos``) an extra realistic batch with EOS on is timed: finished rows stop costing work on our side.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from policyopt.lm.sampling import SamplingConfig, sample


def load_model():
    from policyopt.lm import builtin

    try:
        model, tok = builtin.load_builtin()
        source = "builtin (trained weights)"
    except FileNotFoundError:
        model, tok = builtin.build_untrained(seed=0)
        source = "builtin architecture, untrained weights (shipped weights not found)"
    return model.eval(), tok, source


def prompts_for(tok, n: int) -> list[list[int]]:
    from policyopt.lm.tasks import generate_mixture

    examples = generate_mixture({"addition": n, "multiplication": n, "countdown": n}, split="eval", seed=0)
    return [tok(e.prompt).input_ids for e in examples[::3][:n]]


def time_ours(model, prompts, group: int, new_tokens: int, backend: str) -> tuple[float, int]:
    cfg = SamplingConfig(max_new_tokens=new_tokens, samples_per_prompt=group, stop_at_eos=False, backend=backend)
    start = time.perf_counter()
    out = sample(model, prompts, cfg, generator=torch.Generator().manual_seed(0), pad_token_id=0)
    return time.perf_counter() - start, out.num_tokens


def time_generate(model, tok, prompts, group: int, new_tokens: int, cache: str | None) -> tuple[float, int]:
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = (torch.arange(width)[None] >= torch.tensor([width - len(p) for p in prompts])[:, None]).long()
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                             max_new_tokens=new_tokens, min_new_tokens=new_tokens, num_return_sequences=group,
                             pad_token_id=tok.pad_token_id, cache_implementation=cache)
    elapsed = time.perf_counter() - start
    generated = out[:, width:]
    assert generated.shape == (len(prompts) * group, new_tokens), generated.shape
    return elapsed, generated.numel()


def run_config(model, tok, n_prompts: int, group: int, new_tokens: int, repeats: int) -> dict:
    prompts = prompts_for(tok, n_prompts)
    contenders = {
        "ours": lambda: time_ours(model, prompts, group, new_tokens, "auto"),
        "generate": lambda: time_generate(model, tok, prompts, group, new_tokens, None),
        "ours_hf_backend": lambda: time_ours(model, prompts, group, new_tokens, "hf"),
        "generate_static_cache": lambda: time_generate(model, tok, prompts, group, new_tokens, "static"),
    }
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    tokens = {}
    for _ in range(repeats):  # interleaved, so a burst of load from other jobs hits every contender
        for name, fn in contenders.items():
            elapsed, tokens[name] = fn()
            seconds[name].append(elapsed)
    rows = {}
    for name, times in seconds.items():
        med, best = statistics.median(times), min(times)
        rows[name] = {"tokens": tokens[name], "seconds": [round(t, 4) for t in times],
                      "tokens_per_s_median": round(tokens[name] / med, 1),
                      "tokens_per_s_best": round(tokens[name] / best, 1)}
    ratio = {f"ours_vs_{other}_{kind}": round(rows["ours"][f"tokens_per_s_{kind}"] /
                                              rows[other][f"tokens_per_s_{kind}"], 2)
             for other in ("generate", "generate_static_cache") for kind in ("median", "best")}
    batch = {"prompts": n_prompts, "completions_per_prompt": group, "rows": n_prompts * group,
             "prompt_tokens_max": max(len(p) for p in prompts), "new_tokens": new_tokens}
    return {"batch": batch, "results": rows, "ratios": ratio}


def run_eos(model, tok, n_prompts: int, group: int, new_tokens: int, repeats: int) -> dict:
    """Realistic RL batch: EOS on, both sides stop rows at EOS; wall time to finish the batch.

    generate keeps computing finished rows (as padding) until the last row ends; ours drops them.
    The two sides draw different samples, so lengths differ: compare seconds per batch.
    """
    prompts = prompts_for(tok, n_prompts)
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = (ids != tok.pad_token_id).long()
    cfg = SamplingConfig(max_new_tokens=new_tokens, samples_per_prompt=group)
    times: dict[str, list[float]] = {"ours": [], "generate": []}
    tokens: dict[str, int] = {}
    for rep in range(repeats):
        start = time.perf_counter()
        out = sample(model, prompts, cfg, generator=torch.Generator().manual_seed(rep), pad_token_id=tok.pad_token_id,
                     eos_token_ids=[tok.eos_token_id])
        times["ours"].append(time.perf_counter() - start)
        tokens["ours"] = out.num_tokens
        torch.manual_seed(rep)
        start = time.perf_counter()
        with torch.inference_mode():
            gen = model.generate(ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                 max_new_tokens=new_tokens, num_return_sequences=group,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        times["generate"].append(time.perf_counter() - start)
        done = (gen[:, width:] == tok.eos_token_id).long().cumsum(1)
        tokens["generate"] = int(((done == 0) | ((done == 1) & (gen[:, width:] == tok.eos_token_id))).sum())
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"batch": {"prompts": n_prompts, "completions_per_prompt": group, "max_new_tokens": new_tokens},
            "seconds": {k: [round(t, 4) for t in v] for k, v in times.items()},
            "completion_tokens_last_run": tokens,
            "batch_time_ratio_generate_over_ours_median": round(med["generate"] / med["ours"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="8x8,1x8",
                        help="comma-separated PROMPTSxCOMPLETIONS batches; the first is the headline")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eos", action="store_true",
                        help="also time an EOS-terminated batch (automatic when trained weights are present)")
    parser.add_argument("--out", default="benchmarks/results/lm_sampling.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tok, source = load_model()
    warm = prompts_for(tok, 2)  # first-call allocations and lazy imports, for every contender
    for backend in ("auto", "hf"):
        time_ours(model, warm, 2, 4, backend)
    for cache in (None, "static"):
        time_generate(model, tok, warm, 2, 4, cache)
    configs = []
    for spec in args.configs.split(","):
        n_prompts, group = (int(v) for v in spec.lower().split("x"))
        result = run_config(model, tok, n_prompts, group, args.new_tokens, args.repeats)
        configs.append(result)
        print(f"batch {n_prompts} prompts x {group} completions, {args.new_tokens} new tokens each:")
        for name, row in result["results"].items():
            print(f"  {name:24s} median {row['tokens_per_s_median']:9.1f} tok/s   best {row['tokens_per_s_best']:9.1f}")
        r = result["ratios"]
        print(f"  ours / generate: median {r['ours_vs_generate_median']:.2f}x, best {r['ours_vs_generate_best']:.2f}x"
              f"  (target >= 3x); vs static-cache generate: {r['ours_vs_generate_static_cache_median']:.2f}x")
    eos_mode = None
    if args.eos or source.startswith("builtin (trained"):
        first = args.configs.split(",")[0].lower().split("x")
        eos_mode = run_eos(model, tok, int(first[0]), int(first[1]), args.new_tokens, args.repeats)
        print(f"EOS on, batch time generate / ours (median): {eos_mode['batch_time_ratio_generate_over_ours_median']}x"
              f"  tokens {eos_mode['completion_tokens_last_run']}")
    out = {
        "benchmark": "lm_sampling",
        "command": "python benchmarks/lm_sampling.py " + f"--configs {args.configs} --new-tokens {args.new_tokens} "
                   f"--repeats {args.repeats} --threads {args.threads}",
        "model": source,
        "parameters": sum(p.numel() for p in model.parameters()),
        "sampling": "temperature 1.0, top_k off, top_p 1.0, EOS disabled (forced length)",
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s), CPU shared with other jobs",
        "configs": configs,
        "headline_ratio_ours_vs_generate": configs[0]["ratios"]["ours_vs_generate_median"],
        "eos_mode": eos_mode if eos_mode is not None else "skipped: needs the trained built-in weights (or --eos)",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
