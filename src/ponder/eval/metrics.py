"""Evaluation metrics as pure functions: unbiased pass@k, majority vote (maj@k)."""
from __future__ import annotations


import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimator (Chen et al. 2021, "Evaluating Large Language Models Trained
    on Code", eq. 1): 1 - C(n-c, k) / C(n, k), computed as a stable product.
    n: samples drawn, c: correct among them, k: budget (k <= n)."""
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if k > n:
        raise ValueError(f"pass_at_k: k={k} exceeds the number of samples n={n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def majority_vote(answers: list[str | None]) -> str | None:
    """Most frequent non-empty answer (self-consistency, Wang et al. 2022); ties go to the
    answer seen first, so the result is deterministic. None if no sample has an answer.
    The unit-weight case of `ponder.search.vote.weighted_winner`."""
    from ponder.search.vote import weighted_winner

    keys = [a if a != "" else None for a in answers]
    return weighted_winner(keys, [1.0] * len(keys))


def mean(xs) -> float:
    xs = list(xs)
    return float(sum(xs) / len(xs)) if xs else float("nan")
