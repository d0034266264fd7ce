"""Rows decoded together: the torch engine's automatic batch (`batch_size=None`: as many rows as
the KV cache of the call's longest sequence fits in 1 GiB, 64 to 512) against the fixed 64 rows
it used before, on the demo's own generation workloads, one process.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/batch_rows.py --model runs/demo/sft/model

Workloads (countdown prompts of the demo's task; --model is a policy trained on it, e.g. the
demo's SFT model, so that answers end at EOS as they do in the demo):
- rollout: 16 prompts x 8 samples at temperature 1 (one RL step of `ponder demo`);
- eval: 300 prompts x 8 samples at temperature 0.7 (the demo's maj@8 evaluation);
- greedy: 64 prompts, greedy (the dev-set check during training).
Each workload runs through both engines, interleaved in rotating order for `--repeats`
rounds after a warm-up call; the median counts. The ratio is fixed-64 time / automatic time
(> 1: the automatic batch is faster). The samples of both are compared too: with seeds set,
a row's sample does not depend on the batch (rounding aside, which the count shows).
"""
from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a causal LM trained on the demo's countdown task")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=80)
    args = parser.parse_args()

    from ponder.generation import make_engine
    from ponder.generation.base import SamplingParams
    from ponder.pipeline.config import DEMO_TASK_ARGS
    from ponder.tasks import get_task

    task = get_task("countdown", **DEMO_TASK_ARGS["countdown"])
    prompts = [task.prompt(p) for p in task.problems("test", n=300, seed=12345)]
    workloads = {
        "rollout 16x8": (prompts[:16], SamplingParams(n=8, temperature=1.0, max_tokens=args.max_tokens, seed=1)),
        "eval 300x8": (prompts, SamplingParams(n=8, temperature=0.7, max_tokens=args.max_tokens, seed=2)),
        "greedy 64": (prompts[:64], SamplingParams(n=1, temperature=0.0, max_tokens=args.max_tokens)),
    }
    engines = {"fixed 64": make_engine("torch", args.model, batch_size=64), "auto": make_engine("torch", args.model)}
    print(f"{'workload':<14} {'rows':>5} {'fixed 64 s':>10} {'auto s':>8} {'ratio':>6} {'same samples':>13}")
    for name, (ps, params) in workloads.items():
        times = {k: [] for k in engines}
        outs = {k: e.generate(ps, params) for k, e in engines.items()}  # warm-up, and the samples compared
        order = list(engines)
        for r in range(args.repeats):
            for k in order[r % 2:] + order[:r % 2]:
                t = time.perf_counter()
                engines[k].generate(ps, params)
                times[k].append(time.perf_counter() - t)
        same = sum(a == b for a, b in zip(*([[s.token_ids for s in o] for o in out] for out in outs.values())))
        fixed, auto = (statistics.median(times[k]) for k in engines)
        rows = engines["auto"].rows_for(max(len(p) for p in engines["auto"].encode(ps)) + params.max_tokens)
        print(f"{name:<14} {rows:>5} {fixed:>10.3f} {auto:>8.3f} {fixed / auto:>5.2f}x {same:>6}/{len(ps)}")


if __name__ == "__main__":
    main()
