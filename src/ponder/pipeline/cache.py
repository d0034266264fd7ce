"""Pipelines as cached stages in a run directory.

A stage is a name, a function of the earlier stages' results (name -> typed result), and the
dataclass of its own result. When it finishes, its result is written (atomically) to
`stages/<name>.json` with its wall time; a rerun reads finished stages back into their
dataclasses and skips them, and a killed stage starts again (stages resume from their own
checkpoints, e.g. the training loop's).
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rich.console import Console

from ponder.runs import write_json

console = Console(stderr=True)


@dataclass
class Stage:
    name: str
    fn: Callable[[dict[str, Any]], Any]
    """takes the results of the earlier stages (name -> result) and returns this one's"""
    result_type: type
    """the dataclass the result is, so that a cached stage is read back as one"""
    description: str = ""


def run_stages(run_dir: Path, stages: list[Stage]) -> tuple[dict[str, Any], dict[str, float]]:
    """The result of every stage and its wall time (as measured when it ran)."""
    stage_dir = Path(run_dir) / "stages"
    stage_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    wall: dict[str, float] = {}
    for i, stage in enumerate(stages, 1):
        done = stage_dir / f"{stage.name}.json"
        if done.exists():
            saved = json.loads(done.read_text())
            wall[stage.name] = saved.pop("wall_s", None)
            names = {f.name for f in dataclasses.fields(stage.result_type)}
            results[stage.name] = stage.result_type(**{k: v for k, v in saved.items() if k in names})
            console.print(f"[dim]stage {i}/{len(stages)} {stage.name}: cached ({done})[/dim]")
            continue
        console.rule(f"stage {i}/{len(stages)}: {stage.name} — {stage.description}")
        t0 = time.time()
        result = stage.fn(results)
        wall[stage.name] = round(time.time() - t0, 2)
        write_json(done, {**dataclasses.asdict(result), "wall_s": wall[stage.name]})
        results[stage.name] = result
    return results, wall
