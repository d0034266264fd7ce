"""Does a PRM learned from automatic labels check steps? Train on OmegaPRM labels, score held-out samples.

    .venv/bin/ponder annotate --run omega2000 --runs-dir runs/bench-prm --task arith --task-arg instruction=false \\
        --n-problems 2000 --policy runs/demo-arith/sft/model --samples 1 --temperature 1.0 --max-tokens 80 \\
        --method omega_prm --method truth --k 8 --chunk 200 --seed 100
    .venv/bin/python benchmarks/learning_prm.py --tag omega2000-hard --labels runs/bench-prm/omega2000 --hard \\
        --policy runs/demo-arith/sft/model --seeds 0,1,2
    .venv/bin/python benchmarks/learning_prm.py --summary

The PRM is trained on `stepwise_omega_prm.jsonl` of an annotation run (labels from Monte
Carlo rollouts of the policy: no ground truth), `--hard` turning MC fractions into 0/1 (label
> 0, Math-Shepherd's hard estimate, Wang et al. 2024 §3.3) or left soft. It is then scored on
`--eval-samples` solutions per problem sampled from the policy on held-out test problems
(never annotated: annotation draws the train split): ProcessBench-style F1 of the first step
scored below 0.5 against the exact step checker, and, at N = 16, PRM-weighted best-of-N
against majority vote on the same samples (the comparison fixed in advance), with the paired
per-problem standard error. Seeds vary the PRM's initialisation and data order; the held-out
samples are the same for every seed. Every run goes to benchmarks/results/learning_prm.jsonl.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "learning_prm.jsonl"


def paired(a: list[float], b: list[float]) -> tuple[float, float]:
    d = [x - y for x, y in zip(a, b)]
    mean = sum(d) / len(d)
    return mean, math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d))


def calibrated_threshold(prm, calibration: Path, trained_on: set[str], method: str) -> tuple[float, int]:
    """The step threshold that maximises ProcessBench F1 against automatic labels (`method`'s
    hard labels in an annotation run's records.jsonl: the sampled solutions and, for OmegaPRM,
    the rollouts of its search tree) on prompts the PRM was not trained on - no ground truth
    involved. Returns (threshold, solutions used)."""
    from ponder.eval.rm import first_below, processbench_f1

    rows = [json.loads(line) for line in (calibration / "records.jsonl").open()]
    rows = [r for r in rows if r["prompt"] not in trained_on and r["steps"] and method in r["labels"]]
    truth = [next((i for i, v in enumerate(r["labels"][method]["soft"]) if v <= 0), None) for r in rows]
    scores = prm.score_steps([r["prompt"] for r in rows], [r["steps"] for r in rows])
    grid = [i / 100 for i in range(2, 99)]
    best = max(grid, key=lambda t: processbench_f1([first_below(sc, t) for sc in scores], truth)["f1"])
    return best, len(rows)


def first_error_kinds(task, data, steps: list[list[list[float]]], threshold: float) -> dict:
    """Which first errors the PRM finds: per kind of error (the exact checker's reason up to its
    first colon, e.g. countdown's "wrong value", "dead end"), how many held-out solutions have
    it as their first error and the share whose first step scored below `threshold` is exactly
    that step (ProcessBench's erroneous accuracy, split by kind)."""
    from ponder.eval.rm import first_below

    kinds: dict[str, list[int]] = {}
    for problem, sols, firsts, scores in zip(data.problems, data.steps, data.first_error, steps):
        for st, first, sc in zip(sols, firsts, scores):
            if first is None or not st:
                continue
            reason = task.check_steps(problem, st).reasons[first] or "blank"
            kind = kinds.setdefault(reason.split(":")[0], [0, 0])
            kind[0] += 1
            kind[1] += first_below(sc, threshold) == first
    return {k: {"n": n, "found": found / n} for k, (n, found) in sorted(kinds.items(), key=lambda kv: -kv[1][0])}


def per_problem_choice(data, scores: list[list[float]], n: int) -> tuple[list[float], list[float]]:
    """Correctness per problem of PRM-weighted best-of-n and of majority vote over the first n samples."""
    from ponder.eval.metrics import majority_vote
    from ponder.search.vote import weighted_winner

    weighted, majority = [], []
    for keys, correct, s in zip(data.keys, data.correct, scores):
        win = weighted_winner(keys[:n], s[:n])
        weighted.append(float(isinstance(win, str) and win.startswith("gold:")))
        m = majority_vote(keys[:n])
        majority.append(float(isinstance(m, str) and m.startswith("gold:")))
    return weighted, majority


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--summary", action="store_true", help="print the recorded results and exit")
    ap.add_argument("--tag", help="name of this variant")
    ap.add_argument("--labels", help="annotation run dir holding stepwise_omega_prm.jsonl")
    ap.add_argument("--method", default="omega_prm", help="which stepwise file: omega_prm, math_shepherd, truth")
    ap.add_argument("--policy", default="runs/demo-arith/sft/model")
    ap.add_argument("--body", help="model whose body initialises the PRM (default: the policy)")
    ap.add_argument("--hard", action="store_true")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--eval-n", type=int, default=100)
    ap.add_argument("--eval-samples", type=int, default=16)
    ap.add_argument("--calibrate", help="annotation run dir of other problems: the F1 threshold is chosen on its "
                                        "automatic labels (reported beside the fixed 0.5)")
    ap.add_argument("--task", default="arith", choices=["arith", "countdown"])
    ap.add_argument("--task-args", default="instruction=false", help="the labelled task's knobs, k=v,k=v")
    ap.add_argument("--runs-dir", default="runs/bench-prm")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results", default=str(RESULTS), help="JSONL file the runs are appended to")
    args = ap.parse_args()
    results = Path(args.results)
    if args.summary:
        return summary()
    if not (args.tag and args.labels):
        ap.error("--tag and --labels are required")
    torch.set_num_threads(args.threads)
    from ponder.commands import train_rm
    from ponder.eval.rm import quality_of_scores, sample_solutions, solution_scores
    from ponder.generation import make_engine
    from ponder.rewards.model import load_prm
    from ponder.tasks import get_task

    knobs = dict(kv.split("=") for kv in args.task_args.split(",") if kv)
    knobs = {k: (v.lower() == "true") if v.lower() in ("true", "false") else int(v) if v.isdigit() else v
             for k, v in knobs.items()}
    task = get_task(args.task, **knobs)
    held_out = task.problems("test", n=args.eval_n, seed=0)
    with make_engine("torch", args.policy) as gen:
        data = sample_solutions(gen, task, held_out, args.eval_samples, 1.0, 80, 11)
    labels = Path(args.labels) / f"stepwise_{args.method}.jsonl"
    examples = sum(1 for _ in labels.open())
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.perf_counter()
        trained = train_rm.run(train_rm.Config(run=f"prm-{args.tag}-s{seed}", runs_dir=args.runs_dir, kind="prm",
                                               data=str(labels), model=args.body or args.policy, hard=args.hard,
                                               steps=args.steps, lr=args.lr, batch_size=args.batch_size, seed=seed),
                               progress=False)
        train_s = time.perf_counter() - t0
        prm = load_prm(trained["model_dir"])
        agg, steps = solution_scores(prm, data, "min")  # scored once: F1, best-of-N and the comparison
        quality = quality_of_scores(data, agg, steps)
        calibrated = None
        if args.calibrate:
            trained_on = {json.loads(line)["prompt"] for line in labels.open()}
            threshold, used = calibrated_threshold(prm, Path(args.calibrate), trained_on, args.method)
            pb = quality_of_scores(data, agg, steps, threshold).get("processbench")
            calibrated = {"threshold": threshold, "solutions": used, "processbench": pb}
        kinds = first_error_kinds(task, data, steps, 0.5) if data.first_error else None
        weighted, majority = per_problem_choice(data, agg, args.eval_samples)
        diff, se = paired(weighted, majority)
        row = {"tag": args.tag, "seed": seed, "settings": {k: v for k, v in vars(args).items()
                                                           if k not in ("tag", "seeds", "threads", "summary", "results")},
               "train_examples": examples, "processbench": quality.get("processbench"), "calibrated": calibrated,
               "first_error_kinds": kinds,
               f"weighted_bo{args.eval_samples}": sum(weighted) / len(weighted),
               f"majority@{args.eval_samples}": sum(majority) / len(majority), "weighted_minus_majority": diff,
               "paired_se": se, "best_of_n": quality["best_of_n"], "weighted_best_of_n": quality["weighted_best_of_n"],
               "train_s": round(train_s, 1), "final_loss": trained.get("loss"), "date": time.strftime("%Y-%m-%d %H:%M")}
        results.parent.mkdir(parents=True, exist_ok=True)
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
        pb = row["processbench"] or {}
        print(f"seed {seed}: F1 {pb.get('f1', float('nan')):.3f} (erroneous {pb.get('acc_erroneous', 0):.3f}, "
              f"correct {pb.get('acc_correct', 0):.3f}); weighted best-of-{args.eval_samples} "
              f"{row[f'weighted_bo{args.eval_samples}']:.3f} vs majority {row[f'majority@{args.eval_samples}']:.3f} "
              f"({diff:+.3f} ± {se:.3f}); train {train_s:.0f} s", flush=True)
        if kinds:
            print("  first errors found, by kind: " + "; ".join(f"{k} {v['found']:.2f} of {v['n']}"
                                                             for k, v in kinds.items()), flush=True)
        if calibrated and calibrated["processbench"]:
            c = calibrated["processbench"]
            print(f"  threshold {calibrated['threshold']:.2f} chosen on {calibrated['solutions']} automatically "
                  f"labelled solutions: F1 {c['f1']:.3f} (erroneous {c['acc_erroneous']:.3f}, correct "
                  f"{c['acc_correct']:.3f})", flush=True)


def summary() -> None:
    by_tag: dict[str, list[dict]] = {}
    for line in RESULTS.read_text().splitlines():
        row = json.loads(line)
        by_tag.setdefault(row["tag"], []).append(row)
    print(f"{'variant':28} {'seeds':>5} {'examples':>8} {'F1':>14} {'weighted - majority':>20} "
          f"{'F1, calibrated threshold':>25}")

    def mse(values):
        se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
        return f"{statistics.mean(values):.3f} ± {se:.3f}"

    for tag, rows in by_tag.items():
        f1 = [r["processbench"]["f1"] for r in rows if r.get("processbench")]
        cal = [r["calibrated"]["processbench"]["f1"] for r in rows if (r.get("calibrated") or {}).get("processbench")]
        print(f"{tag:28} {len(rows):5} {rows[0]['train_examples']:8} {mse(f1) if f1 else '-':>14} "
              f"{mse([r['weighted_minus_majority'] for r in rows]):>20} {mse(cal) if cal else '-':>25}")


if __name__ == "__main__":
    main()
