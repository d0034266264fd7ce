"""Which scorer a search runs with: `verifier` (the task's exact checks) or a PRM folder.

A folder is loaded with `ponder.rewards.model.load_prm` (imported only then, so plain
search does not pay for it); a folder that is not a PRM is reported as such.
"""
from __future__ import annotations

from pathlib import Path

from ponder.rewards.base import Scorer, VerifierScorer
from ponder.tasks.base import Problem, Task


def load_scorer(spec: str | None, task: Task, problems: list[Problem]) -> Scorer | None:
    """None for no scorer (`None`, "" or "none"); the task verifier for "verifier"; else the
    PRM saved in the folder `spec`."""
    if spec is None or spec in ("", "none"):
        return None
    if spec == "verifier":
        return VerifierScorer(task, problems)
    from ponder.models.hub import hub_snapshot, is_hub_id

    path = Path(spec)
    if not path.exists() and is_hub_id(spec):
        path = hub_snapshot(spec)
    if not path.exists():
        raise FileNotFoundError(f"scorer {spec!r}: expected 'verifier', a PRM directory or the Hub ID of one, and "
                                f"{path} does not exist")
    if not path.is_dir():
        raise ValueError(f"scorer {spec!r}: a PRM is a directory (saved by `ponder` PRM training), got a file")
    from ponder.rewards.model import load_prm

    return load_prm(str(path))
