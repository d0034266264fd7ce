"""Step verifiers on the demo's countdown policy: ProcessBench F1 and search at equal total compute.

For each demo run directory given (one per seed, made by `ponder demo --seed S --run ...`):

1. F1. The run's SFT policy samples `--samples` solutions (temperature 1.0, as the demo's PRM
   evaluation) for `--f1-problems` held-out problems; the exact step checker gives each
   solution's true first error; every verifier predicts it (the first step scored below 0.5)
   and is scored by ProcessBench F1 (Zheng et al. 2024), with its scorer tokens per solution.
   Verifiers: the demo's PRM (trained on OmegaPRM labels), the rollout verifier with k = 4 and
   8 (Math-Shepherd's hard estimate at test time, early stop), and the policy asked per step
   as a generative judge. None of them sees a step label. Fixed before the run: the claim
   "F1 >= 0.8 without gold labels" is tested on `rollout:k=8`.
2. Equal total compute. On `--search-problems` other held-out problems: majority@16 (the
   search-time answer key: the equation's text, as a deployed system must vote) against
   best_of_n with `rollout:k=2` at the largest N whose mean total tokens (generated + prefill
   + scorer) do not exceed majority@16's on the same problems - chosen by compute alone,
   before looking at accuracy. Also reported, not compared: best-of-16 with the outcome check
   alone (countdown's equation check reads only the problem: right iff any of majority's 16
   samples is, pass@16), the ceiling a free exact checker gives on this task.

Prints a table per seed and the mean +- standard error over seeds; appends one JSON row per
seed to `--out`. One process, one torch thread by default (two side-by-side processes on two
cores slow each other down).

    .venv/bin/python benchmarks/verifiers.py --runs runs/demo-s0,runs/demo-s1,runs/demo-s2
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import yaml

RESULTS = Path(__file__).parent / "results" / "verifiers.jsonl"
F1_VERIFIERS = ("prm", "rollout:k=4", "rollout:k=8", "judge")
SEARCH_SCORER = "rollout:k=2"
SEARCH_BUDGETS = (1, 2, 3, 4, 6, 8)


def mean_se(xs: list[float]) -> str:
    if len(xs) < 2:
        return f"{xs[0]:.3f}" if xs else "-"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs) / math.sqrt(len(xs)):.3f}"


def paired(a: list[bool], b: list[bool]) -> dict:
    d = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    m = sum(d) / len(d)
    se = math.sqrt(sum((x - m) ** 2 for x in d) / (len(d) - 1) / len(d)) if len(d) > 1 else 0.0
    return {"difference": m, "se": se, "n": len(d)}


def run_seed(run_dir: Path, f1_problems: int, samples: int, search_problems: int) -> dict:
    from ponder.eval.rm import evaluate_reward_model, sample_solutions
    from ponder.generation.factory import make_engine
    from ponder.pipeline.config import DemoConfig
    from ponder.pipeline.stages import make_split
    from ponder.rewards.model import load_prm
    from ponder.search.base import SearchContext, SearchParams
    from ponder.search.driver import search_all
    from ponder.search.scale import total_tokens
    from ponder.search.scorers import load_scorer
    from ponder.seeds import derive

    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    cfg = DemoConfig(**{k: v for k, v in saved.items() if k in DemoConfig.__dataclass_fields__})
    split = make_split(cfg)
    task, policy = split.task, str(run_dir / "sft" / "model")
    # The demo used held_out[:scale_n] for its sweep and [:prm_eval_n] for the PRM: start after both.
    start = max(cfg.scale_n, cfg.prm_eval_n)
    f1_set = split.held_out[start:start + f1_problems]
    search_set = split.held_out[start + f1_problems:start + f1_problems + search_problems]
    if len(search_set) < search_problems:
        raise SystemExit(f"{run_dir}: the demo holds out {len(split.held_out)} problems, fewer than "
                         f"{start + f1_problems + search_problems}")
    open_policy = lambda: make_engine("torch", policy)  # noqa: E731
    out = {"run": str(run_dir), "seed": cfg.seed, "f1": {}, "search": {}}

    with make_engine("torch", policy) as gen:
        data = sample_solutions(gen, task, f1_set, samples, 1.0, cfg.max_tokens, derive(cfg.seed, "verifier-f1"))
    n_solutions = sum(map(len, data.texts))
    erroneous = sum(t is not None for ts in data.first_error for t in ts)
    out["f1_data"] = {"problems": len(f1_set), "solutions": n_solutions, "erroneous": erroneous}
    for name in F1_VERIFIERS:
        scorer = (load_prm(str(run_dir / "prm" / "model")) if name == "prm"
                  else load_scorer(name, task, f1_set, policy=open_policy, seed=derive(cfg.seed, "verifier")))
        t0 = time.perf_counter()
        # The PRM's own aggregation; the verifiers' F1 does not depend on it.
        quality = evaluate_reward_model(scorer, data, getattr(scorer, "aggregation", "last"), threshold=0.5)
        pb = quality["processbench"]
        out["f1"][name] = {"f1": pb["f1"], "f1_se": pb["f1_se"], "acc_erroneous": pb["acc_erroneous"],
                           "acc_correct": pb["acc_correct"], "scorer_tokens_per_solution": scorer.usage.tokens / n_solutions,
                           "wall_s": round(time.perf_counter() - t0, 1)}
        print(f"  seed {cfg.seed} {name:12s} F1 {pb['f1']:.3f} ± {pb['f1_se']:.3f} (err {pb['acc_erroneous']:.3f}, "
              f"ok {pb['acc_correct']:.3f}); {scorer.usage.tokens / n_solutions:.0f} scorer tokens/solution", flush=True)

    params = SearchParams(temperature=cfg.temperature, max_tokens=cfg.max_tokens, max_step_tokens=cfg.max_tokens,
                          seed=cfg.seed)

    def cell(strategy: str, n: int, scorer_spec: str | None) -> dict:
        with make_engine("torch", policy) as engine:
            scorer = load_scorer(scorer_spec, task, search_set, policy=open_policy, seed=derive(cfg.seed, "verifier"))
            res = search_all(strategy, SearchContext(engine, task, scorer), search_set, replace(params, n=n))
        recs = res["records"]
        for r in recs:
            r.update(r.pop("compute"))
        row = {"strategy": strategy, "n": n, "scorer": scorer_spec, "accuracy": res["summary"]["accuracy"],
               "total_tokens": sum(map(total_tokens, recs)) / len(recs),
               "generated_tokens": sum(r["generated_tokens"] for r in recs) / len(recs),
               "scorer_tokens": sum(r["scorer_tokens"] for r in recs) / len(recs),
               "correct": [r["correct"] for r in recs],
               "any_correct": [any(task.is_correct(p, c["text"]) for c in r["candidates"])
                               for p, r in zip(search_set, recs)]}
        print(f"  seed {cfg.seed} {strategy}@{n} ({scorer_spec}): acc {row['accuracy']:.3f}, total "
              f"{row['total_tokens']:.0f} tokens/problem (scorer {row['scorer_tokens']:.0f})", flush=True)
        return row

    majority = cell("majority", 16, None)
    guided = []
    for n in SEARCH_BUDGETS:
        guided.append(cell("best_of_n", n, SEARCH_SCORER))
        if guided[-1]["total_tokens"] > majority["total_tokens"]:
            break
    fits = [g for g in guided if g["total_tokens"] <= majority["total_tokens"]]
    chosen = fits[-1] if fits else guided[0]
    out["search"] = {
        "majority": {k: v for k, v in majority.items() if not k.endswith("correct")},
        "guided": [{k: v for k, v in g.items() if not k.endswith("correct")} for g in guided],
        "chosen": {k: v for k, v in chosen.items() if not k.endswith("correct")},
        "guided_minus_majority": paired(chosen["correct"], majority["correct"]),
        # best-of-16 with the outcome check: the same 16 samples, right iff any is (pass@16)
        "outcome_check_best_of_16": {"accuracy": sum(majority["any_correct"]) / len(search_set),
                                     "total_tokens": majority["total_tokens"]},
        "outcome_minus_majority": paired(majority["any_correct"], majority["correct"]),
        "problems": len(search_set),
        "vote_key": "search-time answer key (the equation's text, numbers compared as numbers)",
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", help="comma-separated demo run directories, one per seed")
    ap.add_argument("--f1-problems", type=int, default=60)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--search-problems", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--summary", action="store_true", help="print the table of the rows in --out (latest per seed) and exit")
    args = ap.parse_args()
    if args.summary:
        latest = {}
        for line in Path(args.out).read_text().splitlines():
            row = json.loads(line)
            latest[row["seed"]] = row
        table([latest[s] for s in sorted(latest)])
        return
    import torch

    torch.set_num_threads(args.threads)
    if not args.runs:
        ap.error("--runs is required (or --summary)")
    rows = []
    for run in args.runs.split(","):
        t0 = time.perf_counter()
        row = run_seed(Path(run), args.f1_problems, args.samples, args.search_problems)
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        row["date"] = time.strftime("%Y-%m-%d %H:%M")
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
    table(rows)


def table(rows: list[dict]) -> None:
    print(f"\n{len(rows)} seeds ({', '.join(str(r['seed']) for r in rows)}); mean ± standard error over seeds\n")
    print("| verifier | ProcessBench F1 | acc. erroneous | acc. correct | scorer tokens / solution |")
    print("|---|---|---|---|---|")
    for name in F1_VERIFIERS:
        get = lambda key: [r["f1"][name][key] for r in rows]  # noqa: E731
        print(f"| {name} | {mean_se(get('f1'))} | {mean_se(get('acc_erroneous'))} | {mean_se(get('acc_correct'))} "
              f"| {statistics.mean(get('scorer_tokens_per_solution')):.0f} |")
    s = [r["search"] for r in rows]
    print("\n| comparison (same problems, paired) | accuracy | total tokens / problem | difference ± paired SE |")
    print("|---|---|---|---|")
    print(f"| majority@16 | {mean_se([x['majority']['accuracy'] for x in s])} | "
          f"{statistics.mean(x['majority']['total_tokens'] for x in s):.0f} | |")
    per_seed = ", ".join(f"{x['guided_minus_majority']['difference']:+.3f} ± {x['guided_minus_majority']['se']:.3f}"
                         for x in s)
    print(f"| best_of_n@N ({SEARCH_SCORER}), N = {[x['chosen']['n'] for x in s]} | "
          f"{mean_se([x['chosen']['accuracy'] for x in s])} | {statistics.mean(x['chosen']['total_tokens'] for x in s):.0f} "
          f"| {mean_se([x['guided_minus_majority']['difference'] for x in s])} (per seed {per_seed}) |")
    print(f"| best_of_n@16 (outcome check, not compared) | {mean_se([x['outcome_check_best_of_16']['accuracy'] for x in s])} | "
          f"{statistics.mean(x['outcome_check_best_of_16']['total_tokens'] for x in s):.0f} | "
          f"{mean_se([x['outcome_minus_majority']['difference'] for x in s])} |")


if __name__ == "__main__":
    sys.exit(main())
