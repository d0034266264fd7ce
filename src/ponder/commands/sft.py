"""`ponder sft`: supervised fine-tuning on a task's reference solutions or a prompt-completion file; resumable.

Checks its inputs (task, data file, model) before it writes anything; a rerun of the same
command resumes from the run's last checkpoint, and a rerun with other options is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ponder.commands.common import train_device
from ponder.config import require, to_dict
from ponder.models.device import DeviceOptions
from ponder.train.lora import LoraOptions


@dataclass
class Config(DeviceOptions, LoraOptions):
    run: str = "sft"
    """run name: outputs go to <runs-dir>/<run>/ (a rerun with the same options resumes)"""
    runs_dir: str = "runs"
    """parent folder of run directories"""
    task: str = "arith"
    """task (or dataset path) whose reference solutions to learn; ignored when `data` is given"""
    task_args: dict = field(default_factory=dict)
    """task knobs, e.g. num_ops=3"""
    data: str | None = None
    """prompt-completion or messages file (JSONL, JSON or Parquet; TRL's formats) to train on instead of task references"""
    model: str = "tiny:4m"
    """tiny:<1m|4m|20m> to build from scratch, or a local model dir, a .gguf, or smollm2"""
    n_train: int = 20000
    """training problems drawn from the task"""
    steps: int = 600
    """optimiser steps"""
    batch_size: int = 32
    """examples per micro-batch"""
    grad_accum: int = 1
    """micro-batches per optimiser step"""
    lr: float = 3e-3
    """peak learning rate"""
    warmup_steps: int = 30
    """linear warm-up steps"""
    max_len: int = 512
    """tokens per example, at most"""
    seed: int = 0
    """seed for data order and initialisation"""


def run(cfg: Config, progress: bool = True) -> dict:
    from ponder.commands.common import input_file
    from ponder.models import model_from_spec
    from ponder.runs import start_run, write_json
    from ponder.train import distributed
    from ponder.train.loop import TrainConfig
    from ponder.train.sft import read_prompt_completion, reference_rows, train_sft

    require(cfg, positive=("n_train", "steps", "batch_size", "grad_accum", "max_len", "lr"), non_negative=("warmup_steps",))
    if cfg.data:
        rows = read_prompt_completion(input_file(cfg.data, "--data"))
    else:
        from ponder.tasks import get_task

        rows = reference_rows(get_task(cfg.task, **cfg.task_args), cfg.n_train, cfg.seed)
    model, tokenizer = model_from_spec(cfg.model, seed=cfg.seed)
    run_dir = Path(cfg.runs_dir) / cfg.run
    distributed.init()  # under torchrun: rank 0 writes the run directory, the others wait for it
    distributed.on_main(lambda: start_run(run_dir, to_dict(cfg), "sft"))
    tc = TrainConfig(lr=cfg.lr, max_steps=cfg.steps, warmup_steps=cfg.warmup_steps, grad_accum=cfg.grad_accum,
                     seed=cfg.seed, eval_every=0, save_every=max(cfg.steps // 5, 1),
                     **train_device(cfg))
    final = train_sft(model, tokenizer, rows, run_dir, tc, batch_size=cfg.batch_size, max_len=cfg.max_len,
                      lora=cfg.lora(), lora_merge=cfg.lora_merge, progress=progress)
    summary = {"run_dir": str(run_dir), "model_dir": str(run_dir / "model"), "examples": len(rows), **final}
    if distributed.is_main():
        write_json(run_dir / "summary.json", summary)
    return summary
