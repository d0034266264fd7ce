"""Evaluation: metrics (pass@k, maj@k) and the `ponder eval` driver."""
from ponder.eval.evaluate import EvalConfig, evaluate
from ponder.eval.metrics import majority_vote, pass_at_k

__all__ = ["EvalConfig", "evaluate", "majority_vote", "pass_at_k"]
