"""The demo's scaling sweep searched one problem at a time and batched across problems, side by side, one process.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/search_batching.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/search_batching.py --problems 10 --budgets 1,4

Settings are the demo's scale stage (`ponder demo --task arith`: arith without instruction,
strategies greedy, majority, best_of_n, beam; budgets 1, 4, 16; temperature 0.7; 80 tokens;
beam width 4; weighted selection; the trained PRM as scorer) on its trained policies
(runs/demo-arith/sft and runs/demo-arith/rl, PRM runs/demo-arith/prm; run
`ponder demo --task arith --run demo-arith` first). The problems are the first
`--problems` of the arith test split (the demo takes its own held-out problems).

Each policy's sweep runs three times with the same PRM, each on a fresh engine: `batch=False`
without the engine's prefix cache (every problem's search makes its own engine and scorer
calls; how the sweep ran before), `batch=True` (ponder.search.batch: one call per round for
all problems of a cell) without it, and `batch=True` with it (prefix_cache.py: a prompt
extending an earlier call's sample prefills only its new tokens). The records of the later
runs are compared with the first field by field (wall time aside) and every difference is
printed.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

STRATEGIES = ("greedy", "majority", "best_of_n", "beam")
# (label, search batched across problems, engine prefix cache MiB): before both changes,
# batched only, batched with the cross-call prefix cache
MODES = (("one by one", False, 0), ("batched", True, 0), ("batched + prefix cache", True, 256))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo-arith",
                    help="arith demo run folder with sft/model, rl/model and prm/model")
    ap.add_argument("--problems", type=int, default=40)
    ap.add_argument("--budgets", default="1,4,16")
    args = ap.parse_args()

    import torch

    from ponder.generation import make_engine
    from ponder.rewards.model import load_prm
    from ponder.search import SearchContext
    from ponder.search.scale import ScaleConfig, run_scale
    from ponder.tasks import get_task

    run = Path(args.run)
    policies = {name: run / name / "model" for name in ("sft", "rl") if (run / name / "model").exists()}
    if not policies or not (run / "prm" / "model").exists():
        raise SystemExit(f"{run} has no trained policy and PRM: run `ponder demo --task arith --run demo-arith` first")
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, torch threads {torch.get_num_threads()}")
    task = get_task("arith", instruction=False)
    problems = task.problems("test", n=args.problems, seed=0)
    prm = load_prm(run / "prm" / "model")
    budgets = tuple(int(b) for b in args.budgets.split(","))
    base = dict(strategies=STRATEGIES, budgets=budgets, weighted=True, temperature=0.7, max_tokens=80,
                max_step_tokens=80, beam_width=4, seed=0)
    rows = []
    for name, path in policies.items():
        out = {}
        for mode, batch, cache_mb in MODES:
            with make_engine("torch", str(path), prefix_cache_mb=cache_mb) as engine:
                ctx = SearchContext(engine, task, prm)
                prm_calls = prm.usage.calls
                t0 = time.perf_counter()
                out[mode] = run_scale(ctx, problems, ScaleConfig(batch=batch, **base))["records"]
                used = engine.usage
                rows.append((name, mode, time.perf_counter() - t0, used.calls, prm.usage.calls - prm_calls,
                             used.prefill_tokens - used.cached_tokens, used.generated_tokens))
        for mode, _, _ in MODES[1:]:
            diffs = differences(out[MODES[0][0]], out[mode])
            print(f"{name}: {len(out[mode])} records, {len(diffs)} differ between {MODES[0][0]} and {mode}")
            for d in diffs[:20]:
                print("   ", d)
    print(f"\n{len(problems)} problems x {STRATEGIES} x budgets {budgets}\n")
    print("| policy | search | wall s | engine calls | PRM calls | prefill computed | generated |")
    print("|---|---|---|---|---|---|---|")
    for name, mode, wall, calls, prm_calls, computed, generated in rows:
        print(f"| {name} | {mode} | {wall:.1f} | {calls} | {prm_calls} | {computed} | {generated} |")
    total = {mode: sum(r[2] for r in rows if r[1] == mode) for mode, _, _ in MODES}
    first = MODES[0][0]
    print("\ntotal: " + ", ".join(f"{mode} {t:.1f} s ({total[first] / t:.1f}x)" for mode, t in total.items()))


def differences(a: list[dict], b: list[dict]) -> list[str]:
    """Every field (wall time aside) on which two runs' records differ, one line each."""
    out = []
    for ra, rb in zip(a, b, strict=True):
        for key in ra:
            if key != "wall_s" and ra[key] != rb[key]:
                out.append(f"{ra['strategy']}@{ra['budget']} {ra['problem']} {key}: {ra[key]!r} vs {rb[key]!r}")
    return out


if __name__ == "__main__":
    main()
