"""The options of an RL run (`ponder rl`, `RLTrainer`), each with its docstring, and their checks."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ponder.config import ConfigError, require as check
from ponder.train.config import OptimConfig
from ponder.train.lora import LoraOptions


GROUP_ESTIMATORS = ("grpo", "dr_grpo", "rloo", "process_grpo")
"""estimators whose baseline is the other samples of a prompt's group"""


@dataclass
class RLConfig(OptimConfig, LoraOptions):
    estimator: str = "grpo"
    """advantage estimator: grpo, dr_grpo, rloo, reinforce_pp, gae (PPO with a value head), process_grpo
    (the process scorer's step rewards only: as in DeepSeekMath §4.1.3, the reward functions'
    outcome rewards do not enter its advantages and are only logged)"""
    steps: int = 50
    """RL steps (rollouts); each makes ppo_epochs * num_minibatches optimiser steps"""
    prompts_per_step: int = 8
    """prompts per rollout"""
    group_size: int = 8
    """samples per prompt (G)"""
    max_tokens: int = 64
    """generated tokens per sample, at most"""
    temperature: float = 1.0
    """sampling temperature; the policy's log-probabilities use the same temperature"""
    top_p: float = 1.0
    """nucleus sampling mass"""
    ppo_epochs: int = 1
    """passes over each rollout batch"""
    num_minibatches: int = 1
    """optimiser steps per pass"""
    loss: str = "ppo_clip"
    """policy loss: ppo_clip or vanilla"""
    epsilon_low: float = 0.2
    """lower clip range: ratio >= 1 - epsilon_low"""
    epsilon_high: float = 0.2
    """upper clip range: ratio <= 1 + epsilon_high (DAPO clip-higher uses 0.28)"""
    loss_agg: str = "token-mean"
    """token-mean, seq-mean-token-mean, or seq-mean-token-sum-norm (normaliser: max_tokens)"""
    beta: float = 0.0
    """KL coefficient to the frozen initial policy (0 = no reference model)"""
    kl_estimator: str = "k3"
    """k1, k2 or k3 (Schulman 2020). In the loss (kl_in_reward off), on-policy: k2's gradient is
    that of KL(pi||pi_ref); k3's (DeepSeekMath's choice) is that of the forward KL(pi_ref||pi),
    equal to first order only; k1's is zero in expectation. As a reward penalty, k1 gives the
    KL(pi||pi_ref) gradient and k2, k3 do not. Per token, contexts held fixed (see kl_penalty)"""
    kl_in_reward: bool = False
    """subtract beta * KL from the reward instead of adding it to the loss (use k1 there)"""
    dynamic_sampling: bool = False
    """DAPO §3.2: drop groups whose accuracy (the task's verifier) is 0 or 1 and refill with new
    prompts; a format or length term in the reward does not keep an all-correct group"""
    max_refills: int = 4
    """extra sampling rounds per step for dynamic sampling"""
    tis_cap: float = 2.0
    """truncated importance sampling (Yao et al. 2025, "Your Efficient RL Framework Secretly Brings
    You Off-Policy RL Training"; verl's rollout correction): each token's policy loss is weighted
    by min(pi_trainer / pi_sampler, tis_cap), so rollouts from an engine whose distribution is not
    the trainer's (torch-bf16, vLLM, a server) are corrected; 0 = off. The in-process fp32 torch
    engine samples from the trainer's own weights and is not corrected. The sampler-trainer KL
    is logged either way (rollout_kl)"""
    mask_truncated: bool = False
    """exclude completions cut at max_tokens from the loss (DAPO overlong filtering)"""
    gamma: float = 1.0
    """discount for gae and reinforce_pp"""
    lam: float = 0.95
    """GAE lambda"""
    vf_coef: float = 0.5
    """value-loss weight (gae)"""
    value_clip: float = 0.2
    """value clipping range (gae)"""
    entropy_coef: float = 0.0
    """entropy bonus weight"""
    lr: float = 1e-4
    """peak learning rate"""
    min_lr_ratio: float = 1.0
    """cosine decay to lr * min_lr_ratio over the run (1: constant after warm-up)"""
    warmup_steps: int = 0
    """linear warm-up, in optimiser steps"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    max_grad_norm: float = 1.0
    """gradient clipping (0 = off)"""
    eval_every: int = 10
    """RL steps between held-out evaluations (0 = only at the end)"""
    save_every: int = 10
    """RL steps between checkpoints (0 = only at the end)"""
    seed: int = 0
    """seed for prompt order and sampling"""

    def __post_init__(self):
        super().__post_init__()
        self.check()

    def check(self) -> None:
        # the registries live beside their (torch) implementations; imported here, not at the
        # top, so that the command line's start-up does not load torch
        from ponder.train.advantages import ESTIMATORS
        from ponder.train.policy_loss import AGGREGATIONS, KL_ESTIMATORS, POLICY_LOSSES

        if self.estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {self.estimator!r}: expected one of {', '.join(sorted(ESTIMATORS))}")
        if self.loss not in POLICY_LOSSES:
            raise ValueError(f"unknown loss {self.loss!r}: expected one of {', '.join(sorted(POLICY_LOSSES))}")
        if self.loss_agg not in AGGREGATIONS:
            raise ValueError(f"unknown loss_agg {self.loss_agg!r}: expected one of {', '.join(AGGREGATIONS)}")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"kl_estimator must be one of {', '.join(KL_ESTIMATORS)}, got {self.kl_estimator!r}")
        check(self, positive=("steps", "prompts_per_step", "group_size", "max_tokens", "ppo_epochs",
                              "num_minibatches"), non_negative=("eval_every", "save_every", "temperature", "beta"))
        self.lora()  # bad LoRA values are refused here, not after the run started
        if self.group_size < 2 and self.estimator in GROUP_ESTIMATORS:
            raise ConfigError(f"--group-size {self.group_size}: {self.estimator} compares each sample with the others "
                              "of its group (the baseline), so it needs at least 2 samples per prompt")
        if not 0 <= self.epsilon_low < 1:  # the ratio's lower clip 1 - epsilon_low must stay above 0
            raise ConfigError(f"--epsilon-low {self.epsilon_low}: expected a number in [0, 1)")
        if not (0 <= self.epsilon_high and math.isfinite(self.epsilon_high)):
            raise ConfigError(f"--epsilon-high {self.epsilon_high}: expected a finite number >= 0")
        if self.prompts_per_step * self.group_size < self.num_minibatches:
            raise ValueError("num_minibatches is larger than the rollout batch (prompts_per_step * group_size)")
        if self.temperature <= 0:
            raise ValueError("RL samples need temperature > 0")
        if self.top_p < 1:
            raise ValueError(f"top_p={self.top_p}: RL samples need top_p = 1, because the trainer's log-probabilities "
                             "are of the whole distribution and top_p < 1 samples from a truncated one (the "
                             "importance ratios would be wrong)")
        if self.tis_cap < 0:
            raise ValueError(f"tis_cap must be >= 0 (0 = off), got {self.tis_cap}")
        if self.estimator == "process_grpo" and self.beta > 0 and self.kl_in_reward:
            raise ValueError("process_grpo's advantages read only the step rewards, so a KL subtracted from the "
                             "reward would be dropped: keep the KL in the loss (no --kl-in-reward) with process_grpo")

    @property
    def updates_per_step(self) -> int:
        return self.ppo_epochs * self.num_minibatches
