"""The scorer contract: one interface for verifiers, ORMs, PRMs and judges.

    score_outcomes(prompts, completions)  -> list[float]        one score per completion
    score_steps(prompts, steps)           -> list[list[float]]  one score per step

`prompts` are the task prompts (`task.prompt(problem)`), `completions` the generated text,
`steps` each completion already split into steps (`task.split_steps`). Scores are
probabilities of being correct in [0, 1]. Search strategies and RL depend on this interface
only, so a verifier, a trained PRM and a scripted test scorer are interchangeable.

Every scorer counts the tokens it pushed through a model in `usage` (0 for verifiers), so
search strategies can report scorer compute beside generation compute.
"""
from __future__ import annotations

from dataclasses import dataclass

from ponder.tasks.base import Problem, Task


@dataclass
class ScorerUsage:
    tokens: int = 0
    """tokens pushed through a scoring model (0 for rule-based verifiers)"""
    calls: int = 0

    def copy(self) -> "ScorerUsage":
        return ScorerUsage(self.tokens, self.calls)


class Scorer:
    """Base class. A scorer implements `score_steps`, `score_outcomes`, or both."""

    usage: ScorerUsage

    def score_outcomes(self, prompts: list[str], completions: list[str]) -> list[float]:
        raise NotImplementedError(f"{type(self).__name__} does not score outcomes")

    def score_steps(self, prompts: list[str], steps: list[list[str]]) -> list[list[float]]:
        raise NotImplementedError(f"{type(self).__name__} does not score steps")

    def start_search(self, prompt: str) -> None:
        """A new search of `prompt` begins: a scorer that keeps what it computed per prompt
        (the step verifiers) forgets it, so each search pays for its own scoring and a sweep's
        cells do not share compute. Nothing to do for the others."""


AGGREGATIONS = ("last", "min", "prod", "mean")


def aggregate(step_scores: list[float], how: str = "last") -> float:
    """One solution score from its step scores.

    `prod` is PRM800K's choice (Lightman et al. 2023, §2.6: the probability that every step
    is correct); `min` is the weakest step; `last` is the score of the final step, which
    search-and-learn (Beeching et al. 2024) found best for PRMs trained on Monte Carlo labels,
    since an MC label already estimates the chance of reaching the right answer from there.
    An empty solution scores 0."""
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}: expected one of {', '.join(AGGREGATIONS)}")
    if not step_scores:
        return 0.0
    if how == "last":
        return float(step_scores[-1])
    if how == "min":
        return float(min(step_scores))
    if how == "mean":
        return float(sum(step_scores) / len(step_scores))
    out = 1.0
    for s in step_scores:
        out *= s
    return float(out)


class VerifierScorer(Scorer):
    """The task's own checks as a scorer: `is_correct` for outcomes (needs the gold answer)
    and, where the task has an exact step checker, `check_steps` for steps (1.0 for a correct
    step, 0.0 for the first wrong one and everything after it).

    `problems` are the problems that will be scored; a prompt is matched to its problem by
    `task.prompt(problem)`."""

    def __init__(self, task: Task, problems: list[Problem]):
        self.task = task
        self.by_prompt = {task.prompt(p): p for p in problems}
        self.usage = ScorerUsage()

    def _problem(self, prompt: str) -> Problem:
        try:
            return self.by_prompt[prompt]
        except KeyError:
            raise KeyError(f"VerifierScorer: prompt not among the problems it was given: {prompt[:80]!r}") from None

    def score_outcomes(self, prompts: list[str], completions: list[str]) -> list[float]:
        self.usage.calls += 1
        return [float(self.task.is_correct(self._problem(p), c)) for p, c in zip(prompts, completions, strict=True)]

    def score_steps(self, prompts: list[str], steps: list[list[str]]) -> list[list[float]]:
        if not self.task.has_step_checker:
            raise NotImplementedError(f"task {self.task.name!r} has no exact step checker to score steps with")
        self.usage.calls += 1
        out = []
        for p, st in zip(prompts, steps, strict=True):
            check = self.task.check_steps(self._problem(p), st)
            out.append([float(x) for x in check.labels])
        return out
