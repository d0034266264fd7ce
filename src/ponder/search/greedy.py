"""`greedy`: one solution at temperature 0 - the baseline every strategy is measured against."""
from __future__ import annotations

from ponder.search.base import SearchParams, SearchContext, register_strategy
from ponder.search.solutions import sample
from ponder.tasks.base import Problem


@register_strategy("greedy")
def greedy(ctx: SearchContext, problem: Problem, cfg: SearchParams):
    return sample(ctx, problem, cfg, n=1, temperature=0.0), 0
