"""Strategy 'auto' (`ponder serve --auto-policy`) on held-out problems, against the best fixed strategy at equal tokens.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/auto_strategy.py --out benchmarks/results/auto_strategy.md
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/auto_strategy.py --policy runs/demo-arith/sft/model --pairs 3

1. The policy model: `--policy DIR`, or the tests' arith recipe trained here (tests/conftest.py's
   `arith_policy`: a random tiny:1m Llama, `--steps` SFT steps on arith reference solutions).
2. Per pair, `ponder scale` twice with the same options on two problem sets: A (seed 2i) and B
   (seed 2i+1; B's problems that A also holds are left out of the evaluation). Strategies
   greedy and majority at N = 1..16, a 4-sample difficulty probe, no scorer: the policy's
   predictor is then the probe samples' agreement (ponder.search.auto), the one that needs
   no scorer and no gold answer.
3. The 'auto' policy is A's run, loaded as the server loads it (`load_policy`). The fixed
   strategy at a budget is chosen on A too: the most accurate setting over all of A whose
   mean tokens fit (`best_fixed`). Nothing is chosen on B.
4. On B, at each budget (majority@N's mean generated tokens on A, N in the sweep, and a few
   above the probe's cost), 'auto' runs for real (`auto_search`, the code the server runs:
   probe, bin, choose within the budget left after the probe, search) with B's seed, so its
   probe and search draw the samples B's sweep drew; the fixed strategy's outcome is B's
   record of it. The difference in accuracy is paired by problem, with its standard error
   (sd of the per-problem differences / sqrt(n)). A second 'auto' column does not charge the
   probe (Snell et al. 2024 leave the cost of predicting difficulty out): the bin's choice
   within the whole budget, read from B's records. It separates what choosing per bin gains
   from what the probe costs.
"""
from __future__ import annotations

import argparse
import math
import os
from collections import Counter
from pathlib import Path

STRATEGIES = ("greedy", "majority")
BUDGETS = (1, 2, 4, 8, 16)


def train_policy(out: Path, steps: int) -> Path:
    """tests/conftest.py's arith policy: tiny:1m, SFT on arith reference solutions."""
    import torch

    from ponder.models import build_char_tokenizer, build_tiny_model
    from ponder.tasks import get_task
    from ponder.train.sft import SFTConfig, SFTTrainer, reference_rows

    if (out / "model").exists():
        return out / "model"
    torch.manual_seed(0)
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, "1m", seed=0)
    rows = reference_rows(get_task("arith", instruction=False), 20000, seed=0)
    cfg = SFTConfig(lr=3e-3, steps=steps, warmup_steps=30, seed=0, save_every=steps, batch_size=32)
    SFTTrainer(model, tok, rows, cfg, out, progress=False).train()
    return out / "model"


def scale_run(model: Path, runs: Path, name: str, seed: int, args) -> Path:
    from ponder.commands.scale import Config, run

    cfg = Config(model=str(model), task="arith", task_args={"instruction": False}, strategies=STRATEGIES,
                 budgets=BUDGETS, n_problems=args.problems, difficulty_samples=args.probe, temperature=args.temperature,
                 max_tokens=80, scorer="none", seed=seed, runs_dir=str(runs), run=name)
    run(cfg, progress=False)
    return runs / name


def paired(diffs: list[float]) -> tuple[float, float]:
    """Mean of paired differences and its standard error."""
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) if n > 1 else float("nan")
    return mean, sd / math.sqrt(n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", help="policy model folder (default: train the tests' arith recipe)")
    ap.add_argument("--steps", type=int, default=400, help="SFT steps of the trained policy")
    ap.add_argument("--work", default="runs/auto-strategy", help="folder for the policy and the scale runs")
    ap.add_argument("--problems", type=int, default=30, help="problems per set (A and B)")
    ap.add_argument("--pairs", type=int, default=1, help="(A, B) pairs, each with its own policy; results pooled")
    ap.add_argument("--probe", type=int, default=4, help="difficulty probe samples (ponder scale --difficulty-samples)")
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--out", help="append the markdown table to this file too")
    args = ap.parse_args()

    import json

    import torch

    from ponder.generation import make_engine
    from ponder.search import SearchContext
    from ponder.search.auto import auto_search, best_fixed, load_policy
    from ponder.search.compute_optimal import token_budgets
    from ponder.tasks import get_task

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    work = Path(args.work)
    model = Path(args.policy) if args.policy else train_policy(work / f"policy-{args.steps}", args.steps)
    task = get_task("arith", instruction=False)
    tag = f"{model.parent.name}-p{args.problems}-k{args.probe}-t{args.temperature}"
    rows: dict[float, dict] = {}  # budget label -> accumulated per-problem outcomes
    notes = []
    with make_engine("torch", str(model)) as engine:
        for pair in range(args.pairs):
            seed_a, seed_b = 2 * pair, 2 * pair + 1
            run_a = scale_run(model, work / "runs", f"{tag}-A{seed_a}", seed_a, args)
            run_b = scale_run(model, work / "runs", f"{tag}-B{seed_b}", seed_b, args)
            policy = load_policy(run_a)
            rec_a = json.loads((run_a / "scale.json").read_text())["records"]
            rec_b = {(r["problem"], r["strategy"], r["budget"]): r
                     for r in json.loads((run_b / "scale.json").read_text())["records"]}
            seen = {p.question for p in task.problems("test", n=args.problems, seed=seed_a)}
            held = [p for p in task.problems("test", n=args.problems, seed=seed_b) if p.question not in seen]
            notes.append(f"pair {pair}: A = seed {seed_a}, B = seed {seed_b}, {args.problems - len(held)} of B's "
                         f"problems also in A left out; bins (predicted difficulty edges) {policy.edges}; "
                         f"probe {policy.probe_n} samples, {policy.probe_tokens:.0f} tokens on A")
            majority = token_budgets([r for r in rec_a if r["strategy"] != "difficulty"])
            labels = {f"majority@{n}": t for n, t in majority.items()}
            labels.update({f"probe + majority@{n}": policy.probe_tokens + t for n, t in majority.items() if n <= 4})
            for label, budget in labels.items():
                row = rows.setdefault(label, {"budget": [], "fixed": [], "auto": [], "free": [], "fixed_t": [],
                                              "auto_t": [], "free_t": [], "fixed_c": Counter(), "auto_c": Counter()})
                row["budget"].append(budget)
                fixed = best_fixed(rec_a, budget)
                for p in held:
                    probe = rec_b[(p.id, "difficulty", policy.probe_n)]
                    label_b = policy.bin_of(probe["mean_score"] or 0.0)
                    free = policy.choose(label_b, budget)
                    if fixed is None or free is None:
                        continue
                    f = rec_b[(p.id, fixed.strategy, fixed.n)]
                    fr = rec_b[(p.id, free.strategy, free.n)]
                    row["fixed_c"][f"{fixed.strategy}@{fixed.n}"] += 1
                    row["fixed"].append(f["correct"])
                    row["fixed_t"].append(f["generated_tokens"])
                    row["free"].append(fr["correct"])
                    row["free_t"].append(fr["generated_tokens"])
                    if budget < policy.min_budget():
                        row["auto"].append(None)  # the server answers 400: the probe alone overspends
                        continue
                    res = auto_search(SearchContext(engine, task, None), p, policy, budget, seed=seed_b)
                    chosen = rec_b[(p.id, res.auto["strategy"], res.auto["n"])]
                    # The real run draws B's sweep's samples: same answer, same tokens.
                    assert res.auto["search"]["generated_tokens"] == chosen["generated_tokens"], (p.id, label)
                    assert res.auto["probe"]["generated_tokens"] == probe["generated_tokens"], (p.id, label)
                    row["auto_c"][f"{res.auto['strategy']}@{res.auto['n']}"] += 1
                    correct = res.text is not None and task.is_correct(p, res.text)
                    assert correct == chosen["correct"], (p.id, label)
                    row["auto"].append(correct)
                    row["auto_t"].append(res.auto["tokens"])

    lines = [f"Policy {model} ({'trained here, ' + str(args.steps) + ' SFT steps' if not args.policy else 'given'}); "
             f"arith (instruction=false); {args.problems} problems per set, {args.pairs} pair(s); greedy and majority "
             f"at N in {BUDGETS}, temperature {args.temperature}, 80 tokens; probe {args.probe} samples, predictor: "
             "agreement; tokens are generated tokens per problem (means on B).", "",
             "| budget (tokens) | fixed acc | fixed tok | auto acc | auto tok | auto - fixed | "
             "auto, probe uncharged acc | tok | uncharged - fixed | problems | fixed's choice | auto's choices |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def mean(xs):
        return sum(xs) / len(xs) if xs else float("nan")

    for label, r in rows.items():
        n = len(r["fixed"])
        if not n:
            lines.append(f"| {label} = {mean(r['budget']):.0f} | no fixed setting fits | | | | | | | | 0 | | |")
            continue
        d_free = paired([a - b for a, b in zip(r["free"], r["fixed"])])
        # Refused (400: the budget is below the probe + the cheapest setting) where a pair's budget is.
        answered = [(a, b) for a, b in zip(r["auto"], r["fixed"]) if a is not None]
        if not answered:
            auto_cells = ["refused", "", ""]
        else:
            d_auto = paired([a - b for a, b in answered])
            auto_cells = [f"{mean([a for a, _ in answered]):.3f}", f"{mean(r['auto_t']):.0f}",
                          f"{d_auto[0]:+.3f} ± {d_auto[1]:.3f}" + (f" (on {len(answered)}; refused on the other "
                                                                  f"{n - len(answered)})" if len(answered) < n else "")]
        lines.append(f"| {label} = {mean(r['budget']):.0f} | {mean(r['fixed']):.3f} | {mean(r['fixed_t']):.0f} | "
                     + " | ".join(auto_cells)
                     + f" | {mean(r['free']):.3f} | {mean(r['free_t']):.0f} | {d_free[0]:+.3f} ± {d_free[1]:.3f} | {n} | "
                     + f"{_counts(r['fixed_c'])} | {_counts(r['auto_c'])} |")
    command = (f"benchmarks/auto_strategy.py {'--policy ' + args.policy if args.policy else '--steps ' + str(args.steps)} "
               f"--problems {args.problems} --pairs {args.pairs} --probe {args.probe} --temperature {args.temperature}")
    table = "\n".join([f"### `{command}`", ""] + lines + [""] + [f"- {n}" for n in notes])
    print(table)
    if args.out:  # appended: one section per configuration
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as f:
            f.write(table + "\n\n")


def _counts(c: Counter) -> str:
    """'greedy@1 x120, majority@4 x30': how often each setting ran."""
    return ", ".join(f"{k} x{v}" for k, v in c.most_common())


if __name__ == "__main__":
    main()
