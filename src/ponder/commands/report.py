"""`ponder report`: an HTML report (curves, summary, scaling sweep, config) for any run directory.

Reads what the run left in <runs-dir>/<run>/ (metrics.jsonl, summary.json, scale.json,
config.yaml) and writes report.html there, self-contained with its plots embedded, and
report.md beside it. A stage of the demo is a run too: `--runs-dir runs/demo --run rl`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ponder.options import RunOptions


@dataclass
class Config(RunOptions):
    run: str = ""
    """the run to report on: its name under --runs-dir"""


def run(cfg: Config) -> dict:
    from pathlib import Path

    from ponder.config import ConfigError
    from ponder.pipeline.run_report import write_run_report

    run_dir = Path(cfg.runs_dir) / cfg.run
    if not run_dir.is_dir():
        raise ConfigError(f"--run {cfg.run}: no such run directory {run_dir}")
    return {"report": str(write_run_report(run_dir))}
