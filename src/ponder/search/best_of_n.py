"""`best_of_n`: sample N solutions, score each with a verifier/ORM/PRM, and choose.

Naive selection takes the best-scored solution; weighted selection (`weighted=True`) sums
the scores of the solutions sharing an answer and takes the best answer (Li et al. 2023;
search-and-learn, Beeching et al. 2024). With a PRM, a solution's score is its step scores
aggregated by `aggregation` (last / min / prod / mean, see ponder.rewards.aggregate)."""
from __future__ import annotations

from ponder.search.base import SearchParams, SearchContext, register_strategy
from ponder.search.solutions import sample, score
from ponder.search.vote import choose
from ponder.tasks.base import Problem


@register_strategy("best_of_n")
def best_of_n(ctx: SearchContext, problem: Problem, cfg: SearchParams):
    ctx.need_scorer("best_of_n")
    candidates = sample(ctx, problem, cfg, n=cfg.n, temperature=cfg.temperature)
    score(ctx, problem, candidates, cfg, "best_of_n")
    return candidates, choose(candidates, cfg.weighted)
