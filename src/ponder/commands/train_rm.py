"""`ponder train-rm`: train a process (PRM) or outcome (ORM) reward model on automatically labelled data; resumable.

A PRM learns from stepwise-supervision rows (`ponder annotate`'s stepwise_<method>.jsonl), an
ORM from prompt/completion/label rows (orm.jsonl). A rerun with other options is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ponder.commands.common import train_device
from ponder.config import ConfigError, require, to_dict
from ponder.models.device import DeviceOptions
from ponder.train.lora import LoraOptions


@dataclass
class Config(DeviceOptions, LoraOptions):
    run: str = "rm"
    """run name: outputs go to <runs-dir>/<run>/ (a rerun with the same options resumes)"""
    runs_dir: str = "runs"
    """parent folder of run directories"""
    kind: str = "prm"
    """prm (stepwise labels, a score per step) or orm (outcome labels, one score)"""
    data: str = "runs/annotate/stepwise_omega_prm.jsonl"
    """stepwise-supervision file (prm) or prompt/completion/label file (orm)"""
    model: str = "runs/demo/sft/model"
    """causal LM whose body initialises the reward model (usually the policy), or a run name"""
    hard: bool = False
    """train on hard labels (label > 0) instead of soft MC fractions"""
    aggregation: str = "last"
    """how a PRM's step scores combine into a solution score: last, min, prod, mean"""
    steps: int = 400
    """optimiser steps"""
    batch_size: int = 32
    """examples per micro-batch"""
    grad_accum: int = 1
    """micro-batches per optimiser step (under torchrun each process takes whole micro-batches:
    use a multiple of the number of processes)"""
    lr: float = 1e-3
    """peak learning rate"""
    warmup_steps: int = 20
    """linear warm-up steps"""
    max_len: int = 512
    """tokens per example, at most"""
    seed: int = 0
    """seed for data order and the head's initialisation"""


def run(cfg: Config, progress: bool = True) -> dict:
    from ponder.commands.common import input_file, resolve_model
    from ponder.rewards.model import AGGREGATIONS, new_reward_model
    from ponder.runs import start_run, write_json
    from ponder.train import distributed
    from ponder.train.loop import TrainConfig
    from ponder.train.rm import read_outcomes, read_stepwise, train_reward_model

    require(cfg, positive=("steps", "batch_size", "grad_accum", "max_len", "lr"), non_negative=("warmup_steps",),
            choices={"kind": ("prm", "orm"), "aggregation": tuple(AGGREGATIONS)})
    if cfg.lora_r and not cfg.lora_merge:
        raise ConfigError("--no-lora-merge: a reward model is saved with its adapters merged (its head is not a "
                          "PEFT module); drop the flag")
    data = input_file(cfg.data, "--data")
    rows = read_stepwise(data) if cfg.kind == "prm" else read_outcomes(data)
    rm = new_reward_model(resolve_model(cfg.model), cfg.kind, aggregation=cfg.aggregation)
    run_dir = Path(cfg.runs_dir) / cfg.run
    distributed.init()  # under torchrun: rank 0 writes the run directory, the others wait for it
    distributed.on_main(lambda: start_run(run_dir, to_dict(cfg), "train-rm"))
    tc = TrainConfig(lr=cfg.lr, max_steps=cfg.steps, warmup_steps=cfg.warmup_steps, grad_accum=cfg.grad_accum,
                     seed=cfg.seed, eval_every=0, save_every=max(cfg.steps // 4, 1), log_every=10,
                     **train_device(cfg))
    final = train_reward_model(rm, rows, run_dir, tc, cfg.kind, batch_size=cfg.batch_size, hard=cfg.hard, lora=cfg.lora(),
                               max_len=cfg.max_len, progress=progress)
    summary = {"run_dir": str(run_dir), "model_dir": str(run_dir / "model"), "examples": len(rows), **final}
    if distributed.is_main():
        write_json(run_dir / "summary.json", summary)
    return summary
