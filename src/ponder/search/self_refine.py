"""`self_refine`: the model revises its own answer (Madaan et al. 2023, "Self-Refine:
Iterative Refinement with Self-Feedback", in its simplest form: one prompt that shows the
previous attempt and asks for a corrected solution).

Round 0 samples a solution; each of the N-1 further rounds prompts the model with the
problem and its latest attempt. Every attempt is a candidate. Without a scorer the answer
is the last attempt's (the method as published); with one, the best-scored attempt's.
Models not trained to revise (the tiny arith models) gain nothing here; the strategy is
for instruction-tuned models.
"""
from __future__ import annotations

from ponder.search.base import SearchParams, SearchContext, register_strategy
from ponder.search.solutions import sample, score
from ponder.search.vote import argmax
from ponder.tasks.base import Problem

REVISE = (
    "{prompt}\n\nHere is a previous attempt:\n{attempt}\n\n"
    "Check it step by step. If it has a mistake, write a corrected solution; otherwise repeat it. "
    "Finish with the final answer.\n"
)


@register_strategy("self_refine")
def self_refine(ctx: SearchContext, problem: Problem, cfg: SearchParams):
    if cfg.n < 1:
        raise ValueError(f"self_refine: n (attempts) must be >= 1, got {cfg.n}")
    prompt = ctx.task.prompt(problem)
    attempts = sample(ctx, problem, cfg, n=1, temperature=cfg.temperature)
    for round_ in range(1, cfg.n):
        request = REVISE.format(prompt=prompt.strip(), attempt=attempts[-1].text.strip())
        attempts += sample(ctx, problem, cfg, n=1, temperature=cfg.temperature, prompt=request, call=round_)
    if ctx.scorer is None:
        return attempts, len(attempts) - 1
    score(ctx, problem, attempts, cfg, "self_refine")
    return attempts, argmax([a.score for a in attempts])
