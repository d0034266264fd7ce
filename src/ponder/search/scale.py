"""`ponder scale`: sweep strategies x budgets over a problem set, measure accuracy against
compute, and pick the compute-optimal strategy per difficulty (compute_optimal.py).

Every (strategy, budget, problem) run is one record with its correctness and its compute
(the engine's and the scorer's usage deltas). The summary per (strategy, budget) is the
accuracy and the mean tokens per problem; the pass@N oracle (any of majority's N samples
correct) is the ceiling a perfect verifier would reach on those samples. `greedy` is run
once (budget 1). For tree strategies the beam width is min(beam_width, N), so N=1, 2 are
valid points too.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Callable

from ponder.search.base import SearchConfig, SearchContext, search, search_config
from ponder.search.compute_optimal import compute_optimal, difficulty_bins
from ponder.tasks.base import Problem

TREE = ("beam", "dvts", "lookahead", "mcts")


@dataclass
class ScaleConfig(SearchConfig):
    """`ponder scale`: the SearchConfig fields apply to every run (`n` is set by `budgets`)."""

    model: str = "runs/demo/sft/model"
    """policy: a model dir, a .gguf, smollm2, or a run name under runs/ (with a server engine:
    the served model's name)"""
    engine: str = "torch"
    """engine of the policy: torch, vllm, or an OpenAI-compatible server URL (http://host:port/v1)"""
    task: str = "arith"
    """task name or dataset path"""
    task_args: dict = field(default_factory=dict)
    """knobs passed to the task, e.g. {instruction: false, num_ops: [4, 4]}"""
    scorer: str = "verifier"
    """'verifier' (the task's exact checks, needs gold answers), a PRM directory, or 'none'"""
    strategies: tuple[str, ...] = ("greedy", "majority", "best_of_n", "beam", "dvts")
    """strategies to sweep (see `ponder search --help` for the list)"""
    budgets: tuple[int, ...] = (1, 2, 4, 8, 16)
    """budgets N to sweep (samples, beams, simulations...)"""
    n_problems: int = 60
    """problems drawn from the split"""
    split: str = "test"
    """task split"""
    difficulty: str = "pass_rate"
    """how problems are binned: 'pass_rate' (the policy's own, uses gold answers) or
    'score' (the scorer's mean score of the samples; no gold answers needed)"""
    bins: int = 3
    """difficulty bins for compute-optimal selection"""
    seed: int = 0
    """seed of problem selection, sampling and the selection halves"""


def sweep(ctx: SearchContext, problems: list[Problem], cfg: ScaleConfig,
          on_result: Callable[[], None] | None = None) -> list[dict]:
    """One record per (strategy, budget, problem)."""
    base = search_config(cfg)
    records = []
    for strategy in cfg.strategies:
        for budget in ([1] if strategy == "greedy" else cfg.budgets):
            run_cfg = replace(base, n=budget)
            if strategy in TREE:
                run_cfg.beam_width = min(base.beam_width, budget)
            for problem in problems:
                r = search(strategy, ctx, problem, run_cfg)
                correct = [ctx.task.is_correct(problem, c.text) for c in r.candidates]
                scores = [c.score for c in r.candidates if c.score is not None]
                records.append({
                    "strategy": strategy, "budget": budget, "problem": problem.id,
                    "correct": bool(r.text is not None and ctx.task.is_correct(problem, r.text)),
                    "any_correct": any(correct), "pass_rate": sum(correct) / max(len(correct), 1),
                    "mean_score": sum(scores) / len(scores) if scores else None,
                    "candidates": len(r.candidates), "answer": r.answer,
                    "generated_tokens": r.compute.generated_tokens, "prefill_tokens": r.compute.prefill_tokens,
                    "scorer_tokens": r.compute.scorer_tokens, "wall_s": r.compute.wall_s,
                })
                if on_result:
                    on_result()
    return records


def summarize(records: list[dict]) -> list[dict]:
    """Accuracy and mean compute per (strategy, budget), plus the pass@N oracle rows."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        groups[(r["strategy"], r["budget"])].append(r)
    rows = []
    for (strategy, budget), rs in groups.items():
        n = len(rs)
        row = {"strategy": strategy, "budget": budget, "problems": n, "accuracy": sum(r["correct"] for r in rs) / n}
        for key in ("generated_tokens", "prefill_tokens", "scorer_tokens", "wall_s"):
            row[key] = sum(r[key] for r in rs) / n
        row["prefill_per_generated"] = row["prefill_tokens"] / max(row["generated_tokens"], 1e-9)
        rows.append(row)
        if strategy == "majority":
            rows.append({**row, "strategy": "pass@N oracle", "accuracy": sum(r["any_correct"] for r in rs) / n})
    return rows


def difficulty_of(records: list[dict], how: str) -> dict[str, float]:
    """Per-problem difficulty (higher = easier) from the samples of the largest budget of
    `majority` or `best_of_n`: their pass rate, or their mean scorer score."""
    if how not in ("pass_rate", "score"):
        raise ValueError(f"difficulty must be 'pass_rate' or 'score', got {how!r}")
    source = "best_of_n" if how == "score" else "majority"
    pool = [r for r in records if r["strategy"] == source] or [r for r in records if r["strategy"] == "best_of_n"]
    if not pool:
        raise ValueError(f"difficulty={how!r} needs the strategy {source!r} in the sweep")
    top = max(r["budget"] for r in pool)
    key = "mean_score" if how == "score" else "pass_rate"
    return {r["problem"]: r[key] or 0.0 for r in pool if r["budget"] == top}


def tokens_to_match(rows: list[dict], strategy: str, accuracy: float) -> float | None:
    """Generated tokens `strategy` needs to reach `accuracy`, interpolated linearly in
    log(tokens) between its sweep points; None if it never gets there."""
    curve = sorted((r["generated_tokens"], r["accuracy"]) for r in rows if r["strategy"] == strategy)
    for (t0, a0), (t1, a1) in zip(curve, curve[1:]):
        if a0 >= accuracy:
            return t0
        if a1 >= accuracy:
            frac = (accuracy - a0) / (a1 - a0)
            return math.exp(math.log(t0) + frac * (math.log(t1) - math.log(t0)))
    return curve[0][0] if curve and curve[0][1] >= accuracy else None


def run_scale(ctx: SearchContext, problems: list[Problem], cfg: ScaleConfig,
              on_result: Callable[[], None] | None = None) -> dict:
    records = sweep(ctx, problems, cfg, on_result)
    rows = summarize(records)
    out = {"rows": rows, "records": records}
    if any(r["strategy"] in ("majority", "best_of_n") for r in records):
        bin_of = difficulty_bins(difficulty_of(records, cfg.difficulty), cfg.bins)
        opt = compute_optimal([r for r in records if r["strategy"] != "greedy"], bin_of, cfg.seed)
        out["compute_optimal"] = opt
        for budget, v in opt["budgets"].items():
            rows.append({"strategy": "compute-optimal", "budget": budget, "problems": v["problems"],
                         "accuracy": v["accuracy"], "generated_tokens": v["generated_tokens"]})
    if any(r["strategy"] == "majority" for r in rows):
        for row in rows:
            need = tokens_to_match(rows, "majority", row["accuracy"])
            row["majority_tokens_to_match"] = need
            row["token_ratio_vs_majority"] = need / row["generated_tokens"] if need and row["generated_tokens"] else None
    return out


def table_markdown(rows: list[dict]) -> str:
    """The summary rows as a markdown table."""
    head = ["strategy", "N", "accuracy", "gen tokens", "prefill tokens", "prefill/gen", "scorer tokens",
            "wall s", "majority tokens for same acc."]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def f(v, fmt):
        return "" if v is None else format(v, fmt)

    # Below majority's cheapest point, the tokens it needs are at most that point's.
    majority = sorted((r["generated_tokens"], r["accuracy"]) for r in rows if r["strategy"] == "majority")
    floor = majority[0][1] if majority else 0.0
    for r in sorted(rows, key=lambda r: (r["strategy"], r["budget"])):
        lines.append("| " + " | ".join([
            r["strategy"], str(r["budget"]), f(r["accuracy"], ".3f"), f(r.get("generated_tokens"), ".0f"),
            f(r.get("prefill_tokens"), ".0f"), f(r.get("prefill_per_generated"), ".2f"),
            f(r.get("scorer_tokens"), ".0f"), f(r.get("wall_s"), ".2f"),
            ("" if r.get("majority_tokens_to_match") is None else
             f"{'<=' if r['accuracy'] < floor else ''}{r['majority_tokens_to_match']:.0f} "
             f"({r['token_ratio_vs_majority']:.1f}x)"),
        ]) + " |")
    return "\n".join(lines)


def plot_scaling(rows: list[dict], path, title: str = "") -> None:
    """Accuracy against mean generated tokens per problem (log x), one line per strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for strategy in sorted({r["strategy"] for r in rows}):
        pts = sorted((r["generated_tokens"], r["accuracy"], r["budget"]) for r in rows if r["strategy"] == strategy)
        style = dict(linestyle="--", color="grey") if strategy == "pass@N oracle" else {}
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=strategy, **style)
    ax.set_xscale("log")
    ax.set_xlabel("generated tokens per problem (log)")
    ax.set_ylabel("accuracy")
    ax.set_title(title or "test-time scaling")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
