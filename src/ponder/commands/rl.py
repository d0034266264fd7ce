"""`ponder rl`: online RL from verifiable rewards (GRPO, Dr. GRPO, RLOO, REINFORCE++, PPO, process-supervised GRPO); resumable.

Every field of the trainer's config is an option. Rewards are named (`outcome`, `format`,
`overlong`, a user's `file.py:function`), plus optional reward models (`--orm`, `--prm`); with
`--estimator process_grpo` the PRM (or the task's exact step checker) scores each step. Inputs
are checked before the run directory is written; a rerun with other options is refused.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ponder.config import require, to_dict
from ponder.train.config import RESUME_IGNORES
from ponder.train.rl_config import RLConfig
from ponder.options import RunOptions


@dataclass
class Config(RLConfig, RunOptions):
    run: str = "rl"
    task: str | None = None
    """task to train on (train split) and evaluate on (test split); default: the model's ponder task, else arith"""
    task_args: dict = field(default_factory=dict)
    """task knobs, e.g. instruction=false"""
    model: str = "runs/sft/model"
    """policy to start from: a model dir, a .gguf, smollm2, tiny:<preset>, or a run name"""
    n_train: int = 2000
    """training problems drawn from the task"""
    n_eval: int = 200
    """held-out problems for greedy evaluation (0 = none)"""
    rewards: list[str] = field(default_factory=lambda: ["outcome"])
    """reward functions: outcome, format, overlong, or file.py:function / module:function (TRL or verl signature)"""
    reward_weights: dict = field(default_factory=dict)
    """weight per reward name, e.g. format=0.1 (default 1.0)"""
    overlong_buffer: int = 16
    """tokens before max_tokens where the overlong penalty starts (DAPO eq. 13)"""
    prm: str | None = None
    """process reward model (folder or Hub ID; ponder's, Math-Shepherd's or Qwen2.5-Math-PRM's format): the step
    scorer of process_grpo, else an extra reward (steps aggregated)"""
    prm_aggregation: str = "min"
    """how PRM step scores become one reward when the PRM is used as a reward: last, min, prod, mean"""
    orm: str | None = None
    """outcome reward model dir, added as a reward named 'orm'"""
    gen_batch_size: int | None = None
    """rows decoded together by the torch engine (default: as many as the KV cache of the longest sequence fits
    in 1 GiB, 64 to 512)"""
    engine: str = "torch"
    """rollout engine: torch (in this process, sharing the policy; torch-bf16: its Linear layers in
    bf16), vllm (weights pushed after every
    optimiser step), or the URL of a server that takes weights (`ponder serve`)"""




def build_rewards(cfg: Config, task):
    """The reward functions of a run, and the step scorer of process_grpo (a PRM, or
    "verifier" for the task's exact step checker, built once the training problems are known)."""
    from ponder.rewards.functions import RewardFunction, reward_functions, scorer_outcome_reward, scorer_step_reward
    from ponder.rewards.model import load_reward_model
    from ponder.search.scorers import load_scorer

    def load_prm(spec: str):
        """--prm: ponder's own PRM or a published one (Math-Shepherd, Qwen2.5-Math-PRM), a folder or Hub ID."""
        if spec in ("none", "verifier"):
            raise ValueError(f"--prm {spec}: give a PRM folder or Hub ID (process_grpo without --prm uses the "
                             "task's exact step checker)")
        return load_scorer(spec, task, [])

    out = reward_functions(cfg.rewards, task, cfg.max_tokens, cfg.overlong_buffer)
    if cfg.orm:
        out.append(RewardFunction("orm", scorer_outcome_reward(load_reward_model(cfg.orm))))
    process_scorer = None
    if cfg.estimator == "process_grpo":
        if cfg.prm:
            process_scorer = load_prm(cfg.prm)
        elif task.has_step_checker:
            process_scorer = "verifier"
        else:
            raise ValueError(f"process_grpo needs --prm: task {task.name!r} has no exact step checker")
    elif cfg.prm:
        out.append(RewardFunction("prm", scorer_step_reward(load_prm(cfg.prm), task.split_steps, cfg.prm_aggregation)))
    for rf in out:
        weight = cfg.reward_weights.get(rf.name, 1.0)
        try:
            rf.weight = float(weight)
        except (TypeError, ValueError):
            raise ValueError(f"--reward-weight {rf.name}={weight}: expected a number") from None
        if not math.isfinite(rf.weight):
            raise ValueError(f"--reward-weight {rf.name}={weight}: expected a finite number")
    unknown = set(cfg.reward_weights) - {rf.name for rf in out}
    if unknown:
        raise ValueError(f"reward_weights names {sorted(unknown)}, which are not among the rewards {[rf.name for rf in out]}")
    return out, process_scorer


def run(cfg: Config, progress: bool = True) -> dict:
    import torch

    from ponder.commands.common import resolve_model, resolve_task
    from ponder.models import model_from_spec
    from ponder.rewards.base import AGGREGATIONS
    from ponder.runs import start_run, write_json
    from ponder.tasks import get_task
    from ponder.train import distributed
    from ponder.train.rl import RLTrainer

    # the RL options were checked when the config was built (RLConfig.check); these are the command's
    require(cfg, positive=("n_train", "gen_batch_size"), non_negative=("n_eval", "lora_r", "overlong_buffer"),
            choices={"prm_aggregation": AGGREGATIONS})
    resolve_task(cfg, cfg.model, cfg.engine)
    task = get_task(cfg.task, **cfg.task_args)
    rewards, process_scorer = build_rewards(cfg, task)
    train = task.problems("train", n=cfg.n_train, seed=cfg.seed)
    held_out = task.problems("test", n=cfg.n_eval, seed=cfg.seed) if cfg.n_eval else []
    if process_scorer == "verifier":
        from ponder.rewards.base import VerifierScorer

        process_scorer = VerifierScorer(task, train)
    torch.manual_seed(cfg.seed)
    model, tokenizer = model_from_spec(resolve_model(cfg.model, "torch"), seed=cfg.seed)
    run_dir = Path(cfg.runs_dir) / cfg.run
    distributed.init()  # under torchrun: rank 0 writes the run directory, the others wait for it
    distributed.on_main(lambda: start_run(run_dir, to_dict(cfg), "rl", ignore=RESUME_IGNORES, extendable=("steps",)))
    trainer = RLTrainer(model, tokenizer, task, train, held_out, rewards, cfg, run_dir,
                        process_scorer=process_scorer, progress=progress, batch_size=cfg.gen_batch_size,
                        engine=cfg.engine)
    final = trainer.train()
    summary = {"run_dir": str(run_dir), "model_dir": str(run_dir / "model"), **final}
    if distributed.is_main():
        write_json(run_dir / "summary.json", summary)
    return summary
