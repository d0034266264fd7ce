"""`ponder iterate`: expert iteration (STaR / ReST-EM): sample, keep verified solutions, fine-tune; held-out accuracy per round; resumable.

Each round samples `samples` solutions per training problem from the current model, keeps
those the task's verifier accepts (the E-step, `ponder.train.iterate.verified_rows`), and
fine-tunes on them with the SFT loss (the M-step). Rounds draw fresh problems. With
`from_base` each round starts again from the first model (ReST-EM); otherwise from the
previous round's. A rerun skips finished rounds; a rerun with other options is refused.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ponder.config import to_dict
from ponder.train.config import RESUME_IGNORES, ExpertIterationConfig
from ponder.options import RunOptions


@dataclass
class Config(ExpertIterationConfig, RunOptions):
    run: str = "iterate"
    model: str = "runs/sft/model"
    """model to start from, or a run name"""
    task: str | None = None
    """task with a verifier (default: the model's ponder training task, else arith)"""
    task_args: dict = field(default_factory=dict)
    """task knobs, e.g. instruction=false"""
    engine: str = "torch"
    """engine that samples the policy: torch, torch-bf16, vllm, or a server URL that takes weights"""


def run(cfg: Config, progress: bool = True) -> dict:
    from ponder.commands.common import resolve_model, resolve_task, train_device
    from ponder.models import model_from_spec
    from ponder.runs import start_run, write_json
    from ponder.tasks import get_task
    from ponder.train.iterate import ExpertIterationTrainer
    from ponder.train.policy_engine import policy_engine

    train_device(cfg)
    resolve_task(cfg, cfg.model, cfg.engine)
    task = get_task(cfg.task, **cfg.task_args)
    start = resolve_model(cfg.model)
    model, tokenizer = model_from_spec(start, seed=cfg.seed)
    run_dir = Path(cfg.runs_dir) / cfg.run
    start_run(run_dir, to_dict(cfg), "iterate", ignore=RESUME_IGNORES, extendable=("rounds",))
    gen = policy_engine(cfg.engine, model, tokenizer, run_dir, seed=cfg.seed)
    done = ExpertIterationTrainer(model, tokenizer, task, gen, cfg, run_dir, start=start, progress=progress).train()
    summary = {"run_dir": str(run_dir), "model_dir": str(run_dir / f"round_{cfg.rounds}" / "model"), "task": cfg.task,
               "rounds": done}
    write_json(run_dir / "summary.json", summary)
    return summary


def show(out: dict, console) -> None:
    from rich.table import Table

    table = Table(title=f"expert iteration: {out['task']}")
    for col in ("round", "kept / sampled", "held-out greedy accuracy"):
        table.add_column(col)
    for rec in out["rounds"]:
        table.add_row(str(rec["round"]), f"{rec.get('kept', '-')} / {rec.get('sampled', '-')}", f"{rec['accuracy']:.3f}")
    console.print(table)
    print(json.dumps(out))
