"""`ponder annotate`: sample solutions from a policy and label outcomes and steps (Math-Shepherd, OmegaPRM, LLM judge, exact checker); resumable.

Writes TRL-format training data (sft, orm, preference and stepwise files) and a summary of
each labeller's cost and of its agreement with the exact step checker. Problems are done in
chunks: a killed run resumes after the last finished chunk, and a rerun with other options is
refused.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ponder.annotate.run import METHODS, AnnotateConfig as Config  # noqa: F401  the command's options
from functools import partial

from ponder.config import require, to_dict
from ponder.scaleout import NOT_CONFIG, check_workers, in_order, map_shards


def run(cfg: Config, progress: bool = True, generator=None, judge_generator=None, completer=None) -> dict:
    """Run (or resume) an annotation run; returns the summary. `generator` / `judge_generator`
    replace the engines the config names (for callers that already hold one)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ponder.annotate.judge import LLMJudge
    from ponder.annotate.records import append_chunk, read_complete_chunks
    from ponder.annotate.run import Annotator, derived_files, label_quality
    from ponder.commands.common import check_model, open_engine, resolve_task
    from ponder.runs import start_run, write_json, write_jsonl
    from ponder.tasks import get_task

    require(cfg, positive=("n_problems", "samples", "max_tokens", "k", "chunk", "batch_size"),
            non_negative=("temperature", "max_pairs"))
    check_omega(cfg.omega)
    check_workers(cfg.workers, cfg.ray_address)
    resolve_task(cfg, cfg.policy, cfg.engine)
    task = get_task(cfg.task, **cfg.task_args)
    problems = task.problems(cfg.split, n=cfg.n_problems, seed=cfg.seed)
    if cfg.workers > 1:
        annotator = None  # each worker builds its own; models and methods are checked here
        check_model(cfg.policy, cfg.engine)
        if cfg.completer:
            check_model(cfg.completer, cfg.engine)
        if "judge" in cfg.methods:
            check_model(cfg.judge_model, cfg.judge_engine)
        Annotator(cfg, None, task, LLMJudge(None) if "judge" in cfg.methods else None)
    else:
        if generator is None:
            generator = open_engine(cfg.engine, cfg.policy, batch_size=cfg.batch_size, device=cfg.device)
        judge = None
        if "judge" in cfg.methods:
            if judge_generator is None:
                judge_generator = open_engine(cfg.judge_engine, cfg.judge_model, batch_size=cfg.batch_size, device=cfg.device)
            judge = LLMJudge(judge_generator)
        if completer is None and cfg.completer:
            completer = open_engine(cfg.engine, cfg.completer, batch_size=cfg.batch_size, device=cfg.device)
        annotator = Annotator(cfg, generator, task, judge, completer)  # checks the methods against the task
    run_dir = Path(cfg.runs_dir) / cfg.run
    start_run(run_dir, to_dict(cfg), "annotate", ignore=("run", "runs_dir", *NOT_CONFIG))
    path = run_dir / "records.jsonl"
    records, start = read_complete_chunks(path)
    chunks = [problems[i:i + cfg.chunk] for i in range(0, len(problems), cfg.chunk)]
    if start:
        done = sum(len(c) for c in chunks[:start])
        Console(stderr=True).print(f"resuming {run_dir}: {done} of {len(problems)} problems already annotated")
    columns = [TextColumn("[bold]annotate"), BarColumn(), TextColumn("{task.completed}/{task.total} problems"),
               TimeElapsedColumn()]
    todo = [(c, chunks[c]) for c in range(start, len(chunks))]
    with Progress(*columns, disable=not progress) as bar:
        job = bar.add_task("annotate", total=len(problems), completed=sum(len(c) for c in chunks[:start]))
        results = map_shards(_annotate_chunk, todo, setup=partial(_annotator, cfg), workers=cfg.workers,
                             ray_address=cfg.ray_address, state=annotator)
        # Chunks are appended in order (what resume reads); one that finishes early waits.
        for done in in_order(results, start):
            new, wall = done.value
            append_chunk(path, done.index, new)
            # Timings live beside the records, which stay byte-identical across reruns.
            with open(run_dir / "chunk_times.jsonl", "a") as f:
                f.write(json.dumps({"chunk": done.index, "wall_s": wall}) + "\n")
            records += [{"chunk": done.index, **r} for r in (new or [{"marker": True}])]
            bar.update(job, advance=len(chunks[done.index]))
    # The run's wall time is the sum over its chunks, whichever invocation computed them.
    wall_s = sum(_chunk_times(run_dir / "chunk_times.jsonl", len(chunks)).values())
    records = [r for r in records if not r.get("marker")]
    files = derived_files(records, cfg)
    for name, rows in files.items():
        write_jsonl(run_dir / f"{name}.jsonl", rows)
    policy = [r for r in records if r["source"] == "policy"]
    summary = {
        "problems": len(problems),
        "samples": len(policy),
        "sample_accuracy": sum(r["correct"] for r in policy) / max(len(policy), 1),
        "rationalized": sum(r["source"] == "rationalized" for r in records),
        "files": {name: len(rows) for name, rows in files.items()},
        "methods": label_quality(records, cfg.methods),
        "wall_s": round(wall_s, 2),
        "resumed_after_chunks": start,
        "run_dir": str(run_dir),
    }
    write_json(run_dir / "summary.json", summary)
    return summary


def check_omega(omega: dict) -> None:
    """--omega key=value: OmegaPRM's own options, each of its type (converted in place), checked
    before any work: a bad one would otherwise fail deep in the first chunk's tree search."""
    import typing
    from dataclasses import fields

    from ponder.annotate.omega_prm import OmegaConfig
    from ponder.config import ConfigError, _coerce

    hints = typing.get_type_hints(OmegaConfig)
    names = [f.name for f in fields(OmegaConfig) if f.name != "k"]
    for key, value in omega.items():
        if key == "k":
            raise ConfigError("--omega k=...: OmegaPRM's rollouts per estimate are --k (shared with Math-Shepherd)")
        if key not in names:
            raise ConfigError(f"--omega {key}={value}: OmegaPRM has no option {key!r}; expected one of "
                              f"{', '.join(names)}")
        omega[key] = _coerce(value, hints[key], f"--omega {key}")
        if omega[key] < 0:
            raise ConfigError(f"--omega {key}: expected a number >= 0, got {omega[key]}")


def _annotator(cfg: Config):
    """A worker's annotator: its own engines, task and judge (runs in each Ray worker)."""
    from ponder.annotate.judge import LLMJudge
    from ponder.annotate.run import Annotator
    from ponder.commands.common import open_engine
    from ponder.tasks import get_task

    generator = open_engine(cfg.engine, cfg.policy, batch_size=cfg.batch_size, device=cfg.device)
    judge = None
    if "judge" in cfg.methods:
        judge = LLMJudge(open_engine(cfg.judge_engine, cfg.judge_model, batch_size=cfg.batch_size, device=cfg.device))
    completer = open_engine(cfg.engine, cfg.completer, batch_size=cfg.batch_size, device=cfg.device) if cfg.completer else None
    return Annotator(cfg, generator, get_task(cfg.task, **cfg.task_args), judge, completer)


def _annotate_chunk(annotator, c: int, problems) -> tuple[list[dict], float]:
    t0 = time.time()
    records = annotator.chunk(problems, c)
    return records, round(time.time() - t0, 3)


def _chunk_times(path: Path, n_chunks: int) -> dict[int, float]:
    """Wall seconds per finished chunk (the last time measured wins; a torn line is skipped)."""
    times = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                times[int(row["chunk"])] = float(row["wall_s"])
            except (ValueError, KeyError, TypeError):
                continue
    return {c: t for c, t in times.items() if c < n_chunks}


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
