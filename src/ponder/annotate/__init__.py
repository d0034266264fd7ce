"""Data construction without humans: outcome labels from verifiers, process labels from
Monte Carlo rollouts (Math-Shepherd), binary-search tree search (OmegaPRM), LLM judges and
consensus between them."""
from ponder.annotate.judge import LLMJudge, consensus, parse_verdict
from ponder.annotate.math_shepherd import ProcessLabels, first_error_from_labels, math_shepherd
from ponder.annotate.omega_prm import OmegaConfig, binary_search_first_error, omega_prm, q_value, u_value
from ponder.annotate.annotator import AnnotateConfig, Annotator

__all__ = ["AnnotateConfig", "Annotator", "LLMJudge", "OmegaConfig", "ProcessLabels", "binary_search_first_error",
           "consensus", "first_error_from_labels", "math_shepherd", "omega_prm", "parse_verdict", "q_value",
           "u_value"]
