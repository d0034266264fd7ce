"""Test-time scaling: search strategies behind one registry, with compute accounting.

    from ponder.search import SearchConfig, SearchContext, search
    result = search("beam", SearchContext(generator, task, scorer), problem, SearchConfig(n=16))

Strategies (one module each): greedy, majority, best_of_n, beam, dvts, lookahead, mcts,
budget_forcing, self_refine. Sweeps over budgets and compute-optimal selection live in
scale.py and compute_optimal.py.
"""
from ponder.search.base import (
    STRATEGIES,
    Candidate,
    Compute,
    SearchConfig,
    SearchContext,
    SearchResult,
    get_strategy,
    register_strategy,
    search,
)

# Imported for their side effect: each module registers its strategy.
from ponder.search import (  # noqa: E402,F401  isort: skip
    best_of_n, beam, budget_forcing, dvts, greedy, lookahead, majority, mcts, self_refine,
)

__all__ = ["STRATEGIES", "Candidate", "Compute", "SearchConfig", "SearchContext", "SearchResult", "get_strategy",
           "register_strategy", "search"]
