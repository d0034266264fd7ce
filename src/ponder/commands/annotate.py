"""`ponder annotate`: sample solutions from a policy and label outcomes and steps (Math-Shepherd, OmegaPRM, LLM judge, exact checker); resumable.

Writes TRL-format training data (sft, orm, preference and stepwise files) and a summary of
each labeller's cost and of its agreement with the exact step checker. Problems are done in
chunks: a killed run resumes after the last finished chunk, and a rerun with other options is
refused.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ponder.annotate.annotator import METHODS, AnnotateConfig  # noqa: F401
from ponder.config import require, to_dict
from ponder.parallel import NOT_CONFIG, check_workers
from ponder.options import RunOptions, WorkerOptions


@dataclass
class Config(AnnotateConfig, RunOptions, WorkerOptions):
    run: str = "annotate"


def run(cfg: Config, progress: bool = True) -> dict:
    """Run (or resume) an annotation run; returns the summary."""
    from pathlib import Path

    from ponder.annotate.annotator import Annotator, annotate, check_omega, open_annotator
    from ponder.annotate.judge import LLMJudge
    from ponder.commands.common import check_model, resolve_model, resolve_task
    from ponder.config import narrow
    from ponder.runs import start_run
    from ponder.tasks import get_task

    require(cfg, positive=("n_problems", "samples", "max_tokens", "k", "chunk", "batch_size"),
            non_negative=("temperature", "max_pairs"))
    check_omega(cfg.omega)
    check_workers(cfg.workers, cfg.ray_address)
    resolve_task(cfg, cfg.policy, cfg.engine)
    task = get_task(cfg.task, **cfg.task_args)
    problems = task.problems(cfg.split, n=cfg.n_problems, seed=cfg.seed)
    # run names resolve to their model folders (the config keeps what was typed)
    models = replace(narrow(cfg, AnnotateConfig), policy=resolve_model(cfg.policy, cfg.engine),
                     judge_model=resolve_model(cfg.judge_model, cfg.judge_engine),
                     completer=cfg.completer and resolve_model(cfg.completer, cfg.engine))
    if cfg.workers > 1:
        annotator = None  # each worker opens its own; models and methods are checked here
        check_model(cfg.policy, cfg.engine)
        if cfg.completer:
            check_model(cfg.completer, cfg.engine)
        if "judge" in cfg.methods:
            check_model(cfg.judge_model, cfg.judge_engine)
        Annotator(models, None, task, LLMJudge(None) if "judge" in cfg.methods else None)
    else:
        annotator = open_annotator(models)  # checks the methods against the task
    run_dir = Path(cfg.runs_dir) / cfg.run
    start_run(run_dir, to_dict(cfg), "annotate", ignore=("run", "runs_dir", *NOT_CONFIG))
    return annotate(models, problems, run_dir, annotator, cfg.workers, cfg.ray_address, progress)


def show(summary: dict, console) -> None:
    from rich.table import Table

    table = Table(title=f"annotation: {summary['samples']} samples of {summary['problems']} problems "
                        f"(accuracy {summary['sample_accuracy']:.3f})")
    cols = ["labelled", "first_error_acc", "step_agreement", "processbench_f1", "rollouts_per_solution",
            "tokens_per_solution"]
    for c in ("method", "labelled", "first-error acc", "step agreement", "F1", "rollouts/sol", "tokens/sol"):
        table.add_column(c, justify="left" if c == "method" else "right", no_wrap=True)
    for name, row in summary["methods"].items():
        table.add_row(name, *[f"{row[c]:.3f}" if isinstance(row.get(c), float) else str(row.get(c, "-")) for c in cols])
    console.print(table)
    console.print(f"files: {summary['files']}  in {summary['run_dir']}")
