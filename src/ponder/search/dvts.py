"""`dvts`: diverse verifier tree search (Beeching et al. 2024, search-and-learn).

Beam search at large N tends to collapse onto one high-scoring prefix. DVTS splits the
budget into N/M independent subtrees: each starts at the prompt, expands its one open
node M times per step and keeps the best child by PRM score (a greedy walk on the PRM),
until it finishes. The N/M leaves are the candidates; the answer is the best-scored one or
the weighted vote. All subtrees advance together, one engine call per depth."""
from __future__ import annotations

from ponder.search.base import SearchConfig, SearchContext, check_width, register_strategy
from ponder.search.steps import Node, StepPolicy
from ponder.search.vote import choose
from ponder.tasks.base import Problem


@register_strategy("dvts")
def dvts(ctx: SearchContext, problem: Problem, cfg: SearchConfig):
    trees = check_width(cfg, "dvts")
    ctx.need_scorer("dvts")
    policy = StepPolicy(ctx, problem, cfg)
    # The first step of every subtree comes from the prompt: one prompt with n=N, cut into
    # N/M groups of M, so the prompt is prefilled once rather than once per subtree.
    [first] = policy.expand([Node()], cfg.n)
    groups = [first[t * cfg.beam_width : (t + 1) * cfg.beam_width] for t in range(trees)]
    leaves = [Node() for _ in range(trees)]
    open_ = list(range(trees))
    while open_:
        policy.score([c for group in groups for c in group])
        for i, group in zip(open_, groups):
            leaves[i] = max(group, key=lambda c: c.score)  # first best on a tie
        open_ = [i for i, leaf in enumerate(leaves) if not leaf.done]
        groups = policy.expand([leaves[i] for i in open_], cfg.beam_width)
    candidates = [policy.candidate(leaf) for leaf in leaves]
    return candidates, choose(candidates, cfg.weighted)
