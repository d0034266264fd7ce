"""`ponder train-rm`: train a process (PRM) or outcome (ORM) reward model on automatically labelled data; resumable.

A PRM learns from stepwise-supervision rows (`ponder annotate`'s stepwise_<method>.jsonl), an
ORM from prompt/completion/label rows (orm.jsonl). A rerun with other options is refused.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ponder.config import require, to_dict
from ponder.train.config import RESUME_IGNORES, RewardModelConfig
from ponder.options import RunOptions


@dataclass
class Config(RewardModelConfig, RunOptions):
    run: str = "rm"
    kind: str = "prm"
    """prm (stepwise labels, a score per step) or orm (outcome labels, one score)"""
    data: str = "runs/annotate/stepwise_omega_prm.jsonl"
    """stepwise-supervision file (prm) or prompt/completion/label file (orm)"""
    model: str = "runs/demo/sft/model"
    """causal LM whose body initialises the reward model (usually the policy), or a run name"""
    aggregation: str = "last"
    """how a PRM's step scores combine into a solution score: last, min, prod, mean"""


def run(cfg: Config, progress: bool = True) -> dict:
    from ponder.commands.common import input_file, resolve_model, train_device
    from ponder.rewards.model import AGGREGATIONS, new_reward_model
    from ponder.runs import start_run, write_json
    from ponder.train import distributed
    from ponder.train.rm import RewardModelTrainer, read_outcomes, read_stepwise

    require(cfg, choices={"kind": ("prm", "orm"), "aggregation": tuple(AGGREGATIONS)})
    train_device(cfg)
    data = input_file(cfg.data, "--data")
    rows = read_stepwise(data) if cfg.kind == "prm" else read_outcomes(data)
    rm = new_reward_model(resolve_model(cfg.model), cfg.kind, aggregation=cfg.aggregation)
    run_dir = Path(cfg.runs_dir) / cfg.run
    distributed.init()  # under torchrun: rank 0 writes the run directory, the others wait for it
    distributed.on_main(lambda: start_run(run_dir, to_dict(cfg), "train-rm", ignore=RESUME_IGNORES))
    final = RewardModelTrainer(rm, rows, cfg, run_dir, progress=progress).train()
    summary = {"run_dir": str(run_dir), "model_dir": str(run_dir / "model"), "examples": len(rows), **final}
    if distributed.is_main():
        write_json(run_dir / "summary.json", summary)
    return summary
