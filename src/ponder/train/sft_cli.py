"""`ponder sft`: arguments and driver (task references or a prompt-completion file)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ponder.config import to_dict, write_yaml


@dataclass
class SFTArgs:
    run: str = "sft"
    """run name: outputs go to runs/<run>/ (resumes if a checkpoint is there)"""
    task: str = "arith"
    """task whose reference solutions to learn (ignored when `data` is given)"""
    task_args: dict = field(default_factory=dict)
    """task knobs, e.g. {num_ops: 3}"""
    data: str | None = None
    """prompt-completion JSONL to train on instead of task references"""
    model: str = "tiny:4m"
    """tiny:<preset> to build from scratch, or a local model dir / .gguf / smollm2"""
    n_train: int = 20000
    """training problems drawn from the task"""
    steps: int = 600
    """optimiser steps"""
    batch_size: int = 32
    """batch size"""
    grad_accum: int = 1
    """micro-batches per optimiser step"""
    lr: float = 3e-3
    """peak learning rate"""
    warmup_steps: int = 30
    """linear warm-up steps"""
    max_len: int = 512
    """tokens per example, at most"""
    seed: int = 0
    """seed"""
    runs_dir: str = "runs"
    """parent folder of run directories"""


def run_sft(args: SFTArgs) -> dict:
    from ponder.models import model_from_spec
    from ponder.train.loop import TrainConfig
    from ponder.train.sft import read_prompt_completion, reference_rows, train_sft

    run_dir = Path(args.runs_dir) / args.run
    run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(run_dir / "config.yaml", to_dict(args))
    if args.data:
        rows = read_prompt_completion(args.data)
    else:
        from ponder.tasks import get_task

        task = get_task(args.task, **args.task_args)
        rows = reference_rows(task, args.n_train, args.seed)
    model, tokenizer = model_from_spec(args.model, seed=args.seed)
    cfg = TrainConfig(lr=args.lr, max_steps=args.steps, warmup_steps=args.warmup_steps, grad_accum=args.grad_accum,
                      seed=args.seed, eval_every=0, save_every=max(args.steps // 5, 1))
    final = train_sft(model, tokenizer, rows, run_dir, cfg, batch_size=args.batch_size, max_len=args.max_len)
    return {"run_dir": str(run_dir), "model_dir": str(run_dir / "model"), **final}
