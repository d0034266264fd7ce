"""LLM-as-judge process labels and consensus filtering.

`LLMJudge` shows a model the problem and the numbered steps and asks for the number of the
first wrong step (0 when all are right); the reply's first integer is the verdict. It is a
`Scorer` too: `score_steps` gives 1.0 before the named step and 0.0 from it on.

`consensus` follows Zhang et al. 2025 ("The Lessons of Developing Process Reward Models in
Mathematical Reasoning", §3): Monte Carlo labels are noisy (a correct step can be followed
by failed rollouts; a wrong step by a lucky one), so keep a solution only where the MC
labels and an LLM judge agree on the position of the first error (or agree it has none).
"""
from __future__ import annotations

import re

from ponder.generation.base import Generator, SamplingParams
from ponder.rewards.base import Scorer, ScorerUsage

JUDGE_TEMPLATE = (
    "Below is a problem and a step-by-step solution with numbered steps.\n\n"
    "Problem: {question}\n\nSolution:\n{steps}\n\n"
    "Check each step in order. Which step is the first incorrect one? "
    "Reply with the step number only, or 0 if every step is correct."
)
_INT = re.compile(r"-?\d+")


def parse_verdict(text: str, n_steps: int) -> int | None | str:
    """The judge's reply as a first-error index (0-based), None for "all correct", or
    "invalid" when it names no step in range."""
    m = _INT.search(text)
    if m is None:
        return "invalid"
    k = int(m.group())
    if k == 0:
        return None
    if 1 <= k <= n_steps:
        return k - 1
    return "invalid"


class LLMJudge(Scorer):
    """A generative judge over any `Generator` (greedy, short replies)."""

    def __init__(self, generator: Generator, template: str = JUDGE_TEMPLATE, max_tokens: int = 16):
        self.generator, self.template, self.max_tokens = generator, template, max_tokens
        self.usage = ScorerUsage()

    def prompt(self, question: str, steps: list[str]) -> str:
        numbered = "\n".join(f"Step {i + 1}: {s}" for i, s in enumerate(steps))
        return self.template.format(question=question, steps=numbered)

    def first_errors(self, questions: list[str], steps: list[list[str]]) -> list[int | None | str]:
        """Verdict per solution: first-error index, None (all correct) or "invalid"."""
        prompts = [self.prompt(q, s) for q, s in zip(questions, steps, strict=True)]
        before = self.generator.usage.copy()
        outs = self.generator.generate(prompts, SamplingParams(n=1, temperature=0.0, max_tokens=self.max_tokens))
        spent = self.generator.usage - before
        self.usage.tokens += spent.prefill_tokens + spent.generated_tokens
        self.usage.calls += 1
        return [parse_verdict(o[0].text, len(s)) for o, s in zip(outs, steps)]

    def score_steps(self, prompts: list[str], steps: list[list[str]]) -> list[list[float]]:
        out = []
        for verdict, st in zip(self.first_errors(prompts, steps), steps):
            cut = len(st) if verdict is None or verdict == "invalid" else verdict
            out.append([1.0 if i < cut else 0.0 for i in range(len(st))])
        return out


def consensus(first_error_a: int | None, first_error_b: int | None | str) -> bool:
    """Keep a sample iff both labellers put the first error at the same step (or both say
    there is none). An invalid judge reply never agrees."""
    return first_error_b != "invalid" and first_error_a == first_error_b
