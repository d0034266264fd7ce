"""Choosing one answer among candidates: majority vote, best score, weighted vote.

Pure functions over candidates' answers and scores. Answers are grouped by a normal form
(numbers compared as numbers, so "12" and "12.0" vote together; anything else as stripped
text). `weighted_winner` is the one weighted vote of the project: search strategies and the
reward-model evaluation (ponder.eval.rm) both call it.
"""
from __future__ import annotations

from ponder.search.base import Candidate
from ponder.tasks.answers import normalize_number


def answer_key(answer: str | None) -> str | None:
    """The normal form two equal answers share; None for a missing answer."""
    if answer is None or not answer.strip():
        return None
    return normalize_number(answer) or answer.strip()


def majority(candidates: list[Candidate]) -> int | None:
    """Self-consistency (Wang et al. 2022): the most frequent answer wins; ties go to the
    answer seen first. Sets each candidate's score to its answer's vote share. Returns the
    index of the first candidate with the winning answer (None if no candidate answers)."""
    return weighted_vote(candidates, [1.0] * len(candidates), set_scores=True)


def vote_totals(keys: list[str | None], weights: list[float]) -> dict[str, float]:
    """Summed weight per key, in order of first appearance; None keys (no answer) abstain."""
    totals: dict[str, float] = {}
    for key, w in zip(keys, weights, strict=True):
        if key is not None:
            totals[key] = totals.get(key, 0.0) + w
    return totals


def weighted_winner(keys: list[str | None], weights: list[float]) -> str | None:
    """Weighted best-of-N (Li et al. 2023, "Making Large Language Models Better Reasoners
    with Step-Aware Verifier"; search-and-learn's `weighted` selection): the key whose
    weights sum highest; ties go to the key seen first; None when no key is given. With unit
    weights this is the majority vote (self-consistency, Wang et al. 2022)."""
    totals = vote_totals(keys, weights)
    return max(totals, key=totals.get) if totals else None  # dicts keep first-seen order


def weighted_vote(candidates: list[Candidate], weights: list[float], set_scores: bool = False) -> int | None:
    """`weighted_winner` over candidates' answers. Returns the index of the winning answer's
    best-weighted candidate (the best weight overall when no candidate answers)."""
    keys = [answer_key(c.answer) for c in candidates]
    totals = vote_totals(keys, weights)
    if not totals:
        return argmax(weights) if candidates else None
    if set_scores:
        total = sum(totals.values())
        for c, key in zip(candidates, keys):
            c.score = totals[key] / total if key is not None else 0.0
    winner = weighted_winner(keys, weights)
    members = [i for i, key in enumerate(keys) if key == winner]
    return max(members, key=lambda i: (weights[i], -i))


def argmax(scores: list[float]) -> int | None:
    """Index of the largest score (the first on a tie), None for no scores."""
    if not scores:
        return None
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


def choose(candidates: list[Candidate], weighted: bool) -> int | None:
    """Naive best-of-N (the best-scored candidate) or the weighted vote."""
    scores = [c.score if c.score is not None else 0.0 for c in candidates]
    return weighted_vote(candidates, scores) if weighted else argmax(scores)
