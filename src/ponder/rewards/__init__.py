"""Scorers behind one interface (base.py): task verifiers, outcome and process reward
models (ponder's own, model.py; published Math-Shepherd and Qwen2.5-Math-PRM, published.py),
LLM judges."""
from ponder.rewards.base import AGGREGATIONS, Scorer, ScorerUsage, VerifierScorer, aggregate

__all__ = ["AGGREGATIONS", "Scorer", "ScorerUsage", "VerifierScorer", "aggregate"]
