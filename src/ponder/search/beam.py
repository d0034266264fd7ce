"""`beam`: step-level beam search guided by a PRM (Snell et al. 2024, "Scaling LLM
Test-Time Compute Optimally can be More Effective than Scaling Model Parameters", §5.1;
search-and-learn's `beam_search`, Beeching et al. 2024).

With N beams and beam width M:

1. sample N first steps from the prompt (one prompt, n=N);
2. score every partial solution with the PRM (its step scores aggregated, `last` by
   default) and keep the N/M best unfinished ones; finished ones are set aside;
3. expand each kept beam M times (one prompt per beam, n=M, so its text is prefilled once)
   and go to 2, until N solutions are finished, none is left open, or `max_steps`.

The search returns at most N candidates: the N best-scored finished solutions (as
search-and-learn keeps `completed_beams[:n]`). One round can finish up to N beams at once, so
the finished pile can overshoot N (N - 1 finished, then a round that finishes several), and
beams still open when N have finished are unfinished solutions, not candidates; both would
let a larger pool than N vote. The answer is chosen among the candidates by the best score or
the weighted vote. (A solution that reaches `max_steps` or `max_tokens` is closed, so it counts
as finished.) `lookahead.py` reuses this loop with a different way of scoring a step.
"""
from __future__ import annotations

from typing import Callable

from ponder.search.base import SearchParams, SearchContext, check_width, register_strategy
from ponder.search.steps import Node, StepPolicy
from ponder.search.vote import choose
from ponder.tasks.base import Problem

# score(policy, nodes): set node.score (and node.step_scores) for each node.
ScoreFn = Callable[[StepPolicy, "list[Node]"], None]


def beam_search(ctx: SearchContext, problem: Problem, cfg: SearchParams, name: str, score: ScoreFn):
    keep = check_width(cfg, name)
    ctx.need_scorer(name)
    policy = StepPolicy(ctx, problem, cfg)
    finished: list[Node] = []
    [children] = policy.expand([Node()], cfg.n)
    while True:
        score(policy, children)
        finished += [c for c in children if c.done]
        open_ = sorted((c for c in children if not c.done), key=lambda c: -c.score)[:keep]
        if not open_ or len(finished) >= cfg.n:
            break
        children = [c for group in policy.expand(open_, cfg.beam_width) for c in group]
    # the N best finished ones (a stable sort: equal scores keep the order they finished in)
    best = sorted(finished, key=lambda c: -c.score)[:cfg.n]
    candidates = [policy.candidate(node) for node in best]
    return candidates, choose(candidates, cfg.weighted)


@register_strategy("beam")
def beam(ctx: SearchContext, problem: Problem, cfg: SearchParams):
    return beam_search(ctx, problem, cfg, "beam", lambda policy, nodes: policy.score(nodes))
