"""Pipelines as cached stages in a run directory.

Each stage writes `stages/<name>.json` (atomically) when it finishes; a rerun skips finished
stages and a killed stage starts again (stages resume from their own checkpoints, e.g. the
training loop's). The result of every stage is available to later ones.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from rich.console import Console

console = Console(stderr=True)


@dataclass
class Stage:
    name: str
    fn: Callable[[dict], dict]
    """takes the results of the earlier stages (name -> result) and returns this one's"""
    description: str = ""


def run_stages(run_dir: Path, stages: list[Stage], force: bool = False) -> dict[str, dict]:
    stage_dir = Path(run_dir) / "stages"
    stage_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for i, stage in enumerate(stages, 1):
        done = stage_dir / f"{stage.name}.json"
        if done.exists() and not force:
            results[stage.name] = json.loads(done.read_text())
            console.print(f"[dim]stage {i}/{len(stages)} {stage.name}: cached ({done})[/dim]")
            continue
        console.rule(f"stage {i}/{len(stages)}: {stage.name} — {stage.description}")
        t0 = time.time()
        result = stage.fn(results)
        result["wall_s"] = round(time.time() - t0, 2)
        tmp = done.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(result, indent=2))
        os.replace(tmp, done)
        results[stage.name] = result
    return results
