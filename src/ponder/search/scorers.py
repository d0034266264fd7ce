"""Which scorer a search runs with: `verifier` (the task's exact checks) or a PRM folder.

The PRM loader (`ponder.rewards.prm.load_prm`) is imported only when a path is given, so
search works without it; a missing module or a folder that is not a PRM is reported as
such, not as a traceback.
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
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"scorer {spec!r}: expected 'verifier' or a PRM directory, and {path} does not exist")
    if not path.is_dir():
        raise ValueError(f"scorer {spec!r}: a PRM is a directory (saved by `ponder` PRM training), got a file")
    try:
        from ponder.rewards.prm import load_prm
    except ImportError as e:
        raise ValueError(
            f"scorer {spec!r}: loading a PRM needs the module ponder.rewards.prm, which this install lacks ({e}); "
            "use --scorer verifier, or install a ponder version with PRM support"
        ) from None
    return load_prm(str(path))
