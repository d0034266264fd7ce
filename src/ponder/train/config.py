"""The trainers' configs, one per method (as TRL keeps them apart from the trainers), all free
of torch so that the command line, whose flags are generated from them, starts without it.

    OptimConfig          AdamW and its schedule, the device, the seed; checked when built
      TrainConfig        + steps, gradient accumulation, log / eval / save intervals
        SFTConfig, RewardModelConfig, DPOConfig
      ExpertIterationConfig (rounds of SFT), RLConfig (rl_config.py: counts rollout steps)

Each checks its own values in `__post_init__`: a value no run can use is a ConfigError naming
its option, raised once, where the config is made (by a command's flags or in code).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from ponder.config import ConfigError, field_values, require as check
from ponder.options import DeviceOptions
from ponder.seeds import derive
from ponder.train.lora import LoraOptions
from ponder.train.tracking import resolve_report_to

RESUME_IGNORES = ("run", "runs_dir", "device", "report_to")
"""options a rerun of a training run may change without being refused: where the run lives, where
it runs, and the trackers its metrics also go to (they copy metrics.jsonl; they change nothing trained)"""


@dataclass
class OptimConfig(DeviceOptions):
    """The optimiser's knobs (AdamW, warm-up + cosine), which every trainer's config shares.
    Checked when built: a value no run can use is a ConfigError naming its option."""

    lr: float = 1e-3
    """peak learning rate"""
    min_lr_ratio: float = 0.1
    """cosine decays to lr * min_lr_ratio (1: constant after warm-up)"""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to norms and biases)"""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas"""
    warmup_steps: int = 50
    """linear warm-up steps"""
    max_grad_norm: float = 1.0
    """gradient clipping (0 = off)"""
    seed: int = 0
    """seed of the run's random draws (data order, sampling, initialisation)"""
    report_to: list[str] = field(default_factory=list)
    """experiment trackers the metrics also go to: tensorboard, wandb, mlflow, all (those installed) or none;
    each writes inside the run directory (MLflow: unless $MLFLOW_TRACKING_URI is set)"""

    def __post_init__(self):
        self.report_to = resolve_report_to(self.report_to)  # an unknown or uninstalled tracker fails here
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr (--lr) must be a finite number > 0, got {self.lr}")  # the schedule divides by it
        check(self, non_negative=("weight_decay", "warmup_steps", "max_grad_norm"), probability=("min_lr_ratio",))
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas (--betas) must be two numbers in [0, 1), got {self.betas}")


@dataclass
class TrainConfig(OptimConfig):
    """The loop's knobs: an OptimConfig plus how long, how the steps are batched, and when to
    log, evaluate and save. Each trainer's config (SFTConfig, RewardModelConfig, DPOConfig,
    ExpertIterationConfig) subclasses it; RLConfig counts rollout steps and builds one."""

    steps: int = 1000
    """optimiser steps"""
    grad_accum: int = 1
    """micro-batches per optimiser step (under torchrun each process takes whole micro-batches:
    use a multiple of the number of processes)"""
    eval_every: int = 0
    """steps between evaluations, when the trainer has one (0 = only at the end)"""
    save_every: int | None = None
    """steps between checkpoints (default: five a run; 0 = only at the end)"""
    log_every: int | None = 10
    """steps between metrics.jsonl records (None: 50 records a run)"""

    def __post_init__(self):
        super().__post_init__()
        check(self, positive=("steps", "grad_accum", "log_every"), non_negative=("eval_every", "save_every"))

    @property
    def checkpoint_every(self) -> int:
        """Steps between checkpoints, the default resolved."""
        return max(self.steps // 5, 1) if self.save_every is None else self.save_every

    @property
    def log_interval(self) -> int:
        """Steps between metrics records, the default resolved."""
        return max(self.steps // 50, 1) if self.log_every is None else self.log_every


@dataclass
class SFTConfig(TrainConfig, LoraOptions):
    """Supervised fine-tuning: the loop's knobs, LoRA, and how examples are batched."""

    lr: float = 3e-3
    """peak learning rate"""
    steps: int = 600
    """optimiser steps"""
    warmup_steps: int = 30
    """linear warm-up steps"""
    batch_size: int = 32
    """examples per micro-batch"""
    max_len: int = 512
    """tokens per example, at most"""

    def __post_init__(self):
        super().__post_init__()
        check(self, positive=("batch_size", "max_len"))


@dataclass
class RewardModelConfig(TrainConfig, LoraOptions):
    """Reward-model training: the loop's knobs, LoRA on the body (the head trains whole), and
    how examples are built and batched."""

    lr: float = 1e-3
    """peak learning rate"""
    steps: int = 400
    """optimiser steps"""
    warmup_steps: int = 20
    """linear warm-up steps"""
    batch_size: int = 32
    """examples per micro-batch"""
    max_len: int = 512
    """tokens per example, at most"""
    hard: bool = False
    """train on hard labels (label > 0) instead of soft MC fractions"""
    lm_coef: float | None = None
    """weight of the body's own next-token loss on the solution tokens, added to the step BCE so
    that it keeps what it knows as a language model (read through the LM head tied to its input
    embeddings; the saved reward model is unchanged); None or 0 = step BCE alone (None, so that
    runs started before the option existed still resume)"""

    def __post_init__(self):
        super().__post_init__()
        check(self, positive=("batch_size", "max_len"), non_negative=("lm_coef",))
        if self.lora_r and not self.lora_merge:
            raise ConfigError("--no-lora-merge: a reward model is saved with its adapters merged (its head is not a "
                              "PEFT module); drop the flag")


@dataclass
class DPOConfig(TrainConfig, LoraOptions):
    """DPO and Step-DPO: the loop's knobs, LoRA, the loss's beta, and how Step-DPO pairs are
    built from the policy's own samples when no preference file is given."""

    lr: float = 1e-4
    """peak learning rate"""
    steps: int = 100
    """optimiser steps"""
    warmup_steps: int = 10
    """linear warm-up steps"""
    log_every: int | None = None
    """steps between metrics.jsonl records (default: 50 records a run)"""
    beta: float = 0.1
    """DPO beta: strength of the implicit KL to the reference"""
    batch_size: int = 16
    """pairs per micro-batch"""
    max_len: int = 512
    """tokens per prompt + completion, at most"""
    step: bool = False
    """Step-DPO: pairs are single steps (no EOS appended); implied when pairs are built from the task"""
    n_problems: int = 500
    """training problems sampled to build Step-DPO pairs"""
    samples: int = 4
    """solutions sampled per problem to build Step-DPO pairs"""
    temperature: float = 1.0
    """sampling temperature for building pairs"""
    max_tokens: int = 128
    """generated tokens per solution, at most (pair building and evaluation)"""
    n_eval: int = 200
    """held-out problems for greedy accuracy before and after (0 = none)"""

    def __post_init__(self):
        super().__post_init__()
        check(self, positive=("batch_size", "max_len", "n_problems", "samples", "max_tokens"),
              non_negative=("beta", "temperature", "n_eval"))


@dataclass
class ExpertIterationConfig(OptimConfig, LoraOptions):
    """Rounds of sample -> keep the verified -> SFT. The optimiser's knobs apply to every
    round's SFT (its warm-up capped at the round's steps); LoRA adapters are merged after
    every round, so the next round adapts the improved model."""

    rounds: int = 3
    """sample -> filter -> SFT rounds"""
    n_problems: int = 500
    """training problems per round"""
    samples: int = 4
    """solutions sampled per problem"""
    temperature: float = 1.0
    """sampling temperature"""
    max_tokens: int = 128
    """generated tokens per solution, at most"""
    sft_steps: int = 100
    """SFT optimiser steps per round"""
    batch_size: int = 32
    """SFT batch size"""
    warmup_steps: int = 10
    """linear warm-up steps of each round's SFT"""
    from_base: bool = False
    """fine-tune the starting model each round (ReST-EM) instead of the previous round's"""
    n_eval: int = 200
    """held-out problems for greedy accuracy per round"""

    def __post_init__(self):
        super().__post_init__()
        check(self, positive=("rounds", "n_problems", "samples", "max_tokens", "sft_steps", "batch_size", "n_eval"),
              non_negative=("temperature",))
        if self.lora_r and not self.lora_merge:
            raise ConfigError("--no-lora-merge: expert iteration merges the adapters after every round (the next "
                              "round samples from the improved model); drop the flag")

    def sft_config(self, r: int):
        """Round r's SFT config."""
        round_changes = {"warmup_steps": min(self.warmup_steps, self.sft_steps),
                         "seed": derive(self.seed, "iterate-round", r)}
        return SFTConfig(**{**field_values(self, OptimConfig), **round_changes}, lora_r=self.lora_r,
                         lora_alpha=self.lora_alpha, lora_targets=list(self.lora_targets), lora_merge=True,
                         steps=self.sft_steps, batch_size=self.batch_size)
