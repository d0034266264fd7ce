"""Which scorer a search runs with: `verifier` (the task's exact checks) or a PRM.

A PRM is a folder or a Hugging Face Hub ID: ponder's own reward models (`reward_config.json`,
loaded by `ponder.rewards.model.load_prm`) or a published one, Math-Shepherd's or
Qwen2.5-Math-PRM's format (`ponder.rewards.published`), each imported only then, so plain
search does not pay for it; a folder that is none of them is reported as such.
"""
from __future__ import annotations

from pathlib import Path

from ponder.models.hub import hub_snapshot, is_hub_id
from ponder.rewards.base import Scorer, VerifierScorer
from ponder.rewards.model import CONFIG_FILE, load_prm
from ponder.rewards.published import load_published_prm
from ponder.tasks.base import Problem, Task


def load_scorer(spec: str | None, task: Task, problems: list[Problem]) -> Scorer | None:
    """None for no scorer (`None`, "" or "none"); the task verifier for "verifier"; else the
    PRM in the folder (or Hub ID) `spec`: ponder's own format when the folder has its
    `reward_config.json`, else a published PRM (Math-Shepherd or Qwen2.5-Math-PRM, detected
    as `ponder.rewards.published` says), which splits outcomes on the task's step delimiter."""
    if spec is None or spec in ("", "none"):
        return None
    if str(spec).startswith(("http://", "https://")):  # a PRM served by another process (ponder.rewards.remote)
        from ponder.rewards.remote import HTTPScorer

        return HTTPScorer(str(spec), delimiter=task.step_delimiter)
    if spec == "verifier":
        return VerifierScorer(task, problems)

    path = Path(spec)
    if not path.exists() and is_hub_id(spec):
        path = hub_snapshot(spec)
    if not path.exists():
        raise FileNotFoundError(f"scorer {spec!r}: expected 'verifier' or a PRM directory (ponder's, Math-Shepherd or "
                                f"Qwen2.5-Math-PRM) or the Hub ID of one, and {path} does not exist")
    if not path.is_dir():
        raise ValueError(f"scorer {spec!r}: a PRM is a directory (ponder's, Math-Shepherd or Qwen2.5-Math-PRM), "
                         "got a file")

    if (path / CONFIG_FILE).exists():
        return load_prm(str(path))

    return load_published_prm(path, delimiter=task.step_delimiter)
