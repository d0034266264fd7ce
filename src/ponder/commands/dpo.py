"""`ponder dpo`: DPO on preference pairs, or Step-DPO on pairs built with the task's step checker; resumable.

With `--data`, a TRL preference file (prompt, chosen, rejected) is learned as it is. Without
it, Step-DPO pairs are built from the policy's own samples: at the first wrong step of a
sampled solution, the chosen continuation is a correct next step and the rejected one is the
wrong step (Lai et al. 2024). A rerun with other options is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ponder.config import to_dict
from ponder.train.config import RESUME_IGNORES, DPOConfig
from ponder.options import RunOptions


@dataclass
class Config(DPOConfig, RunOptions):
    run: str = "dpo"
    model: str = "runs/sft/model"
    """policy to start from (also the frozen reference), or a run name"""
    data: str | None = None
    """TRL preference file (prompt, chosen, rejected: texts or messages); without it, Step-DPO pairs are built from the task"""
    task: str | None = None
    """task for held-out evaluation and Step-DPO pairs (default: the model's ponder training task, else arith)"""
    task_args: dict = field(default_factory=dict)
    """task knobs, e.g. instruction=false"""
    engine: str = "torch"
    """engine that samples the policy (pairs, evaluation): torch, torch-bf16, vllm, or a server URL that takes weights"""


def run(cfg: Config, progress: bool = True) -> dict:
    from ponder.commands.common import input_file, resolve_model, resolve_task, train_device
    from ponder.models import model_from_spec
    from ponder.runs import start_run, write_json
    from ponder.tasks import get_task
    from ponder.train import distributed
    from ponder.train.dpo import DPOTrainer, read_preferences
    from ponder.train.policy_engine import policy_engine

    train_device(cfg)
    resolve_task(cfg, cfg.model, cfg.engine)
    task = get_task(cfg.task, **cfg.task_args)
    rows = read_preferences(input_file(cfg.data, "--data")) if cfg.data else None
    model, tokenizer = model_from_spec(resolve_model(cfg.model), seed=cfg.seed)
    run_dir = Path(cfg.runs_dir) / cfg.run
    distributed.init()  # under torchrun: rank 0 writes the run directory, the others wait for it
    distributed.on_main(lambda: start_run(run_dir, to_dict(cfg), "dpo", ignore=RESUME_IGNORES))
    gen = policy_engine(cfg.engine, model, tokenizer, run_dir, seed=cfg.seed)
    trainer = DPOTrainer(model, tokenizer, cfg, run_dir, rows=rows, task=task, generator=gen, progress=progress)
    summary = {"run_dir": str(run_dir), "model_dir": str(run_dir / "model"), "step_dpo": trainer.step_dpo,
               **trainer.train()}
    if distributed.is_main():
        write_json(run_dir / "summary.json", summary)
    return summary
