"""`ponder report RUN`: an HTML report (curves, evaluations, summary, scaling sweep, config) for any run directory or result file.

RUN is a run's name under --runs-dir, or the path of a run directory (`runs/demo/rl`, a stage of
the demo), or of a JSON result that `ponder eval`, `search` or `eval-rm` wrote with --output.
The page is written beside what it reports on, self-contained with its plots embedded:
RUN/report.html (and report.md), or FILE.html (and FILE.md) for a result file.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ponder.options import RunOptions


@dataclass
class Config(RunOptions):
    target: str | None = field(default=None, metadata={"positional": "RUN"})
    """the run to report on: a name under --runs-dir, a run directory, or a result file (eval, search, eval-rm --output)"""
    run: str | None = None
    """the run to report on, by its name under --runs-dir (the same as RUN)"""


def run(cfg: Config) -> dict:
    from pathlib import Path

    from ponder.config import ConfigError
    from ponder.pipeline.run_report import write_run_report

    if cfg.target and cfg.run and cfg.target != cfg.run:
        raise ConfigError(f"two runs named: {cfg.target} and --run {cfg.run}; give one")
    if cfg.run:
        target = Path(cfg.runs_dir) / cfg.run
        if not target.is_dir():
            raise ConfigError(f"--run {cfg.run}: no such run directory {target}")
    elif cfg.target:
        named = Path(cfg.runs_dir) / cfg.target
        target = named if named.exists() else Path(cfg.target)
        if not target.exists():
            raise ConfigError(f"{cfg.target}: no run of that name in {cfg.runs_dir}/ and no such directory or file")
    else:
        raise ConfigError("which run? ponder report NAME (a run in --runs-dir), or the path of a run directory or "
                          "of a result file (eval, search, eval-rm --output)")
    return {"report": str(write_run_report(target))}
