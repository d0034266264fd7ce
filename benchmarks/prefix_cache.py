"""Step-level search with and without the torch engine's cross-call prefix cache, one process.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/prefix_cache.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/prefix_cache.py --problems 10 --strategies beam

A step-level search calls the engine once per depth, and each call's prompts are the
question plus the steps chosen so far: without a cache the engine prefills all of that
again at every depth. With it (prefix_cache.py) a prompt that extends a sequence an earlier
call sampled reuses that sequence's keys and values and computes only its new tokens.

Per strategy (PRM-free: the task's exact step verifier scores, so only the engine differs),
the same problems run on two engines over the same policy, `prefix_cache_mb=0` and the
default, interleaved: prefill tokens (what the prompts hold), computed (what went through
the model), generated, computed prefill per generated token, wall seconds, and whether the
records (answers, correctness, tokens) are identical. Policy: the demo's SFT model
(runs/demo-arith/sft/model) when it exists, else a fresh random tiny:1m (accuracy meaningless,
compute the same kind).
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="runs/demo-arith/sft/model")
    ap.add_argument("--problems", type=int, default=40)
    ap.add_argument("--strategies", default="beam,dvts,lookahead")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--beam-width", type=int, default=4)
    args = ap.parse_args()

    import torch

    from ponder.generation import make_engine
    from ponder.models import load_model, model_from_spec
    from ponder.rewards.base import VerifierScorer
    from ponder.search import SearchContext
    from ponder.search.base import SearchParams
    from ponder.search.driver import search_all
    from ponder.tasks import get_task

    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, torch threads {torch.get_num_threads()}")
    if Path(args.policy, "config.json").exists():
        model, tokenizer = load_model(args.policy)
    else:
        print(f"{args.policy} not found: a random tiny:1m policy")
        model, tokenizer = model_from_spec("tiny:1m")
    task = get_task("arith", instruction=False)
    problems = task.problems("test", n=args.problems, seed=0)
    engines = {"no cache": make_engine("torch", model, tokenizer=tokenizer, prefix_cache_mb=0),
               "prefix cache": make_engine("torch", model, tokenizer=tokenizer)}
    params = SearchParams(n=args.n, beam_width=args.beam_width, temperature=0.7, max_tokens=80, max_step_tokens=24,
                          seed=0)
    rows = []
    for strategy in args.strategies.split(","):
        records = {}
        for label, engine in engines.items():
            ctx = SearchContext(engine, task, VerifierScorer(task, problems))
            before = engine.usage.copy()
            t0 = time.perf_counter()
            out = search_all(strategy, ctx, problems, params)
            wall = time.perf_counter() - t0
            used = engine.usage - before
            records[label] = [_timeless(r) for r in out["records"]]
            computed = used.prefill_tokens - used.cached_tokens
            rows.append((strategy, label, out["summary"]["accuracy"], used.prefill_tokens, computed,
                         used.generated_tokens, wall))
            print(f"  {strategy:<10} {label:<13} computed {computed:>7} of {used.prefill_tokens:>7} prefill tokens, "
                  f"{used.generated_tokens:>6} generated, {wall:6.1f} s", flush=True)
        same = sum(a == b for a, b in zip(*records.values()))
        print(f"  {strategy}: records identical with and without the cache: {same}/{len(problems)}")
    print(f"\n{'strategy':<10} {'engine':<13} {'accuracy':>8} {'prefill':>8} {'computed':>8} {'generated':>9} "
          f"{'computed/generated':>18} {'seconds':>8}")
    for k, (strategy, label, acc, prefill, computed, generated, wall) in enumerate(rows):
        print(f"{strategy:<10} {label:<13} {acc:>8.3f} {prefill:>8} {computed:>8} {generated:>9} "
              f"{computed / max(generated, 1):>18.2f} {wall:>8.1f}")
    for k in range(0, len(rows), 2):
        print(f"{rows[k][0]}: computed prefill {rows[k][4] / max(rows[k + 1][4], 1):.1f}x fewer with the cache, "
              f"wall {rows[k][6] / rows[k + 1][6]:.2f}x faster")


def _timeless(record: dict) -> dict:
    """A record without its wall times (the only fields two identical searches may differ in)."""
    return {k: _timeless(v) if isinstance(v, dict) else v for k, v in record.items() if k != "wall_s"}


if __name__ == "__main__":
    main()
