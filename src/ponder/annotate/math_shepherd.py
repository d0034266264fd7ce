"""Math-Shepherd Monte Carlo process labels (Wang et al. 2023, "Math-Shepherd", §3.3).

For a solution with steps s_1..s_K, every prefix s_1..s_i (i < K) is completed k times by
the policy. The step's label is

    hard:  y_i = 1 if any completion reaches the gold answer else 0      (hard estimation)
    soft:  y_i = (completions reaching the gold answer) / k               (soft estimation)

The last step needs no rollouts: the prefix is the whole solution, so its label is the
solution's own correctness. Cost: (K - 1) * k rollouts per solution, whatever its outcome.
"""
from __future__ import annotations

from dataclasses import dataclass

from ponder.annotate.rollouts import complete_states, mc_estimate
from ponder.generation.base import Generator
from ponder.tasks.base import Problem, Task


@dataclass
class ProcessLabels:
    """Per-step labels of one solution by one method."""

    soft: list[float]
    """estimated probability that step i is correct (MC(prefix through step i))"""
    rollouts: int
    """rollouts spent on this solution"""
    tokens: int
    """tokens generated for those rollouts"""

    @property
    def hard(self) -> list[bool]:
        return [s > 0 for s in self.soft]

    @property
    def first_error(self) -> int | None:
        """Index of the first step labelled wrong (hard label 0), None if every step is right."""
        return next((i for i, s in enumerate(self.soft) if s <= 0), None)


def first_error_from_labels(labels: list[float] | list[bool], threshold: float = 0.0) -> int | None:
    """First step whose label is at or below `threshold` (0 for hard MC labels), or None."""
    return next((i for i, x in enumerate(labels) if float(x) <= threshold), None)


def math_shepherd(
    generator: Generator,
    task: Task,
    solutions: list[tuple[Problem, list[str], bool]],
    k: int = 8,
    temperature: float = 1.0,
    max_tokens: int = 256,
    seed: int = 0,
) -> list[ProcessLabels]:
    """Label every (problem, steps, correct) solution; all prefixes of all solutions are
    completed in one batched call."""
    states, owner = [], []
    for j, (problem, steps, _) in enumerate(solutions):
        for i in range(1, len(steps)):
            states.append((problem, steps[:i]))
            owner.append((j, i - 1))
    rollouts = complete_states(generator, task, states, k, temperature, max_tokens, seed)
    out = [ProcessLabels([0.0] * len(steps), 0, 0) for _, steps, _ in solutions]
    for (j, i), rolls in zip(owner, rollouts):
        out[j].soft[i] = mc_estimate(rolls)
        out[j].rollouts += len(rolls)
        out[j].tokens += sum(r.num_tokens for r in rolls)
    for j, (_, steps, correct) in enumerate(solutions):
        if steps:
            out[j].soft[-1] = 1.0 if correct else 0.0
    return out
