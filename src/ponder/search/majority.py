"""`majority`: self-consistency (Wang et al. 2022, "Self-Consistency Improves Chain of
Thought Reasoning in Language Models"): sample N solutions, answer with the most frequent
final answer. Needs no scorer; each candidate's score is its answer's vote share."""
from __future__ import annotations

from ponder.search.base import SearchParams, SearchContext, register_strategy
from ponder.search.solutions import sample
from ponder.search.vote import majority as vote
from ponder.tasks.base import Problem


@register_strategy("majority")
def majority(ctx: SearchContext, problem: Problem, cfg: SearchParams):
    candidates = sample(ctx, problem, cfg, n=cfg.n, temperature=cfg.temperature)
    return candidates, vote(candidates)
