"""`mcts`: Monte Carlo tree search over steps with PRM values (TS-LLM, Feng et al. 2023;
rStar, Qi et al. 2024; AlphaZero-style PUCT, Silver et al. 2017).

Nodes are partial solutions, edges are steps. Each of the N simulations:

1. select: from the root, descend through expanded nodes by PUCT,
       a* = argmax_a  Q(s, a) + c_puct * P(s, a) * sqrt(N(s)) / (1 + N(s, a)),
   with a uniform prior P = 1/M (steps are sampled from the policy already, so their
   frequency is their prior) and Q the mean backed-up value, or the child's own PRM score
   while it is unvisited (TS-LLM's value initialisation);
2. expand and evaluate: an unexpanded open node gets M children (one prompt, n=M: its text
   is prefilled once), each scored by the PRM; the walk continues into the best-scored
   child and expands again, until a solution finishes (the PRM plays the rollout policy,
   so every simulation ends in a complete solution);
3. back up: the finished solution's score is added to every node on the path.

Finished solutions are the candidates; the answer is the best-scored one or the weighted
vote. A simulation that selects an already finished leaf generates nothing and only backs
up its value again, so compute grows with the tree, not with N alone.
"""
from __future__ import annotations

import math

from ponder.search.base import SearchContext, SearchParams, register_strategy
from ponder.search.steps import Node, StepPolicy
from ponder.search.vote import choose
from ponder.tasks.base import Problem


def puct(parent: Node, child: Node, c_puct: float) -> float:
    """PUCT score of `child` under `parent` (uniform prior over the parent's children)."""
    q = child.value_sum / child.visits if child.visits else child.score
    prior = 1.0 / len(parent.children)
    return q + c_puct * prior * math.sqrt(parent.visits) / (1 + child.visits)


def run_mcts(policy: StepPolicy, cfg: SearchParams) -> tuple[Node, list[Node]]:
    """`cfg.n` simulations from a fresh root; returns (root, finished leaves in the order
    found). Every node on a simulation's path gets visits += 1 and value_sum += the value of
    the finished solution it reached (the leaf's aggregated PRM score)."""
    root = Node()
    finished: list[Node] = []
    for _ in range(cfg.n):
        node, path = root, [root]
        while node.children and not node.done:  # 1. select
            node = max(node.children, key=lambda c: puct(path[-1], c, cfg.c_puct))
            path.append(node)
        while not node.done:  # 2. expand and evaluate, down to a finished solution
            [node.children] = policy.expand([node], cfg.beam_width)
            policy.score(node.children)
            node = max(node.children, key=lambda c: c.score)
            path.append(node)
        if all(node is not f for f in finished):
            finished.append(node)
        for visited in path:  # 3. back up
            visited.visits += 1
            visited.value_sum += node.score
    return root, finished


@register_strategy("mcts")
def mcts(ctx: SearchContext, problem: Problem, cfg: SearchParams):
    if cfg.n < 1 or cfg.beam_width < 1:
        raise ValueError(f"mcts: n (simulations) and beam_width (children per node) must be >= 1, "
                         f"got n={cfg.n}, beam_width={cfg.beam_width}")
    ctx.need_scorer("mcts")
    policy = StepPolicy(ctx, problem, cfg)
    _, finished = run_mcts(policy, cfg)
    candidates = [policy.candidate(leaf) for leaf in finished]
    return candidates, choose(candidates, cfg.weighted)
