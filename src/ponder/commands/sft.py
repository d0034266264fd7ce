"""`ponder sft`: supervised fine-tuning on a task's reference solutions or a prompt-completion file; resumable.

Checks its inputs (task, data file, model) before it writes anything; a rerun of the same
command resumes from the run's last checkpoint, and a rerun with other options is refused.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ponder.config import require, to_dict
from ponder.train.config import RESUME_IGNORES, SFTConfig
from ponder.options import RunOptions


@dataclass
class Config(SFTConfig, RunOptions):
    run: str = "sft"
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


def run(cfg: Config, progress: bool = True) -> dict:
    from ponder.commands.common import input_file, train_device
    from ponder.models import model_from_spec
    from ponder.runs import start_run, write_json
    from ponder.train import distributed
    from ponder.train.sft import SFTTrainer, read_prompt_completion, reference_rows

    require(cfg, positive=("n_train",))
    train_device(cfg)
    if cfg.data:
        rows = read_prompt_completion(input_file(cfg.data, "--data"))
    else:
        from ponder.tasks import get_task

        rows = reference_rows(get_task(cfg.task, **cfg.task_args), cfg.n_train, cfg.seed)
    model, tokenizer = model_from_spec(cfg.model, seed=cfg.seed)
    run_dir = Path(cfg.runs_dir) / cfg.run
    distributed.init()  # under torchrun: rank 0 writes the run directory, the others wait for it
    distributed.on_main(lambda: start_run(run_dir, to_dict(cfg), "sft", ignore=RESUME_IGNORES))
    final = SFTTrainer(model, tokenizer, rows, cfg, run_dir, progress=progress).train()
    summary = {"run_dir": str(run_dir), "model_dir": str(run_dir / "model"), "examples": len(rows), **final}
    if distributed.is_main():
        write_json(run_dir / "summary.json", summary)
    return summary
