"""Test-time scaling: search strategies behind one registry, with compute accounting.

    from ponder.search import SearchParams, SearchContext, search
    result = search("beam", SearchContext(generator, task, scorer), problem, SearchParams(n=16))

Strategies (one module each, all listed in STRATEGY_MODULES and imported here, so the
registry is complete whatever the caller imported): greedy, majority, best_of_n, beam, dvts,
lookahead, mcts, budget_forcing, self_refine. Sweeps over budgets and compute-optimal
selection live in scale.py and compute_optimal.py.
"""
import importlib

from ponder.search.base import (
    STRATEGIES,
    Candidate,
    Compute,
    SearchContext,
    SearchParams,
    SearchResult,
    get_strategy,
    register_strategy,
    search,
)

STRATEGY_MODULES = ("greedy", "majority", "best_of_n", "beam", "dvts", "lookahead", "mcts", "budget_forcing",
                    "self_refine")
"""every module of ponder.search that registers a strategy"""

for _module in STRATEGY_MODULES:
    importlib.import_module(f"ponder.search.{_module}")

__all__ = ["STRATEGIES", "STRATEGY_MODULES", "Candidate", "Compute", "SearchContext", "SearchParams",
           "SearchResult", "get_strategy", "register_strategy", "search"]
