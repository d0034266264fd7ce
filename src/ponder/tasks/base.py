"""The task contract: problems, prompts, answer extraction, verification, step checking.

A `Task` is everything the rest of ponder needs to know about a problem domain. Steps are
the completion split on the task's step delimiter (default newline); tasks whose steps can be
checked exactly (e.g. `arith`) implement `check_steps`, the ground truth for process labels.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Problem:
    """One item. `answer` is the gold final answer as a string; `meta` holds difficulty and,
    for procedural tasks, the reference solution steps (`meta["steps"]`)."""

    id: str
    question: str
    answer: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepCheck:
    """Exact per-step verdict. `labels[i]` is True iff step i is correct and a valid next step;
    `first_error` is the index of the first wrong step, or None when all steps are correct;
    `reasons[i]` says why a step was rejected ("" when correct)."""

    labels: list[bool]
    first_error: int | None
    reasons: list[str]


class Task:
    """Base class. Subclasses set `name` and implement `problems`, `prompt`, `is_correct`."""

    name: str = "task"
    step_delimiter: str = "\n"

    def problems(self, split: str = "test", n: int | None = None, seed: int = 0) -> list[Problem]:
        raise NotImplementedError

    def prompt(self, problem: Problem) -> str:
        raise NotImplementedError

    def reference(self, problem: Problem) -> str | None:
        """Reference solution text (completion only), if the task has one; used for SFT."""
        steps = problem.meta.get("steps")
        return self.step_delimiter.join(steps) if steps else None

    def extract_answer(self, text: str) -> str | None:
        from ponder.tasks.answers import extract_answer

        return extract_answer(text)

    def is_correct(self, problem: Problem, text: str) -> bool:
        raise NotImplementedError

    def split_steps(self, text: str) -> list[str]:
        return [s for s in text.split(self.step_delimiter) if s.strip()]

    def check_steps(self, problem: Problem, steps: list[str]) -> StepCheck:
        """Exact ground-truth step labels; only tasks that can check steps implement it."""
        raise NotImplementedError(f"task {self.name!r} has no exact step checker")

    @property
    def has_step_checker(self) -> bool:
        return type(self).check_steps is not Task.check_steps


TASKS: dict[str, Callable[..., Task]] = {}


def register_task(name: str):
    """Class decorator adding a task factory to the registry under `name`."""

    def wrap(cls):
        TASKS[name] = cls
        cls.name = name
        return cls

    return wrap


def get_task(name: str, **kwargs) -> Task:
    """Build a task by name: a registered task (`arith`), a reasoning-gym dataset
    (`gym:<dataset>`), or a file task from a path (`*.jsonl`, `*.parquet`, or a directory
    holding `train.jsonl` / `test.jsonl`)."""
    import ponder.tasks  # noqa: F401  (populates the registry)

    if name in TASKS:
        return TASKS[name](**kwargs)
    if name.startswith("gym:"):
        from ponder.tasks.gym import GymTask

        return GymTask(name.removeprefix("gym:"), **kwargs)
    if name.endswith((".jsonl", ".json", ".parquet")) or os.path.isdir(name):
        from ponder.tasks.files import file_task

        return file_task(name, **kwargs)
    known = ", ".join(sorted(TASKS))
    raise ValueError(
        f"unknown task {name!r}: expected one of {known}, 'gym:<dataset>', "
        "or a .jsonl/.parquet path or directory"
    )


def stable_split(key: str, test_every: int = 10) -> str:
    """Which split a procedurally generated item belongs to: "test" for one key in
    `test_every` (by a SHA-256 of the key, stable across processes and Python versions,
    unlike `hash`), "train" otherwise. Generators emit only their own split's keys, so train
    and test are disjoint by construction, whatever seeds and sizes are asked for."""
    digest = hashlib.sha256(key.encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") % test_every == 0 else "train"
