"""`ponder scale`: sweep strategies x budgets over a problem set, measure accuracy against
compute, and pick the compute-optimal strategy per difficulty (compute_optimal.py).

Every (strategy, budget, problem) run is one record with its correctness and its compute
(the engine's and the scorer's usage deltas). The summary per (strategy, budget) is the
accuracy and the mean tokens per problem; the pass@N oracle (any of majority's N samples
correct) is the ceiling a perfect verifier would reach on those samples. `greedy` is run
once (budget 1). For tree strategies the beam width is min(beam_width, N), so N=1, 2 are
valid points too.

A sweep is checked whole before anything runs (`validate_sweep`: every (strategy, budget)
cell), and with a records file it keeps what it computed: each record is appended as one
line and fsynced as soon as it exists, and a rerun skips the (problem, strategy, budget)
cells already there, so a killed sweep resumes where it stopped. Sampling seeds depend on
the problem and the call only (`seed_for`), so a resumed sweep's records equal an
uninterrupted one's (wall times aside).

Difficulty for compute-optimal selection is estimated from a draw of its own: `difficulty`
cells sample each problem `difficulty_samples` times (majority's samples for the pass rate,
best_of_n's scores for the scorer's estimate) with a seed no strategy uses. Binning by the
sweep's own samples would leak the outcome into the bin (majority@4's samples are the first 4
of majority@16's, so a problem's bin would tell whether majority gets it right): on problems
where every sample is a coin flip that made compute-optimal report 0.65-0.69 against
majority's 0.50 (tests/test_compute_optimal_leak.py). The probe's compute is reported apart
and counts toward no strategy.
"""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import Callable

from ponder.runs import atomic_write
from ponder.search.base import (
    SearchContext,
    SearchParams,
    SearchResult,
    get_strategy,
    search_params,
)
from ponder.search.batch import search_many
from ponder.search.compute_optimal import compute_optimal, difficulty_bins
from ponder.search.driver import shard_size
from ponder.seeds import derive
from ponder.tasks.base import Problem

TREE = ("beam", "dvts", "lookahead", "mcts")
WIDTH_DIVIDES_N = ("beam", "dvts", "lookahead")
"""tree strategies that keep N/M beams or subtrees, so M must divide N"""
CHOOSERS = ("best_of_n", *TREE)
"""strategies that pick an answer by score: best score, or weighted vote with `weighted`"""
DIFFICULTY = "difficulty"
"""the records of the difficulty probe: samples drawn apart, only to bin problems"""


@dataclass
class ScaleConfig(SearchParams):
    """`ponder scale`: the SearchParams fields apply to every run (`n` is set by `budgets`)."""

    model: str = "runs/demo/sft/model"
    """policy: a model dir, a .gguf, smollm2, or a run name under runs/ (with a server engine:
    the served model's name)"""
    engine: str = "torch"
    """engine of the policy: torch, torch-bf16, vllm, or an OpenAI-compatible server URL (http://host:port/v1)"""
    task: str | None = None
    """task name or dataset path (default: the model's ponder training task, else arith)"""
    task_args: dict = field(default_factory=dict)
    """knobs passed to the task, e.g. {instruction: false, num_ops: [4, 4]}"""
    scorer: str = "verifier"
    """'verifier' (the task's exact checks, needs gold answers), a PRM directory or server URL, a step verifier that
    needs no labels ('rollout[:k=8:estimate=hard:early_stop=true]': the policy's rollouts from each step;
    'judge[:model=DIR:yes=..:no=..]': a model asked per step), or 'none'"""
    strategies: tuple[str, ...] = ("greedy", "majority", "best_of_n", "beam", "dvts")
    """strategies to sweep (see `ponder search --help` for the list)"""
    budgets: tuple[int, ...] = (1, 2, 4, 8, 16)
    """budgets N to sweep (samples, beams, simulations...)"""
    n_problems: int = 60
    """problems drawn from the split"""
    split: str = "test"
    """task split"""
    compute: str = "generated"
    """the compute axis strategies are compared on (token budgets, compute-optimal selection,
    majority tokens to match): 'generated' tokens, or 'total' = generated + prefill + scorer
    tokens, which charges a verifier's or PRM's reading (and a rollout verifier's rollouts) and
    a tree search's re-prefills as compute"""
    difficulty: str = "pass_rate"
    """how problems are binned: 'pass_rate' (the policy's own, uses gold answers) or
    'score' (the scorer's mean score of the samples; no gold answers needed)"""
    bins: int = 3
    """difficulty bins for compute-optimal selection"""
    difficulty_samples: int = 0
    """samples per problem, drawn with a seed of their own, that estimate its difficulty (0: the largest budget)"""
    seed: int = 0
    """seed of problem selection, sampling and the selection halves"""
    batch: bool = True
    """search the problems of a (strategy, budget) cell together, one engine and scorer call
    per round (search/batch.py); off: one problem at a time (the same records, slower)"""
    workers: int = 1
    """Ray workers sharing the sweep's cells, each with its own engine (1: this process; see ponder.parallel)"""
    ray_address: str | None = None
    """Ray cluster to join (default: $RAY_ADDRESS, else a local Ray started here)"""


def sweep_cells(cfg: ScaleConfig) -> list[tuple[str, int, SearchParams]]:
    """Every (strategy, budget, search params) run of the sweep, in sweep order; last, the
    difficulty probe when compute-optimal selection will run (see the module docstring)."""
    base = search_params(cfg)
    out = []
    for strategy in cfg.strategies:
        for budget in ([1] if strategy == "greedy" else cfg.budgets):
            params = replace(base, n=budget)
            if strategy in TREE:
                params.beam_width = min(base.beam_width, budget)
            out.append((strategy, budget, params))
    if any(s in ("majority", "best_of_n") for s in cfg.strategies) and cfg.budgets:
        n = cfg.difficulty_samples or max(cfg.budgets)
        out.append((DIFFICULTY, n, replace(base, n=n, seed=probe_seed(cfg.seed))))
    return out


def probe_seed(seed: int) -> int:
    """The difficulty probe's sampling seed: unrelated to `seed` itself, which the strategies use."""
    return derive(seed, "difficulty")


def probe_strategy(how: str) -> str:
    """The strategy whose samples estimate difficulty: majority's pass rate, or best_of_n's
    mean scorer score."""
    return "best_of_n" if how == "score" else "majority"


def validate_sweep(cfg: ScaleConfig) -> None:
    """Check every (strategy, budget) cell before anything runs; one ValueError lists all
    the cells that cannot run, each with its strategy, budget and rule."""
    for strategy in cfg.strategies:
        get_strategy(strategy)  # an unknown name lists the known ones
    if cfg.difficulty_samples < 0:
        raise ValueError(f"difficulty_samples must be >= 0, got {cfg.difficulty_samples}")
    if not cfg.budgets or any(not isinstance(b, int) or b < 1 for b in cfg.budgets):
        raise ValueError(f"budgets must be positive integers, got {cfg.budgets}")
    problems = []
    for strategy, budget, params in sweep_cells(cfg):
        if strategy in TREE and params.beam_width < 1:
            problems.append(f"{strategy}: beam_width must be >= 1, got {cfg.beam_width}")
        elif strategy in WIDTH_DIVIDES_N and budget % params.beam_width:
            problems.append(f"{strategy}: budget {budget} is not a multiple of beam_width {params.beam_width} "
                            f"(N beams keep N/M and expand each M times)")
        if strategy == "lookahead" and cfg.lookahead < 0:
            problems.append(f"lookahead: lookahead must be >= 0 steps, got {cfg.lookahead}")
    if problems:
        raise ValueError("the sweep cannot run: " + "; ".join(dict.fromkeys(problems)))


def _key(r: dict) -> tuple:
    return (r["problem"], r["strategy"], r["budget"])


def read_records(path: Path) -> list[dict]:
    """The records a previous sweep appended to `path` ([] if there is none). A torn last
    line (a kill in the middle of a write) is cut off the file; a bad line before it is an
    error naming the file and the line."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")  # the last item is "" after a complete final line
    records = []
    for i, line in enumerate(lines[:-1], 1):
        try:
            rec = json.loads(line)
            _key(rec)
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{i}: expected a JSON sweep record with problem, strategy and budget "
                             f"({e}); remove the line or the file to recompute it") from None
        records.append(rec)
    if lines[-1]:  # torn tail
        atomic_write(path, "".join(line + "\n" for line in lines[:-1]))
    return records


def sweep(ctx: SearchContext | None, problems: list[Problem], cfg: ScaleConfig,
          on_result: Callable[[], None] | None = None, cells: str | Path | None = None,
          setup: Callable[[], SearchContext] | None = None) -> list[dict]:
    """One record per (strategy, budget, problem), in sweep order. With `cells` (a JSONL
    file of per-cell records), the records already there are kept (not recomputed) and each
    new one is appended to it durably as soon as it exists. `on_result` is called once per
    record, kept or computed. With `cfg.workers` > 1 the cells run on Ray workers, each with
    the context `setup()` builds (ponder.parallel); a cell is a pure function of its problem,
    strategy and budget, so the records do not depend on who computed them."""
    from ponder.parallel import map_shards

    validate_sweep(cfg)
    if cfg.workers > 1 and setup is None:
        raise ValueError("a sweep on Ray workers needs `setup`: a function that builds a worker's SearchContext")
    done = {_key(r): r for r in read_records(cells)} if cells is not None else {}
    plan = [(problem, strategy, budget, params) for strategy, budget, params in sweep_cells(cfg)
            for problem in problems]
    todo = [cell for cell in plan if (cell[0].id, cell[1], cell[2]) not in done]
    for _ in range(len(plan) - len(todo)):
        if on_result:
            on_result()
    size = shard_size(len(problems), cfg.workers, cfg.batch)
    groups = [list(g) for _, g in groupby(todo, key=lambda cell: cell[1:3])]  # one (strategy, budget) each
    shards = list(enumerate(g[i:i + size] for g in groups for i in range(0, len(g), size)))
    sink = open(cells, "a") if cells is not None else None
    try:
        for result in map_shards(partial(_run_cells, cfg.batch, probe_strategy(cfg.difficulty)), shards, setup=setup,
                                 workers=cfg.workers,
                                 ray_address=cfg.ray_address, state=ctx):
            for rec in result.value:
                done[_key(rec)] = rec
                if sink is not None:
                    sink.write(json.dumps(rec) + "\n")  # one write per record, then fsync
                    sink.flush()
                    os.fsync(sink.fileno())
                if on_result:
                    on_result()
    finally:
        if sink is not None:
            sink.close()
    return [done[(problem.id, strategy, budget)] for problem, strategy, budget, _ in plan]


def _run_cells(batch: bool, probe: str, ctx: SearchContext, index: int, cells: list) -> list[dict]:
    """The records of a shard's cells, all of one (strategy, budget): with `batch` their
    problems searched together (batch.py), else one by one; the difficulty probe's cells
    with the `probe` strategy."""
    _, strategy, budget, params = cells[0]
    problems = [problem for problem, *_ in cells]
    run = probe if strategy == DIFFICULTY else strategy
    results = search_many(run, ctx, problems, params, batch)
    return [_record(ctx, p, strategy, budget, params, r) for p, r in zip(problems, results)]


def selection(strategy: str, params: SearchParams) -> str | None:
    """How `strategy` picks its answer: "majority vote", "weighted vote" or "best score"
    (None for strategies with one final solution)."""
    if strategy == "majority":
        return "majority vote"
    if strategy in CHOOSERS:
        return "weighted vote" if params.weighted else "best score"
    return None


def _record(ctx: SearchContext, problem: Problem, strategy: str, budget: int, params: SearchParams,
            r: SearchResult) -> dict:
    correct = [ctx.task.is_correct(problem, c.text) for c in r.candidates]
    scores = [c.score for c in r.candidates if c.score is not None]
    return {
        "strategy": strategy, "budget": budget, "problem": problem.id, "selection": selection(strategy, params),
        "correct": bool(r.text is not None and ctx.task.is_correct(problem, r.text)),
        "any_correct": any(correct), "pass_rate": sum(correct) / max(len(correct), 1),
        "mean_score": sum(scores) / len(scores) if scores else None,
        "candidates": len(r.candidates), "answer": r.answer,
        "generated_tokens": r.compute.generated_tokens, "prefill_tokens": r.compute.prefill_tokens,
        "scorer_tokens": r.compute.scorer_tokens, "wall_s": r.compute.wall_s,
    }


TOKENS = {"generated": "generated_tokens", "total": "total_tokens"}
"""`ScaleConfig.compute` -> the record field it counts"""


def total_tokens(r: dict) -> int:
    """Everything a record's search pushed through a model: generated + prefill + scorer tokens."""
    return r["generated_tokens"] + r["prefill_tokens"] + r["scorer_tokens"]


def summarize(records: list[dict]) -> list[dict]:
    """Accuracy and mean compute per (strategy, budget), plus the pass@N oracle rows."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r["strategy"] != DIFFICULTY:
            groups[(r["strategy"], r["budget"])].append(r)
    rows = []
    for (strategy, budget), rs in groups.items():
        n = len(rs)
        row = {"strategy": strategy, "budget": budget, "problems": n, "accuracy": sum(r["correct"] for r in rs) / n,
               "selection": rs[0].get("selection")}
        for key in ("generated_tokens", "prefill_tokens", "scorer_tokens", "wall_s"):
            row[key] = sum(r[key] for r in rs) / n
        row["total_tokens"] = sum(map(total_tokens, rs)) / n
        row["prefill_per_generated"] = row["prefill_tokens"] / max(row["generated_tokens"], 1e-9)
        rows.append(row)
        if strategy == "majority":
            rows.append({**row, "strategy": "pass@N oracle", "selection": None,
                         "accuracy": sum(r["any_correct"] for r in rs) / n})
    return rows


def difficulty_of(records: list[dict], how: str) -> dict[str, float]:
    """Per-problem difficulty (higher = easier) from the difficulty probe's records (samples
    drawn apart, see the module docstring): their pass rate (oracle difficulty, uses the gold
    answers) or their mean scorer score (predicted difficulty)."""
    if how not in ("pass_rate", "score"):
        raise ValueError(f"difficulty must be 'pass_rate' or 'score', got {how!r}")
    pool = [r for r in records if r["strategy"] == DIFFICULTY]
    if not pool:
        raise ValueError("difficulty needs the sweep's difficulty probe: 'majority' or 'best_of_n' in the sweep")
    key = "mean_score" if how == "score" else "pass_rate"
    return {r["problem"]: r[key] or 0.0 for r in pool}


def difficulty_note(records: list[dict], how: str) -> str:
    """How difficulty was estimated, in words, for the output."""
    pool = [r for r in records if r["strategy"] == DIFFICULTY]
    n = pool[0]["budget"] if pool else 0
    tokens = sum(r["generated_tokens"] for r in pool) / max(len(pool), 1)
    what = ("oracle: the pass rate of" if how == "pass_rate" else "predicted: the scorer's mean score of")
    return (f"{what} {n} separate samples per problem ({probe_strategy(how)}'s, drawn with a seed no strategy "
            f"uses; {tokens:.0f} generated tokens per problem, counted in no strategy's compute)")


def tokens_to_match(rows: list[dict], strategy: str, accuracy: float, tokens: str = "generated_tokens") -> float | None:
    """Tokens (the rows' field `tokens`) `strategy` needs to reach `accuracy`, interpolated
    linearly in log(tokens) between its sweep points; None if it never gets there."""
    curve = sorted((r[tokens], r["accuracy"]) for r in rows if r["strategy"] == strategy)
    for (t0, a0), (t1, a1) in zip(curve, curve[1:]):
        if a0 >= accuracy:
            return t0
        if a1 >= accuracy:
            frac = (accuracy - a0) / (a1 - a0)
            return math.exp(math.log(t0) + frac * (math.log(t1) - math.log(t0)))
    return curve[0][0] if curve and curve[0][1] >= accuracy else None


def run_scale(ctx: SearchContext | None, problems: list[Problem], cfg: ScaleConfig,
              on_result: Callable[[], None] | None = None, cells: str | Path | None = None,
              setup: Callable[[], SearchContext] | None = None) -> dict:
    """The sweep (resumable through its `cells` file, see `sweep`), its summary rows, and the
    compute-optimal rows: per N, the best setting per difficulty bin within the tokens
    majority@N spends (compute_optimal.py), scored on held-out halves."""
    records = sweep(ctx, problems, cfg, on_result, cells, setup)
    if cfg.compute not in TOKENS:
        raise ValueError(f"compute must be one of {', '.join(TOKENS)}, got {cfg.compute!r}")
    key = TOKENS[cfg.compute]
    for r in records:
        r["total_tokens"] = total_tokens(r)
    rows = summarize(records)
    out = {"rows": rows, "records": records}
    if any(r["strategy"] in ("majority", "best_of_n") for r in records):
        bin_of = difficulty_bins(difficulty_of(records, cfg.difficulty), cfg.bins)
        opt = compute_optimal([r for r in records if r["strategy"] != DIFFICULTY], bin_of, seed=cfg.seed, tokens=key)
        opt["difficulty"] = difficulty_note(records, cfg.difficulty)
        out["compute_optimal"] = opt
        for budget, v in opt["budgets"].items():
            rows.append({"strategy": "compute-optimal", "budget": budget, "problems": v["problems"],
                         "accuracy": v["accuracy"], "generated_tokens": v["generated_tokens"], key: v[key],
                         "token_budget": v["token_budget"]})
    if any(r["strategy"] == "majority" for r in rows):
        for row in rows:
            need = tokens_to_match(rows, "majority", row["accuracy"], key)
            row["majority_tokens_to_match"] = need
            row["token_ratio_vs_majority"] = need / row[key] if need and row.get(key) else None
    out["compute"] = cfg.compute
    return out


def table_markdown(rows: list[dict], compute: str = "generated") -> str:
    """The summary rows as a markdown table; the majority-tokens column counts `compute`'s
    tokens (generated, or total)."""
    key = TOKENS[compute]
    head = ["strategy", "N", "accuracy", "gen tokens", "prefill tokens", "prefill/gen", "scorer tokens",
            "total tokens", "wall s", f"majority {compute} tokens for same acc."]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def f(v, fmt):
        return "" if v is None else format(v, fmt)

    # Below majority's cheapest point, the tokens it needs are at most that point's.
    majority = sorted((r[key], r["accuracy"]) for r in rows if r["strategy"] == "majority")
    floor = majority[0][1] if majority else 0.0
    for r in sorted(rows, key=lambda r: (r["strategy"], r["budget"])):
        lines.append("| " + " | ".join([
            r["strategy"] + (" (weighted vote)" if r.get("selection") == "weighted vote" else ""), str(r["budget"]),
            f(r["accuracy"], ".3f"), f(r.get("generated_tokens"), ".0f"),
            f(r.get("prefill_tokens"), ".0f"), f(r.get("prefill_per_generated"), ".2f"),
            f(r.get("scorer_tokens"), ".0f"), f(r.get("total_tokens"), ".0f"), f(r.get("wall_s"), ".2f"),
            ("" if r.get("majority_tokens_to_match") is None else
             f"{'<=' if r['accuracy'] < floor else ''}{r['majority_tokens_to_match']:.0f} "
             f"({r['token_ratio_vs_majority']:.1f}x)"),
        ]) + " |")
    return "\n".join(lines)
