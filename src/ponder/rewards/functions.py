"""Reward functions for RL: built-in rewards and adapters for user functions.

A reward function here has TRL's signature,

    f(prompts: list[str], completions: list[str], **columns) -> list[float | None]

with one value per completion; None means "does not apply to this row" and is skipped when
rewards are summed (TRL's convention). The columns the RL trainer passes are `answer` (the
gold answer), `problem` (the `Problem`), `data_source` (the task name), `num_tokens` and
`finish_reason` of each completion. verl's `compute_score(data_source, solution_str,
ground_truth, extra_info)` is adapted by `verl_reward`.

`RewardFunction` wraps one function with its name and weight, and `call` checks what comes
back, so a function that raises or returns the wrong number of rewards is named in the error.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ponder.rewards.base import Scorer, aggregate


class RewardError(RuntimeError):
    pass


@dataclass
class RewardFunction:
    name: str
    """shown in metrics (reward/<name>) and in errors"""
    fn: Callable
    """TRL signature: fn(prompts, completions, **columns) -> list[float | None]"""
    weight: float = 1.0
    """weight in the summed reward"""

    def call(self, prompts: list[str], completions: list[str], columns: dict[str, list]) -> list[float | None]:
        try:
            out = self.fn(prompts=prompts, completions=completions, **columns)
        except Exception as e:
            raise RewardError(f"reward function {self.name!r} raised {type(e).__name__}: {e}") from e
        try:
            out = list(out)
        except TypeError:
            raise RewardError(f"reward function {self.name!r} returned {type(out).__name__}; expected a list of floats") from None
        if len(out) != len(completions):
            raise RewardError(f"reward function {self.name!r} returned {len(out)} rewards for {len(completions)} "
                              "completions; return one value (or None) per completion")
        for i, v in enumerate(out):
            if v is not None and (not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise RewardError(f"reward function {self.name!r} returned {v!r} for completion {i}; expected a "
                                  "finite number or None")
        return [None if v is None else float(v) for v in out]


def combine(per_function: dict[str, list[float | None]], weights: dict[str, float]) -> list[float]:
    """Weighted sum over functions per completion, skipping None (TRL's nansum). A completion
    that no function scored is an error: it would otherwise train on a made-up reward."""
    n = len(next(iter(per_function.values())))
    total = []
    for i in range(n):
        vals = [(weights[name] * r[i]) for name, r in per_function.items() if r[i] is not None]
        if not vals:
            raise RewardError(f"completion {i}: every reward function returned None ({', '.join(per_function)})")
        total.append(float(sum(vals)))
    return total


# ----------------------------------------------------------------- built-in rewards


def outcome_reward(task) -> Callable:
    """1.0 when the task's verifier accepts the completion's final answer, else 0.0."""

    def outcome(prompts, completions, problem, **_):
        return [float(task.is_correct(p, c)) for p, c in zip(problem, completions)]

    return outcome


def format_reward(task) -> Callable:
    """1.0 when an answer can be extracted from the completion (the task's answer format is
    followed), else 0.0 - the format reward of DeepSeek-R1 (§2.2.2), in the task's format."""

    def fmt(prompts, completions, **_):
        return [float(task.extract_answer(c) is not None) for c in completions]

    return fmt


def overlong_penalty(max_tokens: int, buffer: int) -> Callable:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13): 0 up to max_tokens - buffer
    tokens, then falling linearly to -1 at max_tokens, and -1 beyond."""
    if not 0 < buffer <= max_tokens:
        raise ValueError(f"overlong buffer must be in (0, max_tokens={max_tokens}], got {buffer}")

    def overlong(prompts, completions, num_tokens, **_):
        out = []
        for n in num_tokens:
            if n <= max_tokens - buffer:
                out.append(0.0)
            elif n <= max_tokens:
                out.append((max_tokens - buffer - n) / buffer)
            else:
                out.append(-1.0)
        return out

    return overlong


def scorer_outcome_reward(scorer: Scorer) -> Callable:
    """An outcome reward model (ORM): `scorer.score_outcomes`."""

    def orm(prompts, completions, **_):
        return list(scorer.score_outcomes(prompts, completions))

    return orm


def scorer_step_reward(scorer: Scorer, split_steps: Callable[[str], list[str]], how: str = "min") -> Callable:
    """A PRM used as an outcome reward: its step scores aggregated into one (`aggregate`)."""

    def prm(prompts, completions, **_):
        steps = [split_steps(c) for c in completions]
        return [aggregate(s, how) for s in scorer.score_steps(prompts, steps)]

    return prm


def verl_reward(compute_score: Callable) -> Callable:
    """Adapt verl's `compute_score(data_source, solution_str, ground_truth, extra_info)`,
    which scores one completion and returns a float or a dict with a "score" key."""

    def verl(prompts, completions, answer, data_source=None, problem=None, **_):
        out = []
        for i, c in enumerate(completions):
            extra = {"index": i, "prompt": prompts[i]}
            if problem is not None:
                extra.update(problem[i].meta)
            src = data_source[i] if data_source is not None else None
            s = compute_score(data_source=src, solution_str=c, ground_truth=answer[i], extra_info=extra)
            out.append(s["score"] if isinstance(s, dict) else s)
        return out

    return verl


def load_reward_function(spec: str) -> RewardFunction:
    """A user reward function from `path/to/file.py:name` or `package.module:name`. A
    function whose parameters include `solution_str` (verl's signature) is adapted with
    `verl_reward`; anything else is called with TRL's signature."""
    if ":" not in spec:
        raise ValueError(f"reward function {spec!r}: expected 'file.py:function' or 'module:function'")
    where, name = spec.rsplit(":", 1)
    if where.endswith(".py"):
        path = Path(where)
        if not path.exists():
            raise FileNotFoundError(f"reward function file {path} does not exist")
        if path.is_dir():
            raise ValueError(f"reward function file {path} is a directory; expected a .py file")
        mod_spec = importlib.util.spec_from_file_location(f"ponder_reward_{path.stem}", path)
        module = importlib.util.module_from_spec(mod_spec)
        try:
            mod_spec.loader.exec_module(module)
        except SyntaxError as e:
            raise ValueError(f"reward function file {path}, line {e.lineno}: syntax error ({e.msg})") from None
        except Exception as e:  # the user's module failed while importing: say which file and why
            raise ValueError(f"reward function file {path} failed to import: {type(e).__name__}: {e}") from None
    else:
        try:
            module = importlib.import_module(where)
        except SyntaxError as e:
            raise ValueError(f"reward function module {where!r} ({e.filename}, line {e.lineno}): syntax error "
                             f"({e.msg})") from None
        except Exception as e:
            raise ValueError(f"reward function module {where!r} failed to import: {type(e).__name__}: {e}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"reward function {spec!r}: {where} has no function {name!r}")
    params = inspect.signature(fn).parameters
    if "solution_str" in params:
        return RewardFunction(name, verl_reward(fn))
    return RewardFunction(name, fn)


BUILTIN_REWARDS = ("outcome", "format", "overlong")


def reward_functions(specs: list[str], task, max_tokens: int, overlong_buffer: int = 16) -> list[RewardFunction]:
    """Reward functions by name: `outcome` (the task's verifier), `format`, `overlong` (DAPO's
    soft overlong penalty), or `file.py:function` / `module:function` (TRL or verl signature)."""
    out = []
    for spec in specs:
        if spec == "outcome":
            out.append(RewardFunction("outcome", outcome_reward(task)))
        elif spec == "format":
            out.append(RewardFunction("format", format_reward(task)))
        elif spec == "overlong":
            out.append(RewardFunction("overlong", overlong_penalty(max_tokens, overlong_buffer)))
        elif ":" in spec:
            out.append(load_reward_function(spec))
        else:
            raise ValueError(f"unknown reward {spec!r}: expected one of {', '.join(BUILTIN_REWARDS)} or file.py:function")
    return out
