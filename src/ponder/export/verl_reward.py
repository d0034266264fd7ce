"""verl's reward function for rows written by `ponder export verl`: ponder's verifier, plus a PRM.

verl calls a custom reward once per response (`reward.custom_reward_function` in its config;
verl 0.9.1's naive reward manager, from worker threads):

    compute_score(data_source, solution_str, ground_truth, extra_info=None, **reward_kwargs)

and takes back a float or a dict with a "score" key (its other keys are logged). Here the
problem is rebuilt from the row - `ground_truth` is the gold answer, `extra_info` holds the
question, the problem's `meta` and the task (name and knobs, as JSON) - and the task's own
`is_correct` judges the response, the same code ponder's own RL calls. With a PRM:

    score = outcome_weight * is_correct + prm_weight * aggregate(PRM step scores, prm_aggregation)

the sum `ponder rl --prm DIR` uses (defaults 1.0, 1.0 and "min", as there). Min is the
aggregation Math-Shepherd (Wang et al. 2023, §3.3) scores a solution with: a solution is as
good as its weakest step. The PRM sees exactly what it was trained on: `task.prompt(problem)`
and the response split on the task's step delimiter.

A deliberate departure from process-supervised RL (DeepSeekMath, Shao et al. 2024, §4.1.3,
which gives each step's reward to that step's tokens): verl's custom reward is one number per
response, put on its last token, so the PRM contributes an outcome-level score here. Use
`ponder rl --estimator process_grpo` for per-step advantages.

The dict returned has "score", "acc" (the verifier's 0/1, verl's name for it) and, with a PRM,
"prm" (the aggregated step score), so verl logs each part.
"""
from __future__ import annotations

import json
import math
import threading

from ponder.rewards.base import AGGREGATIONS, aggregate
from ponder.tasks.base import Problem, Task

# Keyword arguments verl 0.9.1's reward managers pass on their own (with a reward-model
# router); accepted and unused. Any other unknown keyword is a mistake in reward_kwargs.
VERL_KWARGS = ("reward_router_address", "reward_model_tokenizer")
ROW_KEYS = ("question", "task", "task_args", "meta")

_lock = threading.Lock()
_tasks: dict[tuple[str, str], Task] = {}
_prms: dict[tuple[str, str], object] = {}


def task_for(name: str, args_json: str) -> Task:
    """The task of a row, built once per process (verl scores many responses per task)."""
    from ponder.tasks import get_task

    key = (name, args_json)
    with _lock:
        if key not in _tasks:
            _tasks[key] = get_task(name, **json.loads(args_json))
        return _tasks[key]


def prm_for(path: str, aggregation: str):
    """The PRM saved at `path` (by `ponder train-rm`), loaded once per process."""
    from ponder.rewards.model import load_prm

    key = (path, aggregation)
    with _lock:
        if key not in _prms:
            _prms[key] = load_prm(path, aggregation)
        return _prms[key]


def problem_from_row(ground_truth: str, extra_info: dict | None) -> tuple[Task, Problem]:
    """(task, problem) of an exported row; a ValueError naming what is missing otherwise."""
    missing = [k for k in ROW_KEYS if not isinstance(extra_info, dict) or k not in extra_info]
    if missing:
        raise ValueError(f"extra_info lacks {missing}: ponder's compute_score scores rows written by "
                         "`ponder export verl` (extra_info holds the question, the task and its knobs)")
    task = task_for(extra_info["task"], extra_info["task_args"])
    problem = Problem(id=str(extra_info.get("id", extra_info.get("index", ""))), question=extra_info["question"],
                      answer=str(ground_truth), meta=json.loads(extra_info["meta"]))
    return task, problem


def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None, *,
                  outcome_weight: float = 1.0, prm: str | None = None, prm_weight: float = 1.0,
                  prm_aggregation: str = "min", **verl_kwargs) -> dict:
    """verl's reward of one response (module docstring). `data_source` is the task's name and
    is not needed: the row's extra_info names the task with its knobs."""
    unknown = sorted(set(verl_kwargs) - set(VERL_KWARGS))
    if unknown:
        raise TypeError(f"compute_score got unknown settings {unknown}; ponder's are outcome_weight, prm, "
                        f"prm_weight, prm_aggregation")
    if prm_aggregation not in AGGREGATIONS:
        raise ValueError(f"prm_aggregation must be one of {', '.join(AGGREGATIONS)}; got {prm_aggregation!r}")
    if not all(math.isfinite(w) for w in (outcome_weight, prm_weight)):
        raise ValueError(f"weights must be finite; got outcome_weight={outcome_weight}, prm_weight={prm_weight}")
    task, problem = problem_from_row(ground_truth, extra_info)
    acc = float(task.is_correct(problem, solution_str))
    out = {"score": outcome_weight * acc, "acc": acc}
    if prm:
        model = prm_for(prm, prm_aggregation)
        steps = task.split_steps(solution_str)
        with _lock:  # verl calls from a thread pool; one forward pass at a time
            step_scores = model.score_steps([task.prompt(problem)], [steps])[0] if steps else []
        out["prm"] = aggregate(step_scores, prm_aggregation)
        out["score"] += prm_weight * out["prm"]
    return out
