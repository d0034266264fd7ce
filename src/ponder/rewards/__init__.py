"""Scorers behind one interface (base.py): task verifiers, outcome and process reward
models, LLM judges."""
from ponder.rewards.base import AGGREGATIONS, Scorer, ScorerUsage, VerifierScorer, aggregate

__all__ = ["AGGREGATIONS", "Scorer", "ScorerUsage", "VerifierScorer", "aggregate"]
