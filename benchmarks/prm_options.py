"""PRM training options on the demo's countdown runs: which one closes the ProcessBench F1 gap.

The demo's PRM (`ponder demo`, stage `prm`: the SFT policy's body, 300 steps of BCE on the
OmegaPRM labels of 96 problems, soft MC-fraction targets) reaches F1 0.259 ± 0.055 over 3 seeds
(benchmarks/verifiers.py, row 'prm'). Options, each a RewardModelConfig change from the demo's
`RewardModelConfig(steps=300, seed=seed)`, everything else as the demo:

  baseline  as the demo does today (soft targets, 300 steps)
  hard      hard targets (label > 0), 300 steps
  lm_coef   the body keeps its LM loss: BCE + 1.0 x next-token cross-entropy on the solution
            tokens through the policy's own (tied) LM head (`lm_coef=1.0`, fixed before the runs)
  long      1200 steps (soft targets)

Comparison, fixed before the runs:
- Metric: ProcessBench F1 (Zheng et al. 2024; first step scored below 0.5 against the exact
  checker's first error) of each retrained PRM on the F1 set of benchmarks/verifiers.py: the
  run's held_out[60:120], 8 samples each at temperature 1.0 from the run's SFT policy, drawn
  with verifiers.py's seed (derive(seed, "verifier-f1")) once per seed and scored by every option.
- Per seed, each option minus baseline; over the 3 seeds (paired by seed) the mean and its
  standard error (sample standard deviation / sqrt(3)).
- An option wins only if its mean gain is > 0 and exceeds 2 SE. If several win, the largest
  mean gain is adopted; if none wins, the baseline stays.
- Also reported, not compared: each option's training wall time (1 torch thread, tokenising,
  training and saving) and final loss (the last step's; for lm_coef also its BCE part).

The baseline retrained here is the demo's own training (same code, data and seed): the script
says whether its saved weights equal the demo's prm/model byte for byte, and prints its F1 next
to verifiers.jsonl's 'prm' row.

Prints a per-seed table, the mean ± SE table and the decision; appends one JSON row per seed and
option to `--out` as each finishes. One process, one torch thread. PRMs are written under
`--work` (each option's folder is emptied first, so nothing resumes).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/prm_options.py --runs runs/demo-s0,runs/demo-s1,runs/demo-s2
    .venv/bin/python benchmarks/prm_options.py --summary
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import statistics
import sys
import time
from pathlib import Path

import yaml

RESULTS = Path(__file__).parent / "results" / "prm_options.jsonl"
VERIFIERS = Path(__file__).parent / "results" / "verifiers.jsonl"
OPTIONS = {"baseline": {}, "hard": {"hard": True}, "lm_coef": {"lm_coef": 1.0}, "long": {"steps": 1200}}
"""RewardModelConfig changes from the demo's RewardModelConfig(steps=300, seed=seed)"""
F1_PROBLEMS, SAMPLES = 60, 8  # verifiers.py's defaults: the F1 set held_out[60:120] x 8


def mean_se(xs: list[float]) -> tuple[float, float]:
    return statistics.mean(xs), (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def weights_digest(model_dir: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(model_dir.glob("*.safetensors")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def f1_set(run_dir: Path):
    """(demo config, task, policy dir, the F1 samples), exactly as benchmarks/verifiers.py draws them."""
    from ponder.eval.rm import sample_solutions
    from ponder.generation.factory import make_engine
    from ponder.pipeline.config import DemoConfig
    from ponder.pipeline.stages import make_split
    from ponder.seeds import derive

    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg = DemoConfig(**{k: v for k, v in saved.items() if k in DemoConfig.__dataclass_fields__})
    split = make_split(cfg)
    policy = str(run_dir / "sft" / "model")
    start = max(cfg.scale_n, cfg.prm_eval_n)  # verifiers.py: after the demo's sweep and PRM evaluation
    problems = split.held_out[start:start + F1_PROBLEMS]
    with make_engine("torch", policy) as gen:
        data = sample_solutions(gen, split.task, problems, SAMPLES, 1.0, cfg.max_tokens,
                                derive(cfg.seed, "verifier-f1"))
    return cfg, policy, problems, data


def run_option(name: str, cfg, policy: str, run_dir: Path, data, work: Path) -> dict:
    from ponder.eval.rm import evaluate_reward_model
    from ponder.rewards.model import load_prm, new_reward_model
    from ponder.train.rm import RewardModelConfig, RewardModelTrainer, read_stepwise

    out = work / f"s{cfg.seed}" / name
    shutil.rmtree(out, ignore_errors=True)
    rows = read_stepwise(run_dir / "annotate" / "stepwise_omega_prm.jsonl")
    rc = RewardModelConfig(**{"steps": cfg.prm_steps, "seed": cfg.seed, **OPTIONS[name]})
    t0 = time.perf_counter()
    final = RewardModelTrainer(new_reward_model(policy, "prm"), rows, rc, out, progress=False).train()
    wall = time.perf_counter() - t0
    prm = load_prm(out / "model")
    pb = evaluate_reward_model(prm, data, prm.aggregation, threshold=0.5)["processbench"]
    digest = weights_digest(out / "model")
    row = {"run": str(run_dir), "seed": cfg.seed, "option": name, "changes": OPTIONS[name], "steps": rc.steps,
           "examples": len(rows), "f1": pb["f1"], "f1_se": pb["f1_se"], "acc_erroneous": pb["acc_erroneous"],
           "acc_correct": pb["acc_correct"], "train_wall_s": round(wall, 1), "final_loss": final["loss"],
           "final_bce": final.get("bce", final["loss"]), "weights_sha256": digest}
    if name == "baseline":
        row["same_weights_as_demo_prm"] = digest == weights_digest(run_dir / "prm" / "model")
    print(f"  seed {cfg.seed} {name:9s} F1 {pb['f1']:.3f} ± {pb['f1_se']:.3f} (err {pb['acc_erroneous']:.3f}, "
          f"ok {pb['acc_correct']:.3f}); train {wall:.0f} s, final loss {final['loss']:.4f}", flush=True)
    return row


def decide(rows: list[dict], names: list[str]) -> tuple[list[dict], str]:
    """Each option minus baseline, paired by seed: mean, SE, and whether it wins (see the docstring)."""
    by = {(r["seed"], r["option"]): r for r in rows}
    seeds = sorted({r["seed"] for r in rows})
    out = []
    for name in names:
        if name == "baseline" or not all((s, name) in by and (s, "baseline") in by for s in seeds):
            continue
        d = [by[(s, name)]["f1"] - by[(s, "baseline")]["f1"] for s in seeds]
        m, se = mean_se(d)
        out.append({"option": name, "per_seed": d, "mean": m, "se": se, "wins": m > 0 and m > 2 * se})
    winners = [o for o in out if o["wins"]]
    if not winners:
        return out, "no option wins: the baseline stays"
    best = max(winners, key=lambda o: o["mean"])
    return out, f"adopt {best['option']} ({OPTIONS[best['option']]}): +{best['mean']:.3f} ± {best['se']:.3f}"


def table(rows: list[dict]) -> None:
    seeds = sorted({r["seed"] for r in rows})
    names = [n for n in OPTIONS if any(r["option"] == n for r in rows)]
    by = {(r["seed"], r["option"]): r for r in rows}
    print("\nper seed: ProcessBench F1 ± its bootstrap SE, training wall time (1 thread), final loss\n")
    print("| option | " + " | ".join(f"seed {s} F1 | wall s | loss" for s in seeds) + " |")
    print("|---|" + "---:|---:|---:|" * len(seeds))
    for n in names:
        cells = []
        for s in seeds:
            r = by.get((s, n))
            cells.append("- | - | -" if r is None else f"{r['f1']:.3f} ± {r['f1_se']:.3f} | {r['train_wall_s']:.0f} | "
                         f"{r['final_loss']:.4f}")
        print(f"| {n} | " + " | ".join(cells) + " |")
    diffs, decision = decide(rows, names)
    diff = {d["option"]: d for d in diffs}
    print(f"\n{len(seeds)} seeds ({', '.join(map(str, seeds))}); mean ± standard error over seeds\n")
    print("| option | F1 | − baseline (paired by seed) | per seed | wins | train wall s | final loss (BCE part) |")
    print("|---|---:|---:|---|---|---:|---:|")
    for n in names:
        rs = [by[(s, n)] for s in seeds if (s, n) in by]
        f1, f1_se = mean_se([r["f1"] for r in rs])
        d = diff.get(n)
        gain = "" if d is None else f"{d['mean']:+.3f} ± {d['se']:.3f}"
        per = "" if d is None else ", ".join(f"{x:+.3f}" for x in d["per_seed"])
        wins = "" if d is None else ("yes" if d["wins"] else "no")
        loss = statistics.mean(r["final_loss"] for r in rs)
        bce = statistics.mean(r["final_bce"] for r in rs)
        print(f"| {n} | {f1:.3f} ± {f1_se:.3f} | {gain} | {per} | {wins} | "
              f"{statistics.mean(r['train_wall_s'] for r in rs):.0f} | {loss:.4f}"
              + (f" ({bce:.4f})" if abs(bce - loss) > 1e-12 else "") + " |")
    print(f"\ndecision: {decision}")
    base = [by[(s, "baseline")] for s in seeds if (s, "baseline") in by]
    if base and VERIFIERS.exists():
        demo = {}
        for line in VERIFIERS.read_text().splitlines():
            v = json.loads(line)
            demo[v["seed"]] = v["f1"]["prm"]["f1"]
        print("\nbaseline against the demo's PRM (verifiers.jsonl 'prm'): " + "; ".join(
            f"seed {r['seed']} {r['f1']:.3f} vs {demo.get(r['seed'], float('nan')):.3f}"
            f"{', same weights' if r.get('same_weights_as_demo_prm') else ', other weights'}" for r in base))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", help="comma-separated demo run directories, one per seed")
    ap.add_argument("--options", default=",".join(OPTIONS), help=f"comma-separated subset of {', '.join(OPTIONS)}")
    ap.add_argument("--work", default="runs/prm_options", help="where the PRMs are trained")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--summary", action="store_true", help="print the tables of the rows in --out (latest per seed "
                                                           "and option) and exit")
    args = ap.parse_args()
    if args.summary:
        latest = {}
        for line in Path(args.out).read_text().splitlines():
            row = json.loads(line)
            latest[(row["seed"], row["option"])] = row
        table(list(latest.values()))
        return
    names = args.options.split(",")
    unknown = [n for n in names if n not in OPTIONS]
    if unknown:
        ap.error(f"--options: unknown {', '.join(unknown)}; expected some of {', '.join(OPTIONS)}")
    if not args.runs:
        ap.error("--runs is required (or --summary)")
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for run in args.runs.split(","):
        run_dir = Path(run)
        t0 = time.perf_counter()
        cfg, policy, problems, data = f1_set(run_dir)
        erroneous = sum(t is not None for ts in data.first_error for t in ts)
        f1_data = {"problems": len(problems), "solutions": sum(map(len, data.texts)), "erroneous": erroneous,
                   "sample_s": round(time.perf_counter() - t0, 1)}
        print(f"seed {cfg.seed}: {f1_data['solutions']} solutions ({erroneous} erroneous) in {f1_data['sample_s']} s",
              flush=True)
        for name in names:
            row = run_option(name, cfg, policy, run_dir, data, Path(args.work))
            row.update(f1_data=f1_data, threads=args.threads, date=time.strftime("%Y-%m-%d %H:%M"))
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
            rows.append(row)
    table(rows)


if __name__ == "__main__":
    sys.exit(main())
