"""`ponder annotate`, `train-rm`, `eval-rm`: process supervision and reward models."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ponder.cli import (
    ApiKeyOpt,
    ConcurrencyOpt,
    ConfigOpt,
    EngineOpt,
    RunOpt,
    _config,
    _engine_env,
    _fail,
    _resolve_run_model,
    _task_args,
    app,
    console,
)


def _policy(name: str | None, engine: str | None) -> str | None:
    """A policy given on the command line: a run name resolves to its model folder, except
    for a server engine, where it is the served model's name."""
    from ponder.generation import is_url

    return name if name is None or is_url(engine or "") else _resolve_run_model(name)


@app.command()
def annotate(
    config: Optional[Path] = ConfigOpt,
    run: Optional[str] = RunOpt,
    task: Optional[str] = typer.Option(None, help="task name or dataset path (GSM8K-format JSONL works)"),
    policy: Optional[str] = typer.Option(None, help="policy model dir, .gguf, smollm2, or a run name"),
    n_problems: Optional[int] = typer.Option(None, help="problems to annotate"),
    samples: Optional[int] = typer.Option(None, help="solutions sampled per problem"),
    method: Optional[list[str]] = typer.Option(None, help="math_shepherd, omega_prm, judge, truth (repeatable)"),
    k: Optional[int] = typer.Option(None, help="rollouts per prefix"),
    max_tokens: Optional[int] = typer.Option(None, help="tokens per solution or rollout"),
    judge_model: Optional[str] = typer.Option(None, help="model used as LLM judge"),
    task_arg: Optional[list[str]] = typer.Option(None, help="task knob key=value (repeatable)"),
    engine: Optional[str] = EngineOpt,
    api_key: Optional[str] = ApiKeyOpt,
    max_concurrency: Optional[int] = ConcurrencyOpt,
    judge_engine: Optional[str] = typer.Option(None, help="engine of the judge: torch, vllm, or a server URL"),
    seed: Optional[int] = typer.Option(None, help="seed"),
    runs_dir: Optional[str] = typer.Option(None, help="parent folder of run directories"),
):
    """Sample solutions and label outcomes and steps (Math-Shepherd, OmegaPRM, judge); resumable."""
    from ponder.annotate import AnnotateConfig, annotate as run_annotate

    cfg = _config(AnnotateConfig, config, run=run, task=task, policy=_policy(policy, engine),
                  n_problems=n_problems, samples=samples, methods=method or None, k=k, max_tokens=max_tokens,
                  judge_model=judge_model, task_args=_task_args(task_arg) or None, seed=seed, runs_dir=runs_dir,
                  engine=engine, judge_engine=judge_engine)
    _engine_env(api_key, max_concurrency)
    try:
        summary = run_annotate(cfg)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    table = Table(title=f"annotation: {summary['samples']} samples of {summary['problems']} problems "
                        f"(accuracy {summary['sample_accuracy']:.3f})")
    cols = ["method", "labelled", "first_error_acc", "step_agreement", "rollouts_per_solution", "tokens_per_solution"]
    for c in ("method", "labelled", "first-error acc", "step agreement", "rollouts/sol", "tokens/sol"):
        table.add_column(c, justify="left" if c == "method" else "right", no_wrap=True)
    for name, row in summary["methods"].items():
        table.add_row(name, *[f"{row[c]:.3f}" if isinstance(row.get(c), float) else str(row.get(c, "-"))
                              for c in cols[1:]])
    console.print(table)
    console.print(f"files: {summary['files']}  in {summary['run_dir']}")


@app.command("train-rm")
def train_rm(
    config: Optional[Path] = ConfigOpt,
    run: Optional[str] = RunOpt,
    kind: Optional[str] = typer.Option(None, help="prm or orm"),
    data: Optional[Path] = typer.Option(None, help="stepwise JSONL (prm) or prompt/completion/label JSONL (orm)"),
    model: Optional[str] = typer.Option(None, help="causal LM to initialise from (usually the policy)"),
    hard: Optional[bool] = typer.Option(None, "--hard/--soft", help="hard (label > 0) or soft labels"),
    aggregation: Optional[str] = typer.Option(None, help="PRM step aggregation: last, min, prod, mean"),
    steps: Optional[int] = typer.Option(None, help="optimiser steps"),
    batch_size: Optional[int] = typer.Option(None, help="batch size"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate"),
    seed: Optional[int] = typer.Option(None, help="seed"),
    runs_dir: Optional[str] = typer.Option(None, help="parent folder of run directories"),
):
    """Train a process (PRM) or outcome (ORM) reward model; resumable."""
    from ponder.train.rm import RMArgs, run_train_rm

    args = _config(RMArgs, config, run=run, kind=kind, data=str(data) if data else None,
                   model=_resolve_run_model(model) if model else None, hard=hard, aggregation=aggregation,
                   steps=steps, batch_size=batch_size, lr=lr, seed=seed, runs_dir=runs_dir)
    try:
        out = run_train_rm(args)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    console.print_json(json.dumps(out))


@app.command("eval-rm")
def eval_rm(
    rm: list[str] = typer.Option(..., help="reward model dir (PRM or ORM) or 'verifier' (repeatable)"),
    config: Optional[Path] = ConfigOpt,
    policy: Optional[str] = typer.Option(None, help="policy that samples the solutions"),
    task: Optional[str] = typer.Option(None, help="task name or dataset path"),
    n: Optional[int] = typer.Option(None, help="problems"),
    samples: Optional[int] = typer.Option(None, help="solutions per problem (largest best-of-N)"),
    max_tokens: Optional[int] = typer.Option(None, help="tokens per solution"),
    aggregation: Optional[str] = typer.Option(None, help="PRM step aggregation: last, min, prod, mean"),
    threshold: Optional[float] = typer.Option(None, help="step score below this = predicted error"),
    task_arg: Optional[list[str]] = typer.Option(None, help="task knob key=value (repeatable)"),
    engine: Optional[str] = EngineOpt,
    api_key: Optional[str] = ApiKeyOpt,
    max_concurrency: Optional[int] = ConcurrencyOpt,
    seed: Optional[int] = typer.Option(None, help="seed"),
    output: Optional[Path] = typer.Option(None, help="write the JSON result here"),
):
    """ProcessBench-style F1 and best-of-N accuracy of reward models, beside majority vote."""
    from ponder.eval.rm import EvalRMConfig, run_eval_rm

    cfg = _config(EvalRMConfig, config, policy=_policy(policy, engine), task=task, n=n,
                  samples=samples, max_tokens=max_tokens, aggregation=aggregation, threshold=threshold,
                  task_args=_task_args(task_arg) or None, seed=seed, engine=engine)
    _engine_env(api_key, max_concurrency)
    try:
        out = run_eval_rm(rm, cfg)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    ns = list(out["majority"])
    table = Table(title=f"reward models: {out['problems']} problems x {out['samples']} samples "
                        f"(sample accuracy {out['sample_accuracy']:.3f})")
    for c in ["selector", "F1", *[f"@{n}" for n in ns]]:
        table.add_column(c, justify="left" if c == "selector" else "right")
    for name, res in out["models"].items():
        f1 = res.get("processbench", {}).get("f1")
        table.add_row(f"{name} ({res['kind']}, {res['aggregation']})", f"{f1:.3f}" if f1 is not None else "-",
                      *[f"{res['best_of_n'][n]:.3f}" for n in ns])
        table.add_row("  weighted (scores summed per answer)", "",
                      *[f"{res['weighted_best_of_n'][n]:.3f}" for n in ns])
    table.add_row("majority vote", "-", *[f"{out['majority'][n]:.3f}" for n in ns])
    table.add_row("oracle (pass@N)", "-", *[f"{out['oracle'][n]:.3f}" for n in ns])
    console.print(table)
    if output:
        output.write_text(json.dumps(out, indent=2))
