"""Scale-out on this machine: Ray workers for annotation and evaluation, torchrun for SFT.

    .venv/bin/python benchmarks/parallel.py                    # trains a small policy first if none
    .venv/bin/python benchmarks/parallel.py --policy runs/demo-arith/sft/model --workers 2

Side by side in one run, on the same problems and seeds:

1. OmegaPRM + Math-Shepherd annotation of `--annotate-n` training problems (`ponder annotate`)
   with 1 worker (this process, torch's default threads) and with `--workers` Ray workers
   (one thread each): wall time, ratio, and whether the records are identical.
2. `ponder eval` of `--eval-n` held-out problems (greedy + k samples), the same way.
3. SFT: optimiser steps per second with one process and with `torchrun --nproc_per_node
   --workers` on the same global batch (each process takes its share of the micro-batches).

Wall times are whole commands, Ray's start-up (about 15-20 s here) and model loading
included: what a user waits for. Every figure is printed with the command's own output dir.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ponder(*args: str, env: dict | None = None, launcher: list[str] | None = None) -> float:
    """Run a ponder command in a fresh process; its wall time in seconds."""
    cmd = (launcher or [sys.executable, "-m", "ponder"]) + list(args)
    t0 = time.time()
    done = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    wall = time.time() - t0
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default=None, help="policy model dir (default: train a small SFT policy)")
    parser.add_argument("--out", default="runs/bench-parallel", help="folder for every run's output")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers / torchrun processes")
    parser.add_argument("--annotate-n", type=int, default=64, help="problems to annotate")
    parser.add_argument("--eval-n", type=int, default=256, help="problems to evaluate")
    parser.add_argument("--sft-steps", type=int, default=60, help="SFT steps timed")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    task = ["--task-arg", "instruction=false"]

    policy = args.policy
    if policy is None:
        policy = str(out / "policy" / "model")
        if not Path(policy, "config.json").exists():
            print("training a small SFT policy (tiny:1m, 400 steps) ...", flush=True)
            ponder("sft", "--model", "tiny:1m", "--steps", "400", "--n-train", "8000", "--batch-size", "32",
                   "--runs-dir", str(out), "--run", "policy", *task)

    rows = []
    # 1. annotation
    walls = {}
    for w in (1, args.workers):
        run = f"annotate-w{w}"
        if (out / run).exists():
            subprocess.run(["rm", "-rf", str(out / run)], check=True)
        walls[w] = ponder("annotate", "--policy", policy, "--runs-dir", str(out), "--run", run, "--n-problems",
                          str(args.annotate_n), "--samples", "4", "--k", "8", "--method", "math_shepherd",
                          "--method", "omega_prm", "--method", "truth", "--chunk", "4", "--max-tokens", "80",
                          "--workers", str(w), *task)
    same = all((out / "annotate-w1" / f).read_text() == (out / f"annotate-w{args.workers}" / f).read_text()
               for f in ("records.jsonl", "stepwise_omega_prm.jsonl", "stepwise_math_shepherd.jsonl"))
    rows.append(("annotate (Math-Shepherd + OmegaPRM)", f"{args.annotate_n} problems x 4 samples, k=8",
                 walls[1], walls[args.workers], same))

    # 2. evaluation
    walls, results = {}, {}
    for w in (1, args.workers):
        path = out / f"eval-w{w}.json"
        walls[w] = ponder("eval", "--model", policy, "--n", str(args.eval_n), "--k", "8", "--max-tokens", "80",
                          "--temperature", "0.7", "--output", str(path), "--workers", str(w), *task)
        results[w] = json.loads(path.read_text())
    same = results[1]["records"] == results[args.workers]["records"]
    rows.append(("eval (greedy + 8 samples)", f"{args.eval_n} problems", walls[1], walls[args.workers], same))

    # 3. SFT: one process vs torchrun, same global batch (grad_accum micro-batches per step)
    walls = {}
    sft = ["sft", "--model", "tiny:1m", "--steps", str(args.sft_steps), "--n-train", "4000", "--batch-size", "16",
           "--grad-accum", str(args.workers), "--runs-dir", str(out), *task]
    for w in (1, args.workers):
        run = f"sft-p{w}"
        subprocess.run(["rm", "-rf", str(out / run)], check=True)
        if w == 1:
            walls[w] = ponder(*sft, "--run-name", run)
        else:
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(w),
                        "-m", "ponder"]
            walls[w] = ponder(*sft, "--run-name", run, launcher=launcher,
                              env={"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // w))})
    rows.append(("sft (wall per run)", f"{args.sft_steps} steps x {args.workers} micro-batches of 16",
                 walls[1], walls[args.workers], None))

    print()
    print(f"scale-out on {os.cpu_count()} cores, {args.workers} workers / processes")
    print(f"{'work':38} {'size':36} {'1 worker s':>11} {f'{args.workers} workers s':>12} {'speed-up':>9} same records")
    for name, size, one, many, same in rows:
        print(f"{name:38} {size:36} {one:11.1f} {many:12.1f} {one / many:8.2f}x {'' if same is None else same}")
    (out / "parallel.json").write_text(json.dumps([dict(zip(("work", "size", "one_s", "many_s", "same"), r))
                                                   for r in rows], indent=2))


if __name__ == "__main__":
    main()
