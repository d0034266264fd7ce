"""verl's RL data format: one parquet row per problem, and the reward module beside the rows.

A row, as verl documents it (docs/preparation/prepare_data.rst; its
examples/data_preprocess/gsm8k.py writes the same columns):

    data_source   str                 the dataset's name; here the task's name
    prompt        [{role, content}]   chat messages; verl's RLHFDataset applies the chat template
    ability       str                 the task's category ("math")
    reward_model  {style, ground_truth}   style "rule": a rule scores it; ground_truth the gold answer
    extra_info    {split, index, ...}     passed to the reward function as it is

The prompt is `task.prompt(problem)` as one user turn, exactly the text ponder's engines put
into the chat template. `extra_info` also carries what `verl_reward.compute_score` needs to
rebuild the problem and its task: `id`, `question`, `meta` (JSON of `Problem.meta`: a
countdown problem's numbers, an arith problem's expression and reference steps), `task` and
`task_args` (JSON of the knobs). Task knobs and meta vary by task, so they travel as JSON
strings: the parquet schema is then the same for every task.

A file task is named by its absolute path, which the reward workers must be able to read (the
verifier rebuilds the task from it); the same holds for a PRM directory.
"""
from __future__ import annotations

import json
from pathlib import Path

from ponder.tasks import TASKS
from ponder.tasks.base import Problem, Task

EXTRA_INFO = ("split", "index", "id", "question", "task", "task_args", "meta")
REWARD_FILE = "reward.py"


def schema():
    """The pyarrow schema of the rows: explicit, so every export has the same column types."""
    import pyarrow as pa

    return pa.schema([
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", pa.struct([("split", pa.string()), ("index", pa.int64())]
                                 + [(k, pa.string()) for k in EXTRA_INFO[2:]])),
    ])


def task_reference(name: str, args: dict) -> tuple[str, dict]:
    """(task name, knobs) as a reward worker rebuilds the task: a file task's path (the name,
    or a `path` knob) made absolute, since verl's workers do not run in this directory."""
    args = dict(args)
    if name not in TASKS and not name.startswith("gym:") and Path(name).exists():
        name = str(Path(name).resolve())
    if isinstance(args.get("path"), str) and Path(args["path"]).exists():
        args["path"] = str(Path(args["path"]).resolve())
    return name, args


def verl_row(task: Task, problem: Problem, split: str, index: int, task_name: str, task_args: dict,
             ability: str = "math") -> dict:
    """One problem as a verl row; `task_name` and `task_args` rebuild `task` (`get_task`)."""
    try:
        meta = json.dumps(problem.meta, sort_keys=True)
    except TypeError as e:
        raise ValueError(f"problem {problem.id}: its meta cannot be written as JSON ({e}), "
                         "so the reward could not rebuild it") from None
    return {
        "data_source": task.name,
        "prompt": [{"role": "user", "content": task.prompt(problem)}],
        "ability": ability,
        "reward_model": {"style": "rule", "ground_truth": problem.answer},
        "extra_info": {"split": split, "index": index, "id": problem.id, "question": problem.question,
                       "task": task_name, "task_args": json.dumps(task_args, sort_keys=True), "meta": meta},
    }


def write_parquet(rows: list[dict], path: str | Path) -> None:
    """`rows` as a parquet file with `schema()`, written beside and renamed into place."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema()), tmp)
    tmp.replace(path)


REWARD_TEMPLATE = '''"""verl reward for the rows in this directory, written by `ponder export verl`.

In verl's config:
    reward.custom_reward_function.path={path}
    reward.custom_reward_function.name=compute_score

score = {outcome_weight} * (ponder's verifier: 1 if correct else 0){prm_line}
Settings given in verl's reward.custom_reward_function.reward_kwargs override SETTINGS.
"""
from ponder.export.verl_reward import compute_score as ponder_score

SETTINGS = {settings!r}


def compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs):
    return ponder_score(data_source, solution_str, ground_truth, extra_info, **{{**SETTINGS, **kwargs}})
'''


def reward_module(path: Path, outcome_weight: float, prm: str | None, prm_weight: float,
                  prm_aggregation: str) -> str:
    """The text of the reward module written to `path`: ponder's `compute_score` with this
    export's weights and PRM as defaults."""
    settings = {"outcome_weight": outcome_weight}
    prm_line = ""
    if prm:
        settings.update(prm=prm, prm_weight=prm_weight, prm_aggregation=prm_aggregation)
        prm_line = f"\n      + {prm_weight} * {prm_aggregation}(PRM step scores)   (PRM: {prm})"
    return REWARD_TEMPLATE.format(path=path, outcome_weight=outcome_weight, prm_line=prm_line, settings=settings)
