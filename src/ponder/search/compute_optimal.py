"""Compute-optimal test-time scaling (Snell et al. 2024, §3.2 and §5.3): choose, for each
problem difficulty and budget, the strategy that does best, and check the choice on
problems it was not made on.

Difficulty is estimated per problem as in Snell et al. (§3.2): from the policy's own pass
rate over its samples (oracle difficulty, uses the gold answers), or from the scorer's mean
score of those samples (predicted difficulty, no gold answers needed). Problems are ranked
and cut into `bins` equal quantile bins, bin 0 the easiest.

Selection is two-fold: problems are split in two halves (a seeded shuffle within each bin);
the strategy per (bin, budget) is chosen on one half and scored on the other, then the
other way round, so every problem is scored by a choice made without it. Pure functions
over the sweep's records (dicts with `strategy`, `budget`, `problem`, `correct`,
`generated_tokens`).
"""
from __future__ import annotations

import random
from collections import defaultdict


def difficulty_bins(difficulty: dict[str, float], bins: int) -> dict[str, int]:
    """Problem id -> bin, by rank of `difficulty` (higher = easier, e.g. a pass rate):
    bin 0 holds the easiest 1/bins of the problems. Ties keep the ids' order."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    ranked = sorted(difficulty, key=lambda pid: -difficulty[pid])
    return {pid: min(i * bins // len(ranked), bins - 1) for i, pid in enumerate(ranked)}


def halves(bin_of: dict[str, int], seed: int = 0) -> tuple[set[str], set[str]]:
    """Two disjoint halves of the problems, balanced within each bin (seeded shuffle)."""
    rng = random.Random(seed)
    a, b = set(), set()
    by_bin: dict[int, list[str]] = defaultdict(list)
    for pid in sorted(bin_of):
        by_bin[bin_of[pid]].append(pid)
    for pids in by_bin.values():
        rng.shuffle(pids)
        a.update(pids[: len(pids) // 2])
        b.update(pids[len(pids) // 2 :])
    return a, b


def _cells(records: list[dict], problems: set[str], bin_of: dict[str, int]):
    """(bin, budget, strategy) -> [accuracy, mean generated tokens] over `problems`."""
    acc: dict[tuple, list] = defaultdict(lambda: [0, 0, 0])
    for r in records:
        if r["problem"] in problems:
            cell = acc[(bin_of[r["problem"]], r["budget"], r["strategy"])]
            cell[0] += r["correct"]
            cell[1] += r["generated_tokens"]
            cell[2] += 1
    return {k: (c / n, t / n) for k, (c, t, n) in acc.items()}


def choose_strategies(records: list[dict], problems: set[str], bin_of: dict[str, int]) -> dict[tuple, str]:
    """(bin, budget) -> the strategy with the best accuracy on `problems` (fewer tokens on a
    tie, then the name)."""
    best: dict[tuple, tuple] = {}
    for (b, budget, strategy), (acc, tokens) in _cells(records, problems, bin_of).items():
        key = (-acc, tokens, strategy)
        if (b, budget) not in best or key < best[(b, budget)]:
            best[(b, budget)] = key
    return {cell: key[2] for cell, key in best.items()}


def compute_optimal(records: list[dict], bin_of: dict[str, int], seed: int = 0) -> dict:
    """Two-fold compute-optimal selection. Returns, per budget, the held-out accuracy and
    mean generated tokens of the per-bin choice, and the choices made on each fold."""
    a, b = halves(bin_of, seed)
    by_key = {(r["strategy"], r["budget"], r["problem"]): r for r in records}
    budgets = sorted({r["budget"] for r in records})
    out: dict = {"budgets": {}, "choices": []}
    folds = [(a, b), (b, a)]
    choices = [choose_strategies(records, fit, bin_of) for fit, _ in folds]
    for fold, ((fit, held), chosen) in enumerate(zip(folds, choices)):
        out["choices"].append({f"bin{k[0]}@{k[1]}": s for k, s in sorted(chosen.items())})
    for budget in budgets:
        correct = tokens = n = 0
        for (fit, held), chosen in zip(folds, choices):
            for pid in held:
                strategy = chosen.get((bin_of[pid], budget))
                r = by_key.get((strategy, budget, pid))
                if r is None:
                    continue
                correct += r["correct"]
                tokens += r["generated_tokens"]
                n += 1
        if n:
            out["budgets"][budget] = {"accuracy": correct / n, "generated_tokens": tokens / n, "problems": n}
    return out
