"""Whole solutions: sample them from the policy and score them with a scorer.

Shared by the strategies that work on complete solutions (greedy, majority, best_of_n,
self_refine); the step-level ones grow solutions in steps.py instead.
"""
from __future__ import annotations

from ponder.generation.base import SamplingParams
from ponder.rewards.base import aggregate
from ponder.search.base import Candidate, SearchParams, SearchContext, seed_for
from ponder.search.steps import generate, root_ids
from ponder.tasks.base import Problem


def sample(ctx: SearchContext, problem: Problem, cfg: SearchParams, n: int, temperature: float,
           prompt: str | None = None, call: int = 0) -> list[Candidate]:
    """`n` complete solutions of `problem` (one prompt, so its prefill is shared), or of a
    user-text `prompt` given instead (e.g. a revision request); `call` numbers the calls of
    one search, so each draws fresh noise."""
    text = root_ids(ctx, problem) if prompt is None else prompt
    params = SamplingParams(n=n, temperature=temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens,
                            seed=seed_for(cfg.seed, problem, call), logprobs=False)
    [samples] = generate(ctx, [text], params)
    return [Candidate(s.text, ctx.task.extract_answer(s.text)) for s in samples]



def score(ctx: SearchContext, problem: Problem, candidates: list[Candidate], cfg: SearchParams,
          strategy: str) -> None:
    """Set each candidate's score: the aggregate of its step scores when the scorer scores
    steps (a PRM or a step verifier), else its outcome score (an ORM or an answer checker)."""
    if not candidates:
        return
    scorer = ctx.need_scorer(strategy)
    prompts = [ctx.task.prompt(problem)] * len(candidates)
    try:
        steps = scorer.score_steps(prompts, [ctx.task.split_steps(c.text) for c in candidates])
    except NotImplementedError:
        for c, s in zip(candidates, scorer.score_outcomes(prompts, [c.text for c in candidates])):
            c.score = float(s)
        return
    for c, s in zip(candidates, steps):
        c.step_scores = list(s)
        c.score = aggregate(c.step_scores, cfg.aggregation)
