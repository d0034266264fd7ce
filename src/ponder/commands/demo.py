"""`ponder demo`: the main job: SFT, annotation, PRM, RL and test-time scaling on countdown, with a report; resumable.

Each stage is cached in the run directory, so a rerun skips what is done and a killed run
resumes; a rerun with other options is refused (`--force` starts the run over). `--quick` runs
the same pipeline on small budgets (about a minute).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ponder.config import field_values, to_dict
from ponder.pipeline.config import QUICK, DemoConfig


@dataclass
class Config(DemoConfig):
    run: str = "demo"
    """run name: outputs go to <runs-dir>/<run>/ (with --quick and no --run: <runs-dir>/demo-quick/)"""
    runs_dir: str = "runs"
    """parent folder of run directories"""
    quick: bool = False
    """same pipeline on small budgets (about a minute); options given explicitly still apply"""
    force: bool = False
    """start the run over: delete its stage outputs and rerun every stage"""


def pipeline_config(cfg: Config) -> DemoConfig:
    """The demo's own options, with --quick's small budgets under any option set explicitly
    (typed or in the --config file, even when equal to the default)."""
    from ponder.config import given

    values = field_values(cfg, DemoConfig)
    if cfg.quick:
        typed = given(cfg)
        if typed is None:  # a config built in code: what differs from the default was set
            defaults = DemoConfig()
            typed = {k for k in QUICK if values[k] != getattr(defaults, k)}
        values.update({k: v for k, v in QUICK.items() if k not in typed})
    return DemoConfig(**values)


def run(cfg: Config) -> dict:
    from ponder.config import given
    from ponder.parallel import NOT_CONFIG, check_workers
    from ponder.pipeline.demo import run_demo
    from ponder.runs import start_run

    dc = pipeline_config(cfg)
    dc.check()
    run_named = "run" in given(cfg) if given(cfg) is not None else cfg.run != "demo"
    run_dir = Path(cfg.runs_dir) / (cfg.run + ("-quick" if cfg.quick and not run_named else ""))
    if cfg.force:
        # Training stages resume from their checkpoints and annotation from its records, so
        # starting over means removing them, not just the stage markers.
        for sub in ("stages", "init", "sft", "annotate", "prm", "rl", "config.yaml"):
            target = run_dir / sub
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    check_workers(dc.workers, dc.ray_address)
    start_run(run_dir, to_dict(dc), "demo", start_over="add --force", ignore=("run", "runs_dir", *NOT_CONFIG))
    summary = run_demo(dc, run_dir)
    return {"run_dir": str(run_dir), "eval": summary["eval"]}


def show(out: dict, console) -> None:
    import json

    console.print(f"run directory: {out['run_dir']}")
    print(json.dumps(out["eval"]))
