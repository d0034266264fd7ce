"""`ponder tasks`: the registered tasks, each with an example problem.

File datasets need no registration: pass a .jsonl/.parquet path as --task (GSM8K, MATH-style
or generic rows), a saved `datasets` folder, or hf:<org/name>[:<config>]. A task whose data
comes from the Hub (gsm8k_cot, math500) is listed with its source, not loaded: listing tasks
must not download datasets, nor wait on a Hub it cannot reach."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Config:
    seed: int = 0
    """seed of the example problem"""


def run(cfg: Config) -> list[dict]:
    import inspect

    from ponder.tasks import TASKS, get_task

    rows = []
    for name in sorted(TASKS):
        source = inspect.signature(TASKS[name]).parameters.get("path")
        if source is not None and isinstance(source.default, str) and source.default.startswith("hf:"):
            rows.append({"name": name, "step_checker": None, "answer": "",
                         "prompt": f"the Hugging Face dataset {source.default}, read on first use "
                                   "(--task-arg path=... for a local copy)"})
            continue
        if source is not None and source.default in (None, inspect.Parameter.empty):
            # a dataset task with no data of its own: not an error, an instruction
            rows.append({"name": name, "step_checker": None, "answer": "",
                         "prompt": f"your local copy of the dataset: --task {name} --task-arg path=DIR "
                                   "(train.jsonl/test.jsonl) or path=FILE.jsonl"})
            continue
        try:
            task = get_task(name)
            p = task.problems("test", n=1, seed=cfg.seed)[0]
            rows.append({"name": name, "step_checker": task.has_step_checker, "prompt": task.prompt(p).strip(),
                         "answer": p.answer})
        except (ValueError, ImportError, FileNotFoundError) as e:  # tasks that need a path or an extra say so
            rows.append({"name": name, "step_checker": None, "prompt": f"{type(e).__name__}: {e}", "answer": ""})
    return rows


def show(rows: list[dict], console) -> None:
    from rich.table import Table

    table = Table(title="tasks")
    for col in ("name", "exact step checker", "example prompt", "answer"):
        table.add_column(col)
    for r in rows:
        checker = "-" if r["step_checker"] is None else "yes" if r["step_checker"] else "no"
        table.add_row(r["name"], checker, r["prompt"], r["answer"], style="dim" if r["step_checker"] is None else None)
    console.print(table)
    console.print("Datasets: pass a .jsonl/.parquet path, a saved datasets folder or hf:<org/name>[:<config>] "
                  "as --task (GSM8K, MATH-style, or generic rows).")
