"""Choosing one answer among candidates: majority vote, best score, weighted vote.

Pure functions over candidates' answers and scores. Answers are grouped by a normal form
(numbers compared as numbers, so "12" and "12.0" vote together; anything else as stripped
text).
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


def weighted_vote(candidates: list[Candidate], weights: list[float], set_scores: bool = False) -> int | None:
    """Weighted best-of-N (Li et al. 2023, "Making Large Language Models Better Reasoners
    with Step-Aware Verifier"; search-and-learn's `weighted` selection): the answer whose
    candidates' weights sum highest wins. Returns the index of that answer's best-weighted
    candidate; ties between answers go to the one seen first."""
    totals: dict[str, float] = {}
    for c, w in zip(candidates, weights, strict=True):
        key = answer_key(c.answer)
        if key is not None:
            totals[key] = totals.get(key, 0.0) + w
    if not totals:
        return argmax(weights) if candidates else None
    if set_scores:
        total = sum(totals.values())
        for c in candidates:
            key = answer_key(c.answer)
            c.score = totals[key] / total if key is not None else 0.0
    best = max(totals.values())
    winner = next(answer_key(c.answer) for c in candidates if totals.get(answer_key(c.answer)) == best)
    members = [i for i, c in enumerate(candidates) if answer_key(c.answer) == winner]
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
