"""Tasks: problems, prompts, answer extraction, verification and exact step checking.

Importing this package registers every built-in task, so `get_task("arith")` works. The
registry is filled by the `@register_task` decorators of the modules imported below: a new
task module must be added to this list (a test fails for any module of this package that
defines a task and is not imported here).
"""
from ponder.tasks.base import TASKS, Problem, StepCheck, Task, get_task, register_task

# Every module that defines a task, imported for the side effect of registering it.
from ponder.tasks import add_words, arith, countdown, files, gym  # noqa: E402,F401  isort: skip
from ponder.tasks import recipes  # noqa: E402,F401  isort: skip

__all__ = ["TASKS", "Problem", "StepCheck", "Task", "get_task", "register_task"]
