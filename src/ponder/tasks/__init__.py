"""Tasks: problems, prompts, answer extraction, verification and exact step checking.

Importing this package registers every built-in task, so `get_task("arith")` works.
"""
from ponder.tasks.base import TASKS, Problem, StepCheck, Task, get_task, register_task

# Imported for their side effect: each module registers its tasks.
from ponder.tasks import add_words, arith, countdown, files, gym  # noqa: E402,F401  isort: skip

__all__ = ["TASKS", "Problem", "StepCheck", "Task", "get_task", "register_task"]
