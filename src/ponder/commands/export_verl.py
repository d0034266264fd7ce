"""`ponder export verl`: a task as verl's parquet rows plus a reward module, for RL on a verl cluster.

Writes to --out: train.parquet and test.parquet (verl's row format: data_source, prompt as chat
messages, ability, reward_model {style, ground_truth}, extra_info) and reward.py, whose
`compute_score` is ponder's verifier for the task, plus an optional PRM (`ponder train-rm`):
score = outcome_weight * correct + prm_weight * aggregate(PRM step scores). The reward workers
need ponder installed, and read a file task and a PRM from the absolute paths written here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ponder.config import ConfigError, require

# The files an export writes; --force replaces these and nothing else in --out.
OUTPUTS = ("train.parquet", "test.parquet", "reward.py", "export.json")


@dataclass
class Config:
    task: str = ""
    """task name (arith, countdown, ...), gym:<dataset>, or a .jsonl/.parquet path or directory"""
    task_args: dict = field(default_factory=dict)
    """task knobs, e.g. num_ops=3 (the reward rebuilds the task with the same knobs)"""
    out: str = ""
    """directory to write train.parquet, test.parquet and reward.py to"""
    force: bool = False
    """write into a non-empty --out, replacing an earlier export's files"""
    train_split: str = "train"
    """the task's split that train.parquet holds"""
    test_split: str = "test"
    """the task's split that test.parquet holds (verl's validation files)"""
    num_train: int = 1000
    """problems in train.parquet (a file task gives all its rows when it has fewer; 0: no train.parquet)"""
    num_test: int = 100
    """problems in test.parquet (0: no test.parquet)"""
    seed: int = 0
    """seed of the problems drawn"""
    ability: str = "math"
    """verl's 'ability' column (a label; verl does not read it)"""
    outcome_weight: float = 1.0
    """weight of the verifier's 0/1 in the score"""
    prm: str | None = None
    """process reward model dir (written by `ponder train-rm`): its aggregated step score is added"""
    prm_weight: float = 1.0
    """weight of the PRM's aggregated step score in the score"""
    prm_aggregation: str = "min"
    """how the PRM's step scores become one: last, min, prod, mean"""


def _check(cfg: Config) -> None:
    from ponder.rewards.base import AGGREGATIONS

    if not cfg.task:
        raise ConfigError("--task is required: a task name (see `ponder tasks`) or a .jsonl/.parquet path")
    if not cfg.out:
        raise ConfigError("--out is required: the directory to write the parquet files and reward.py to")
    require(cfg, non_negative=("num_train", "num_test"), choices={"prm_aggregation": AGGREGATIONS})
    if cfg.num_train == 0 and cfg.num_test == 0:
        raise ConfigError("--num-train and --num-test are both 0: nothing to export")
    for name in ("outcome_weight", "prm_weight"):
        if not math.isfinite(getattr(cfg, name)):
            raise ConfigError(f"--{name.replace('_', '-')} must be a finite number, got {getattr(cfg, name)}")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; expected a directory")
    if out.is_dir() and any(out.iterdir()) and not cfg.force:
        raise ConfigError(f"--out {out} is not empty: choose another directory, or add --force to replace "
                          f"an earlier export's files ({', '.join(OUTPUTS)})")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ImportError("writing parquet needs pyarrow: pip install 'ponder[parquet]'") from None


def run(cfg: Config) -> dict:
    """Check every input, build all rows, then write the files; returns what was written."""
    from ponder.export.verl import REWARD_FILE, reward_module, task_reference, verl_row, write_parquet
    from ponder.runs import atomic_write, write_json
    from ponder.tasks import get_task

    _check(cfg)
    task = get_task(cfg.task, **cfg.task_args)
    task_name, task_args = task_reference(cfg.task, cfg.task_args)
    prm = None
    if cfg.prm:
        from ponder.rewards.model import load_prm

        prm = str(Path(cfg.prm).resolve())
        load_prm(prm)  # refuses a directory that holds no PRM, before anything is written
    files = {}
    for file, split, n in (("train.parquet", cfg.train_split, cfg.num_train),
                           ("test.parquet", cfg.test_split, cfg.num_test)):
        if n:
            problems = task.problems(split, n=n, seed=cfg.seed)
            files[file] = [verl_row(task, p, split, i, task_name, task_args, cfg.ability)
                           for i, p in enumerate(problems)]
    if len(files) == 2:
        shared = ({r["extra_info"]["question"] for r in files["train.parquet"]}
                  & {r["extra_info"]["question"] for r in files["test.parquet"]})
        if shared:
            raise ConfigError(
                f"{len(shared)} problems would be in both train.parquet and test.parquet (does one file serve "
                f"every split of {cfg.task!r}?): give a directory with train and test files, other "
                "--train-split/--test-split, or --num-train 0 / --num-test 0 to write one file")

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:  # an earlier export's file this one does not rewrite must not linger
        if name not in files and (out / name).exists():
            (out / name).unlink()
    for name, rows in files.items():
        write_parquet(rows, out / name)
    reward_path = (out / REWARD_FILE).resolve()
    atomic_write(reward_path, reward_module(reward_path, cfg.outcome_weight, prm, cfg.prm_weight,
                                            cfg.prm_aggregation))
    result = {"out": str(out.resolve()), "data_source": task.name, "task": task_name, "task_args": task_args,
              "rows": {name: len(rows) for name, rows in files.items()}, "reward": str(reward_path),
              "outcome_weight": cfg.outcome_weight,
              "prm": prm, "prm_weight": cfg.prm_weight if prm else None,
              "prm_aggregation": cfg.prm_aggregation if prm else None}
    write_json(out / "export.json", result)
    return result


def show(result: dict, console) -> None:
    out = Path(result["out"])
    for name, n in result["rows"].items():
        console.print(f"{out / name}: {n} rows", highlight=False)
    console.print(f"{result['reward']}: compute_score = {result['outcome_weight']} * verifier"
                  + (f" + {result['prm_weight']} * {result['prm_aggregation']}(PRM steps)" if result["prm"] else ""),
                  highlight=False)
    lines = []
    if "train.parquet" in result["rows"]:
        lines.append(f"data.train_files={out / 'train.parquet'}")
    if "test.parquet" in result["rows"]:
        lines.append(f"data.val_files={out / 'test.parquet'}")
    lines += [f"reward.custom_reward_function.path={result['reward']}", "reward.custom_reward_function.name=compute_score"]
    console.print("verl options:\n  " + " \\\n  ".join(lines), highlight=False, markup=False)
