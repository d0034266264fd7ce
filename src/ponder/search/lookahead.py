"""`lookahead`: beam search whose steps are judged by where they lead (Snell et al. 2024,
§5.1 "lookahead search"; search-and-learn's variant of beam search).

Each candidate step is rolled out greedily (temperature 0) for `lookahead` more steps and
the PRM scores the end of that rollout; the beam keeps the candidate step itself, not the
rollout. The rollouts' tokens are generated compute like any other and are counted (Snell
et al. count them too, which is why lookahead rarely pays off at equal compute)."""
from __future__ import annotations

from ponder.search.base import SearchParams, SearchContext, register_strategy
from ponder.search.beam import beam_search
from ponder.search.steps import Node, StepPolicy
from ponder.tasks.base import Problem


def lookahead_score(k: int):
    def score(policy: StepPolicy, nodes: list[Node]) -> None:
        rollouts = policy.rollout(nodes, k)
        policy.score(rollouts)
        for node, ahead in zip(nodes, rollouts):
            node.score = ahead.score
            # A finished rollout tells its step's fate; the node keeps only its own steps' scores.
            node.step_scores = ahead.step_scores[: len(policy.ctx.task.split_steps(node.text))]
    return score


@register_strategy("lookahead")
def lookahead(ctx: SearchContext, problem: Problem, cfg: SearchParams):
    if cfg.lookahead < 0:
        raise ValueError(f"lookahead: lookahead must be >= 0 steps, got {cfg.lookahead}")
    return beam_search(ctx, problem, cfg, "lookahead", lookahead_score(cfg.lookahead))
