"""Compute-optimal test-time scaling (Snell et al. 2024, §3.2 and §5.3): choose, for each
problem difficulty and each generation budget, the strategy setting that does best within
that budget, and check the choice on problems it was not made on.

Difficulty is estimated per problem as in Snell et al. (§3.2): from the policy's own pass
rate over its samples (oracle difficulty, uses the gold answers), or from the scorer's mean
score of those samples (predicted difficulty, no gold answers needed). Problems are cut into
`bins` quantile bins by that estimate, bin 0 the easiest; problems with equal difficulty
always share a bin.

Budgets are compared at equal generated tokens, not at equal N: Snell et al. compare
strategies at an equal generation budget (§5.1: lookahead with k steps costs N(k + 1)
samples' worth, not N). A *setting* is a (strategy, N) point of the sweep; for each bin and
each token budget B, the chosen setting is the most accurate one whose mean generated tokens
per problem fit B. The budgets default to what majority@N (self-consistency, Snell et al.'s
parallel-sampling baseline) spends at each N of the sweep, so the compute-optimal row at N
answers "what is best for the tokens N samples cost". Measured tokens, not the paper's
sample counts, are the unit here: every strategy's engine reports them exactly.

Selection is two-fold cross-fitting: problems are split in two halves (a seeded shuffle
within each bin); the setting per (bin, budget) is chosen on one half - its accuracy and
its token cost both measured there - and scored on the other, then the other way round, so
every problem is scored by a choice made without it. Pure functions over the sweep's
records (dicts with `strategy`, `budget`, `problem`, `correct`, `generated_tokens`).
"""
from __future__ import annotations

import random
from collections import defaultdict

Setting = tuple[str, int]  # (strategy, N)


def difficulty_bins(difficulty: dict[str, float], bins: int) -> dict[str, int]:
    """Problem id -> bin by quantile of `difficulty` (higher = easier, e.g. a pass rate):
    bin 0 holds the easiest 1/bins of the problems. A problem's quantile is its mid-rank
    among the n problems (the mean rank of its group of equal values, 0 = easiest) over n,
    and its bin floor(quantile * bins): without ties this is rank * bins // n, and equal
    difficulties always land in the same bin, whatever the order of the ids."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    values = sorted(difficulty.values(), reverse=True)
    n = len(values)
    first: dict[float, int] = {}
    last: dict[float, int] = {}
    for rank, v in enumerate(values):
        first.setdefault(v, rank)
        last[v] = rank
    return {pid: min(int((first[v] + last[v]) / 2 * bins // n), bins - 1) for pid, v in difficulty.items()}


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


def token_budgets(records: list[dict], tokens: str = "generated_tokens") -> dict[int, float]:
    """N -> mean tokens per problem of majority@N (of best_of_n@N when the sweep has no
    majority): the token budgets compute-optimal selection is compared at. `tokens`: the
    record field counted, "generated_tokens" or "total_tokens" (generated + prefill +
    scorer, `ponder scale --compute total`)."""
    ref = "majority" if any(r["strategy"] == "majority" for r in records) else "best_of_n"
    spent: dict[int, list[int]] = defaultdict(list)
    for r in records:
        if r["strategy"] == ref:
            spent[r["budget"]].append(r[tokens])
    if not spent:
        raise ValueError("compute-optimal selection needs 'majority' or 'best_of_n' in the sweep to set token budgets")
    return {n: sum(t) / len(t) for n, t in sorted(spent.items())}


def _cells(records: list[dict], problems: set[str], bin_of: dict[str, int],
           tokens: str = "generated_tokens") -> dict[int, dict[Setting, tuple]]:
    """bin -> setting -> (accuracy, mean tokens) over `problems`."""
    acc: dict[tuple, list] = defaultdict(lambda: [0, 0, 0])
    for r in records:
        if r["problem"] in problems:
            cell = acc[(bin_of[r["problem"]], (r["strategy"], r["budget"]))]
            cell[0] += r["correct"]
            cell[1] += r[tokens]
            cell[2] += 1
    out: dict[int, dict[Setting, tuple]] = defaultdict(dict)
    for (b, setting), (c, t, n) in acc.items():
        out[b][setting] = (c / n, t / n)
    return out


def choose_settings(records: list[dict], problems: set[str], bin_of: dict[str, int],
                    token_budget: float, tokens: str = "generated_tokens") -> dict[int, Setting]:
    """bin -> the setting with the best accuracy on `problems` among those whose mean
    generated tokens there fit `token_budget` (fewer tokens on a tie, then the name). A bin
    where nothing fits gets its cheapest setting (it overspends; the report shows its
    measured tokens)."""
    chosen = {}
    for b, cells in _cells(records, problems, bin_of, tokens).items():
        fits = {s: v for s, v in cells.items() if v[1] <= token_budget + 1e-9}
        if fits:
            chosen[b] = min(fits, key=lambda s: (-fits[s][0], fits[s][1], s))
        else:
            chosen[b] = min(cells, key=lambda s: (cells[s][1], s))
    return chosen


def compute_optimal(records: list[dict], bin_of: dict[str, int], budgets: dict[int, float] | None = None,
                    seed: int = 0, tokens: str = "generated_tokens") -> dict:
    """Two-fold compute-optimal selection at equal tokens (`tokens`: the record field
    counted, generated tokens by default; the returned budgets report theirs under the same
    name, and the generated tokens too).

    `budgets`: label N -> token budget per problem (default `token_budgets(records)`).
    Returns {"budgets": {N: {token_budget, accuracy, generated_tokens, problems}}, with the
    held-out accuracy and mean generated tokens of the per-bin choices, and "choices": per
    fold, {"bin<b>@<N>": "<strategy>@<N'>"} as chosen on that fold's fitting half}."""
    budgets = token_budgets(records, tokens) if budgets is None else budgets
    a, b = halves(bin_of, seed)
    by_key = {(r["strategy"], r["budget"], r["problem"]): r for r in records}
    folds = [(a, b), (b, a)]
    out: dict = {"budgets": {}, "choices": [{} for _ in folds]}
    for label, tokens_allowed in budgets.items():
        correct = spent = generated = n = 0
        for fold, (fit, held) in enumerate(folds):
            chosen = choose_settings(records, fit, bin_of, tokens_allowed, tokens)
            for k, (strategy, budget) in sorted(chosen.items()):
                out["choices"][fold][f"bin{k}@{label}"] = f"{strategy}@{budget}"
            for pid in held:
                setting = chosen.get(bin_of[pid])
                r = by_key.get((*setting, pid)) if setting else None
                if r is None:
                    continue
                correct += r["correct"]
                spent += r[tokens]
                generated += r["generated_tokens"]
                n += 1
        if n:
            out["budgets"][label] = {"token_budget": tokens_allowed, "accuracy": correct / n,
                                     tokens: spent / n, "generated_tokens": generated / n, "problems": n}
    return out
