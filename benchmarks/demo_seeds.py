"""`make demo` over several seeds: every claim of the report as mean ± standard error over seeds.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/demo_seeds.py --seeds 0,1,2
    .venv/bin/python benchmarks/demo_seeds.py --summary
    .venv/bin/python benchmarks/demo_seeds.py --runs-dir runs/demo-seeds-arith -- --task arith  # other options

One seed of the demo is an anecdote: floating-point differences between CPUs change its
trajectories, and its held-out draws are small (300 problems for greedy accuracy, 40 for the
search comparison). This runs the same command a user runs (`ponder demo`, the default
config) with `--seed S` into `runs/demo-seeds/demo-sS` (resumable: a finished seed is read
back, not rerun), then reads each seed's `summary.json` under its stable keys and prints, per
figure, the seeds' values and their mean ± standard error over seeds. Seeds change the model
initialisation, the data order, the sampling and the held-out draws. Each seed's figures are
appended to benchmarks/results/demo_seeds.jsonl with the demo's config; `--summary` prints
one table per config (rows from before the config was recorded form their own group).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "demo_seeds.jsonl"

# figure name -> how to read it from a demo summary.json (its stable keys)
FIGURES = {
    "SFT greedy": lambda s: s["eval"]["sft"]["greedy_accuracy"],
    "RL greedy": lambda s: s["eval"]["rl"]["greedy_accuracy"],
    "RL - SFT greedy": lambda s: s["comparisons"]["rl_minus_sft_greedy"],
    "SFT right, every line valid": lambda s: s["eval"]["sft"]["greedy_valid_accuracy"],
    "RL right, every line valid": lambda s: s["eval"]["rl"]["greedy_valid_accuracy"],
    "RL - SFT right, lines valid": lambda s: s["comparisons"]["rl_vs_sft_valid"]["difference"],
    "PRM ProcessBench F1": lambda s: s["prm"]["processbench"]["f1"],
    "labels: first-error acc. MC": lambda s: s["annotation"]["methods"]["math_shepherd"]["first_error_acc"],
    "labels: first-error acc. OmegaPRM": lambda s: s["annotation"]["methods"]["omega_prm"]["first_error_acc"],
    "SFT: beam@16 - majority@16": lambda s: s["comparisons"]["search_vs_majority"]["sft"]["difference"],
    "RL: beam@16 - majority@16": lambda s: s["comparisons"]["search_vs_majority"]["rl"]["difference"],
    "wall (min)": lambda s: sum(v for v in s["wall_s"].values() if v) / 60,
}
# the per-seed standard error that goes with a figure, where the summary has one
WITHIN = {
    "RL - SFT greedy": lambda s: s["comparisons"]["rl_minus_sft_greedy_se"],
    "RL - SFT right, lines valid": lambda s: s["comparisons"]["rl_vs_sft_valid"]["se"],
    "PRM ProcessBench F1": lambda s: s["prm"]["processbench"].get("f1_se"),
    "SFT: beam@16 - majority@16": lambda s: s["comparisons"]["search_vs_majority"]["sft"]["se"],
    "RL: beam@16 - majority@16": lambda s: s["comparisons"]["search_vs_majority"]["rl"]["se"],
}


def run_seed(seed: int, runs_dir: Path, threads: int, demo_args: list[str]) -> dict:
    run_dir = runs_dir / f"demo-s{seed}"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    cmd = [str(Path(sys.executable).parent / "ponder"), "demo", "--seed", str(seed), "--run", run_dir.name,
           "--runs-dir", str(runs_dir), *demo_args]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, env=env, check=True)
    return json.loads((run_dir / "summary.json").read_text())


def read(summary: dict, how) -> float | None:
    try:
        value = how(summary)
    except (KeyError, TypeError):
        return None
    return None if value is None else float(value)


def table(rows: list[dict]) -> None:
    seeds = [r["seed"] for r in rows]
    print(f"{'figure':36} " + " ".join(f"{'seed ' + str(s):>15}" for s in seeds) + f" {'mean ± SE over seeds':>22}")
    for name in FIGURES:
        values = [r["figures"].get(name) for r in rows]
        cells = []
        for r, v in zip(rows, values):
            se = r["within_se"].get(name)
            cells.append("-" if v is None else f"{v:.3f}" + (f" ± {se:.3f}" if se is not None else ""))
        done = [v for v in values if v is not None]
        agg = (f"{statistics.mean(done):.3f} ± {statistics.stdev(done) / math.sqrt(len(done)):.3f}"
               if len(done) > 1 else "-")
        print(f"{name:36} " + " ".join(f"{c:>15}" for c in cells) + f" {agg:>22}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--runs-dir", default="runs/demo-seeds")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of each demo run")
    ap.add_argument("--summary", action="store_true", help="print the recorded seeds (latest row per seed) and exit")
    ap.add_argument("demo_args", nargs=argparse.REMAINDER,
                    help="after --: options passed to every `ponder demo` (e.g. -- --task arith); use their own "
                         "--runs-dir here")
    args = ap.parse_args()
    demo_args = args.demo_args[1:] if args.demo_args[:1] == ["--"] else args.demo_args
    if args.summary:
        groups: dict[str, dict] = {}  # demo config (without the seed) -> seed -> latest row
        for line in RESULTS.read_text().splitlines():
            row = json.loads(line)
            groups.setdefault(json.dumps(row.get("config"), sort_keys=True), {})[row["seed"]] = row
        for key, latest in groups.items():
            print(f"\nconfig: {key}")
            table([latest[s] for s in sorted(latest)])
        return
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.perf_counter()
        summary = run_seed(seed, Path(args.runs_dir), args.threads, demo_args)
        config = {k: v for k, v in summary["config"].items() if k != "seed"}
        row = {"seed": seed, "config": config, "figures": {k: read(summary, how) for k, how in FIGURES.items()},
               "within_se": {k: read(summary, how) for k, how in WITHIN.items()},
               "wall_s_this_call": round(time.perf_counter() - t0, 1), "date": time.strftime("%Y-%m-%d %H:%M")}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
    table(rows)


if __name__ == "__main__":
    main()
