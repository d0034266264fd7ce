"""The task contract: problems, prompts, answer extraction, verification, step checking.

A `Task` is everything the rest of ponder needs to know about a problem domain. Steps are
the completion split on the task's step delimiter (default newline); tasks whose steps can be
checked exactly (e.g. `arith`, `countdown`) implement `check_steps`, the ground truth for
process labels, and `next_step`, a correct step to continue a correct prefix (what Step-DPO
prefers over a wrong one).

Also here: the registry (`register_task`, `get_task`, which checks a task's knobs before
building it) and `draw_problems`, the loop procedural tasks draw distinct problems with.
"""
from __future__ import annotations

import difflib
import hashlib
import inspect
import os
import random
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



def split_steps(text: str, delimiter: str = "\n") -> list[str]:
    """A solution's steps: the pieces between delimiters, blank pieces dropped. The one
    splitter that tasks, annotation, search and reward models share."""
    return [s for s in text.split(delimiter) if s.strip()]

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
        return split_steps(text, self.step_delimiter)

    def check_steps(self, problem: Problem, steps: list[str]) -> StepCheck:
        """Exact ground-truth step labels; only tasks that can check steps implement it."""
        raise NotImplementedError(f"task {self.name!r} has no exact step checker")

    def next_step(self, problem: Problem, prefix: list[str]) -> str | None:
        """A correct next step after `prefix`, a correct (per `check_steps`) partial solution:
        a step `check_steps(problem, prefix + [step])` accepts. None when there is none to
        give (the prefix already ends with the answer). Only tasks that can construct steps
        implement it."""
        raise NotImplementedError(f"task {self.name!r} cannot construct a next step")

    @property
    def has_step_checker(self) -> bool:
        return type(self).check_steps is not Task.check_steps

    @property
    def has_next_step(self) -> bool:
        return type(self).next_step is not Task.next_step


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
    (`gym:<dataset>`), a Hugging Face dataset (`hf:<org/name>[:<config>]`) or a folder
    `datasets` saved with `save_to_disk`, or a file task from a path (`*.jsonl`, `*.parquet`,
    or a directory holding `train.jsonl` / `test.jsonl`)."""
    import ponder.tasks  # noqa: F401  (populates the registry)

    if name in TASKS:
        return TASKS[name](**check_knobs(name, TASKS[name], kwargs))
    if name.startswith("gym:"):
        from ponder.tasks.gym import GymTask

        # knobs beyond GymTask's own are the dataset's config, checked by reasoning-gym
        return GymTask(name.removeprefix("gym:"), **check_knobs(name, GymTask, kwargs, fixed=("dataset_name",)))
    if name.startswith("hf:") or os.path.isdir(name):
        from ponder.tasks.hub_data import HubDatasetTask, is_saved_dataset

        if name.startswith("hf:") or is_saved_dataset(name):
            return HubDatasetTask(name, **check_knobs(name, HubDatasetTask, kwargs, fixed=("source",)))
    if name.endswith((".jsonl", ".json", ".parquet")) or os.path.isdir(name):
        from ponder.tasks.files import FileTask, file_task

        return file_task(name, **check_knobs(name, FileTask, kwargs, fixed=("path",)))
    known = ", ".join(sorted(TASKS))
    raise ValueError(
        f"unknown task {name!r}: expected one of {known}, 'gym:<dataset>', 'hf:<org/name>[:<config>]', "
        "or a .jsonl/.parquet path or directory"
    )


_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def check_knobs(name: str, factory: Callable[..., Task], knobs: dict[str, Any],
                fixed: tuple[str, ...] = ()) -> dict[str, Any]:
    """`knobs` checked against the parameters of `factory` (a task class): an unknown knob is
    a ValueError naming it and listing the task's knobs with their defaults. A knob whose
    default is a bool takes a bool, or a string or 0/1 that spells one ("true", "no", ...):
    knobs often arrive as text from the command line, and `bool("maybe")` would be True.
    `fixed`: parameters `get_task` fills itself (a file task's path). A factory that takes
    `**kwargs` accepts any further knob."""
    params = {p.name: p for p in inspect.signature(factory).parameters.values()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in fixed}
    open_ended = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(factory).parameters.values())

    def listing() -> str:
        return ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in params.values())

    out = dict(knobs)
    for key, value in knobs.items():
        if key not in params:
            if open_ended:
                continue
            close = difflib.get_close_matches(key, params, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"task {name!r} has no knob {key!r}{hint}; its knobs (with defaults): {listing()}")
        if isinstance(params[key].default, bool) and not isinstance(value, bool):
            text = str(value).strip().lower() if isinstance(value, (str, int)) else None
            if text not in _TRUE + _FALSE:
                raise ValueError(f"task {name!r}: knob {key!r} must be true or false, got {value!r}")
            out[key] = text in _TRUE
    return out


def stable_split(key: str, test_every: int = 10) -> str:
    """Which split a procedurally generated item belongs to: "test" for one key in
    `test_every` (by a SHA-256 of the key, stable across processes and Python versions,
    unlike `hash`), "train" otherwise. Generators emit only their own split's keys, so train
    and test are disjoint by construction, whatever seeds and sizes are asked for."""
    digest = hashlib.sha256(key.encode()).digest()
    return "test" if int.from_bytes(digest[:8], "big") % test_every == 0 else "train"


def draw_problems(name: str, split: str, n: int, seed: int,
                  sample: Callable[[random.Random], tuple[str, Any] | None], knobs: str) -> list[Any]:
    """`n` distinct items of `split` from a procedural generator, deterministic in (name,
    split, seed): `sample(rng)` draws one candidate as `(key, item)`, or None to draw again.
    A candidate is kept when its key is new and belongs to `split` (`stable_split(key)`), so
    item i depends only on (split, seed, i) and a longer list extends a shorter one. Gives up
    with a ValueError (naming the task's `knobs`) when too few distinct items turn up."""
    if n > MAX_PROBLEMS:
        raise ValueError(f"{name}: {n} problems asked for; at most {MAX_PROBLEMS} are drawn at once "
                         "(ask for fewer with --n / --n-train / --n-problems)")
    rng = random.Random(f"{name}:{split}:{seed}")
    seen: set[str] = set()
    out: list[Any] = []
    attempts = last_new = 0
    while len(out) < n:
        attempts += 1
        # Give up once new items have stopped turning up (the knobs allow fewer than n), not
        # after 1000 draws per item asked for, which took minutes for a large n.
        if attempts - last_new > max(STALL, 20 * len(out)) or attempts > 1000 * n + 10_000:
            raise ValueError(
                f"{name}: found only {len(out)} distinct {split} problems of the {n} asked for "
                f"with {knobs}; widen the knobs or ask for fewer"
            )
        drawn = sample(rng)
        if drawn is None:
            continue
        key, item = drawn
        if key in seen or stable_split(key) != split:
            continue
        seen.add(key)
        out.append(item)
        last_new = attempts
    return out


MAX_PROBLEMS = 1_000_000
"""problems one draw makes, at most (more would take minutes and gigabytes before any work)"""
STALL = 50_000
"""draws without a new problem after which a draw gives up (the knobs allow no more)"""
