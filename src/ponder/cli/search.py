"""`ponder search`, `scale`: test-time strategies and scaling sweeps."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ponder.cli import (
    ApiKeyOpt,
    ConcurrencyOpt,
    ConfigOpt,
    EngineOpt,
    _config,
    _engine_env,
    _fail,
    _print_summary,
    _resolve_run_model,
    _task_args,
    app,
    console,
)


def _progress(total: int, label: str):
    """A rich progress bar over `total` search runs, and the callback that advances it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)
    task_id = bar.add_task(label, total=total)
    return bar, lambda: bar.advance(task_id)


def _csv(text: str | None, cast=str):
    return None if text is None else tuple(cast(x.strip()) for x in text.split(",") if x.strip())


@app.command("search")
def search_cmd(
    config: Optional[Path] = ConfigOpt,
    model: Optional[str] = typer.Option(None, help="policy: model dir, .gguf, smollm2, or a run name under runs/"),
    task: Optional[str] = typer.Option(None, help="task name or dataset path"),
    task_arg: Optional[list[str]] = typer.Option(None, help="task knob key=value (repeatable)"),
    strategy: Optional[str] = typer.Option(None, help="greedy, majority, best_of_n, beam, dvts, lookahead, mcts, "
                                                      "budget_forcing, self_refine"),
    n: Optional[int] = typer.Option(None, help="budget N: samples, beams, simulations, rounds or extensions"),
    beam_width: Optional[int] = typer.Option(None, help="M: beam keeps N/M and expands each M times"),
    scorer: Optional[str] = typer.Option(None, help="'verifier', a PRM directory, or 'none'"),
    aggregation: Optional[str] = typer.Option(None, help="PRM step-score aggregation: last, min, prod, mean"),
    weighted: Optional[bool] = typer.Option(None, "--weighted/--naive", help="weighted vote or best single score"),
    share_prefix: Optional[bool] = typer.Option(None, "--share-prefix/--no-share-prefix",
                                                help="tree search: prefill a node once for its M children"),
    n_problems: Optional[int] = typer.Option(None, help="number of problems"),
    temperature: Optional[float] = typer.Option(None, help="sampling temperature"),
    max_tokens: Optional[int] = typer.Option(None, help="generated tokens per solution, at most"),
    engine: Optional[str] = EngineOpt,
    api_key: Optional[str] = ApiKeyOpt,
    max_concurrency: Optional[int] = ConcurrencyOpt,
    seed: Optional[int] = typer.Option(None, help="seed"),
    output: Optional[Path] = typer.Option(None, help="write the JSON result (summary and records) here"),
):
    """Run one test-time search strategy over a problem set: accuracy and compute spent."""
    from ponder.search.run import SearchArgs, run_search, setup

    args = _config(SearchArgs, config, model=model, task=task, strategy=strategy, n=n, beam_width=beam_width,
                   scorer=scorer, aggregation=aggregation, weighted=weighted, share_prefix=share_prefix,
                   n_problems=n_problems,
                   temperature=temperature, max_tokens=max_tokens, seed=seed, task_args=_task_args(task_arg) or None,
                   engine=engine)
    _engine_env(api_key, max_concurrency)
    try:
        ctx, problems = setup(args.model, args.task, args.task_args, args.scorer, args.n_problems, args.split,
                              args.seed, _resolve_run_model, args.engine)
        bar, tick = _progress(len(problems), f"{args.strategy} N={args.n}")
        with bar:
            out = run_search(ctx, problems, args, tick)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    _print_summary(f"search: {args.strategy} on {args.task} ({len(problems)} problems)", out, output)


@app.command()
def scale(
    config: Optional[Path] = ConfigOpt,
    run: str = typer.Option("scale", help="run name: outputs go to <runs-dir>/<name>/"),
    runs_dir: Path = typer.Option(Path("runs"), help="parent folder of run directories"),
    model: Optional[str] = typer.Option(None, help="policy: model dir, .gguf, smollm2, or a run name under runs/"),
    task: Optional[str] = typer.Option(None, help="task name or dataset path"),
    task_arg: Optional[list[str]] = typer.Option(None, help="task knob key=value (repeatable)"),
    strategies: Optional[str] = typer.Option(None, help="comma-separated strategies, e.g. majority,best_of_n,beam"),
    budgets: Optional[str] = typer.Option(None, help="comma-separated budgets N, e.g. 1,2,4,8,16"),
    scorer: Optional[str] = typer.Option(None, help="'verifier', a PRM directory, or 'none'"),
    n_problems: Optional[int] = typer.Option(None, help="number of problems"),
    beam_width: Optional[int] = typer.Option(None, help="M for the tree strategies (min(M, N) at small N)"),
    temperature: Optional[float] = typer.Option(None, help="sampling temperature"),
    max_tokens: Optional[int] = typer.Option(None, help="generated tokens per solution, at most"),
    difficulty: Optional[str] = typer.Option(None, help="difficulty bins from 'pass_rate' (gold) or 'score'"),
    bins: Optional[int] = typer.Option(None, help="difficulty bins for compute-optimal selection"),
    engine: Optional[str] = EngineOpt,
    api_key: Optional[str] = ApiKeyOpt,
    max_concurrency: Optional[int] = ConcurrencyOpt,
    seed: Optional[int] = typer.Option(None, help="seed"),
):
    """Sweep strategies x budgets: scaling table, JSON, plot, and compute-optimal selection."""
    from ponder.config import to_dict, write_yaml
    from ponder.search.base import get_strategy
    from ponder.search.run import setup
    from ponder.search.scale import ScaleConfig, plot_scaling, run_scale, table_markdown

    try:
        cfg = _config(ScaleConfig, config, model=model, task=task, strategies=_csv(strategies),
                      budgets=_csv(budgets, int), scorer=scorer, n_problems=n_problems, beam_width=beam_width,
                      temperature=temperature, max_tokens=max_tokens, difficulty=difficulty, bins=bins, seed=seed,
                      task_args=_task_args(task_arg) or None, engine=engine)
        _engine_env(api_key, max_concurrency)
        for s in cfg.strategies:
            get_strategy(s)
        if not cfg.budgets or any(b < 1 for b in cfg.budgets):
            raise ValueError(f"budgets must be positive integers, got {cfg.budgets}")
        ctx, problems = setup(cfg.model, cfg.task, cfg.task_args, cfg.scorer, cfg.n_problems, cfg.split, cfg.seed,
                              _resolve_run_model, cfg.engine)
        runs = sum(1 if s == "greedy" else len(cfg.budgets) for s in cfg.strategies) * len(problems)
        bar, tick = _progress(runs, "scale")
        with bar:
            out = run_scale(ctx, problems, cfg, tick)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    run_dir = runs_dir / run
    run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(run_dir / "config.yaml", to_dict(cfg))
    (run_dir / "scale.json").write_text(json.dumps(out, indent=2))
    table = table_markdown(out["rows"])
    (run_dir / "scale.md").write_text(table + "\n")
    plot_scaling(out["rows"], run_dir / "scale.png", title=f"{cfg.task} {cfg.task_args or ''} ({len(problems)} problems)")
    console.print(table, markup=False)
    if "compute_optimal" in out:
        console.print_json(json.dumps(out["compute_optimal"]["choices"]))
    console.print(f"run directory: {run_dir}")
