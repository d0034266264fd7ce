"""`dvts`: diverse verifier tree search (Beeching et al. 2024, search-and-learn).

Beam search at large N tends to collapse onto one high-scoring prefix. DVTS splits the
budget into N/M independent subtrees: each starts at the prompt, expands its one open
node M times per step and keeps the best child by PRM score (a greedy walk on the PRM),
until the kept child finishes. As in search-and-learn's `_dvts`, each subtree hands back
all M children of its last expansion (the finished one it kept and its M - 1 siblings,
finished or not), so the search returns N candidates and the answer is chosen among all N:
the best-scored one, or the weighted vote over N. All subtrees advance together, one engine
call per depth."""
from __future__ import annotations

from ponder.search.base import SearchContext, SearchParams, check_width, register_strategy
from ponder.search.steps import Node, StepPolicy
from ponder.search.vote import choose
from ponder.tasks.base import Problem


@register_strategy("dvts")
def dvts(ctx: SearchContext, problem: Problem, cfg: SearchParams):
    trees = check_width(cfg, "dvts")
    ctx.need_scorer("dvts")
    policy = StepPolicy(ctx, problem, cfg)
    # The first step of every subtree comes from the prompt: one prompt with n=N, cut into
    # N/M groups of M, so the prompt is prefilled once rather than once per subtree.
    [first] = policy.expand([Node()], cfg.n)
    groups = [first[t * cfg.beam_width : (t + 1) * cfg.beam_width] for t in range(trees)]
    last: list[list[Node]] = [[] for _ in range(trees)]  # each subtree's latest M siblings
    open_ = list(range(trees))
    while open_:
        policy.score([c for group in groups for c in group])
        for i, group in zip(open_, groups):
            last[i] = group
        # a subtree goes on from its best child (the first best on a tie) until that finishes
        leaves = {i: max(last[i], key=lambda c: c.score) for i in open_}
        open_ = [i for i in open_ if not leaves[i].done]
        groups = policy.expand([leaves[i] for i in open_], cfg.beam_width)
    candidates = [policy.candidate(node) for group in last for node in group]
    return candidates, choose(candidates, cfg.weighted)
