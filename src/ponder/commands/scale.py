"""`ponder scale`: sweep strategies x budgets over a problem set: scaling table, plot, and the compute-optimal strategy per difficulty.

The whole sweep is checked before anything runs. Each (problem, strategy, budget) record is
appended to the run's cells.jsonl as it is computed, so a killed sweep resumes where it
stopped; a rerun with other options is refused (`batch` and the worker options aside: they
change how the records are computed, not what they are).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ponder.config import require, to_dict
from ponder.options import DeviceField, RunOptions
from ponder.search.scale import ScaleConfig


@dataclass
class Config(ScaleConfig, DeviceField, RunOptions):
    run: str = "scale"


def run(cfg: Config, progress: bool = True) -> dict:
    from contextlib import nullcontext

    from ponder.commands.common import progress as progress_bar
    from ponder.commands.common import resolve_task, search_context, search_worker
    from ponder.commands.search import check
    from ponder.runs import atomic_write, start_run, write_json
    from ponder.parallel import NOT_CONFIG, check_workers
    from ponder.pipeline.plots import plot_scaling
    from ponder.search.scale import run_scale, sweep_cells, table_markdown, validate_sweep

    from ponder.commands.common import check_samples, server_default_model
    from ponder.config import ConfigError

    check(cfg)
    require(cfg, positive=("n_problems", "bins"), choices={"difficulty": ("pass_rate", "score"),
                                                                "compute": ("generated", "total")})
    if not cfg.strategies:
        raise ConfigError("--strategies is empty: name at least one strategy to sweep, e.g. --strategies "
                          "greedy,majority,best_of_n")
    if not cfg.budgets:
        raise ConfigError("--budgets is empty: give at least one budget N, e.g. --budgets 1,4,16")
    validate_sweep(cfg)
    if all(isinstance(b, int) for b in cfg.budgets):
        top = max(cfg.budgets)
        check_samples(top * (cfg.n_problems if cfg.batch else 1), top, cfg.max_tokens, "--budgets")
    server_default_model(cfg)
    check_workers(cfg.workers, cfg.ray_address)
    local = cfg.workers <= 1
    resolve_task(cfg, cfg.model, cfg.engine)
    ctx, problems = search_context(cfg.model, cfg.engine, cfg.task, cfg.task_args, cfg.scorer, cfg.n_problems,
                                   cfg.split, cfg.seed, open_policy=local, device=cfg.device)
    run_dir = Path(cfg.runs_dir) / cfg.run
    start_run(run_dir, to_dict(cfg), "scale", ignore=("run", "runs_dir", "batch", *NOT_CONFIG))
    runs = len(sweep_cells(cfg)) * len(problems)
    bar, tick = progress_bar(runs, "scale")
    with ctx.generator if local else nullcontext(), bar if progress else nullcontext():
        out = run_scale(ctx, problems, cfg, tick, cells=run_dir / "cells.jsonl", setup=partial(search_worker, cfg))
    write_json(run_dir / "scale.json", out)
    table = table_markdown(out["rows"], cfg.compute)
    note = out.get("compute_optimal", {}).get("difficulty")
    if note:
        table += f"\n\nCompute-optimal difficulty bins: {note}."
    atomic_write(run_dir / "scale.md", table + "\n")
    plot_scaling(out["rows"], run_dir / "scale.png", compute=cfg.compute, title=f"{cfg.task} {cfg.task_args or ''} ({len(problems)} problems)")
    return {"table": table, "choices": out.get("compute_optimal", {}).get("choices"), "run_dir": str(run_dir)}


def show(out: dict, console) -> None:
    import json

    console.print(out["table"], markup=False)
    if out["choices"]:
        console.print_json(json.dumps(out["choices"], default=str))
    console.print(f"run directory: {out['run_dir']}")
