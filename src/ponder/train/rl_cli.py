"""`ponder rl`: arguments and driver (task, model, rewards, process scorer, LoRA)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ponder.config import to_dict, write_yaml
from ponder.train.rl import RLConfig

BUILTIN_REWARDS = ("outcome", "format", "overlong")


@dataclass
class RLArgs(RLConfig):
    run: str = "rl"
    """run name: outputs go to runs/<run>/ (resumes if a checkpoint is there)"""
    runs_dir: str = "runs"
    """parent folder of run directories"""
    task: str = "arith"
    """task to train on (its train split) and evaluate on (its test split)"""
    task_args: dict = field(default_factory=dict)
    """task knobs, e.g. {instruction: false}"""
    model: str = "runs/sft/model"
    """policy to start from: a model dir, a .gguf, smollm2, or tiny:<preset>"""
    n_train: int = 2000
    """training problems drawn from the task"""
    n_eval: int = 200
    """held-out problems for greedy evaluation (0 = none)"""
    rewards: list = field(default_factory=lambda: ["outcome"])
    """reward functions: outcome, format, overlong, or file.py:function / module:function (TRL or verl signature)"""
    reward_weights: dict = field(default_factory=dict)
    """weight per reward name (default 1.0)"""
    overlong_buffer: int = 16
    """tokens before max_tokens where the overlong penalty starts (DAPO eq. 13)"""
    prm: str | None = None
    """process reward model dir: the step scorer of process_grpo, else an extra reward (steps aggregated)"""
    prm_aggregation: str = "min"
    """how PRM step scores become one reward when the PRM is used as a reward: last, min, prod, mean"""
    orm: str | None = None
    """outcome reward model dir, added as a reward named 'orm'"""
    lora_r: int = 0
    """LoRA rank (0 = full fine-tuning; >0 needs peft)"""
    lora_alpha: int = 16
    """LoRA alpha"""
    gen_batch_size: int = 64
    """rows decoded together by the generation engine"""
    engine: str = "torch"
    """rollout engine: torch (in this process, sharing the policy), vllm (weights pushed after
    every optimiser step), or the URL of a server that takes weights (`ponder serve`)"""


def _load_scorer(kind: str, path: str):
    """A saved PRM (`--prm`) or ORM (`--orm`); a clear error if the folder is not one."""
    from ponder.rewards.model import load_prm, load_reward_model

    return load_prm(path) if kind == "prm" else load_reward_model(path)


def build_rewards(args: RLArgs, task):
    from ponder.rewards.functions import (
        RewardFunction,
        format_reward,
        load_reward_function,
        outcome_reward,
        overlong_penalty,
        scorer_outcome_reward,
        scorer_step_reward,
    )

    out = []
    for spec in args.rewards:
        if spec == "outcome":
            out.append(RewardFunction("outcome", outcome_reward(task)))
        elif spec == "format":
            out.append(RewardFunction("format", format_reward(task)))
        elif spec == "overlong":
            out.append(RewardFunction("overlong", overlong_penalty(args.max_tokens, args.overlong_buffer)))
        elif ":" in spec:
            out.append(load_reward_function(spec))
        else:
            raise ValueError(f"unknown reward {spec!r}: expected one of {', '.join(BUILTIN_REWARDS)} or file.py:function")
    if args.orm:
        out.append(RewardFunction("orm", scorer_outcome_reward(_load_scorer("orm", args.orm))))
    process_scorer = None
    if args.estimator == "process_grpo":
        if args.prm:
            process_scorer = _load_scorer("prm", args.prm)
        elif task.has_step_checker:
            process_scorer = "verifier"  # built once the training problems are known
        else:
            raise ValueError(f"process_grpo needs --prm: task {task.name!r} has no exact step checker")
    elif args.prm:
        out.append(RewardFunction("prm", scorer_step_reward(_load_scorer("prm", args.prm), task.split_steps,
                                                             args.prm_aggregation)))
    for rf in out:
        rf.weight = float(args.reward_weights.get(rf.name, 1.0))
    unknown = set(args.reward_weights) - {rf.name for rf in out}
    if unknown:
        raise ValueError(f"reward_weights names {sorted(unknown)}, which are not among the rewards {[rf.name for rf in out]}")
    return out, process_scorer


def run_rl(args: RLArgs, progress: bool = True) -> dict:
    import torch

    from ponder.models import model_from_spec
    from ponder.tasks import get_task
    from ponder.train.rl import RLTrainer

    torch.manual_seed(args.seed)
    run_dir = Path(args.runs_dir) / args.run
    run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(run_dir / "config.yaml", to_dict(args))
    task = get_task(args.task, **args.task_args)
    rewards, process_scorer = build_rewards(args, task)
    train = task.problems("train", n=args.n_train, seed=args.seed)
    held_out = task.problems("test", n=args.n_eval, seed=args.seed) if args.n_eval else []
    if process_scorer == "verifier":
        from ponder.rewards.base import VerifierScorer

        process_scorer = VerifierScorer(task, train)
    model, tokenizer = model_from_spec(args.model, seed=args.seed)
    cfg = RLConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RLConfig)})
    lora = {"r": args.lora_r, "alpha": args.lora_alpha} if args.lora_r > 0 else None
    trainer = RLTrainer(model, tokenizer, task, train, held_out, rewards, cfg, run_dir, process_scorer=process_scorer,
                        progress=progress, batch_size=args.gen_batch_size, lora=lora, engine=args.engine)
    final = trainer.train()
    summary = {"run_dir": str(run_dir), "model_dir": str(run_dir / "model"), **final}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
