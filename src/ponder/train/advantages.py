"""Advantage estimators: pure functions from rewards to per-token advantages.

Every estimator returns advantages of shape (B, T) over the response tokens of a rollout
batch, zero on padding. Rows come in groups: the `group_size` samples of one prompt are
contiguous, so `rewards.view(-1, group_size)` is (prompts, group_size). Shapes:

    rewards        (B,)     one scalar reward per completion
    token_rewards  (B, T)   per-token rewards (the outcome on the last token, minus any
                            KL-in-reward penalty on every token)
    mask           (B, T)   1 on response tokens, 0 on padding
    values         (B, T)   value-head estimates (gae only)

The registry maps a name to a function of `AdvantageInputs`, so the trainer can switch
estimators by name; the math lives in the plain functions it calls.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class AdvantageInputs:
    rewards: torch.Tensor
    """(B,) sequence rewards (KL-in-reward already subtracted when it is on)"""
    token_rewards: torch.Tensor
    """(B, T) token rewards: sequence reward on the last response token, minus KL-in-reward"""
    mask: torch.Tensor
    """(B, T) response mask"""
    group_size: int
    """samples per prompt; rows of one prompt are contiguous"""
    values: torch.Tensor | None = None
    """(B, T) value estimates, for gae"""
    step_rewards: list[list[float]] | None = None
    """per row, one reward per step, for process-supervised GRPO"""
    step_ends: list[list[int]] | None = None
    """per row, the response-token index at which each step ends"""
    gamma: float = 1.0
    """discount (gae, reinforce_pp)"""
    lam: float = 0.95
    """GAE lambda"""


def _groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    return rewards.view(-1, group_size)


def centered(x: torch.Tensor) -> torch.Tensor:
    """x minus the mean of each row, (N, G) -> (N, G), with the mean taken around the row's
    first entry: mean = x_0 + mean(x - x_0). A row of equal values then gives exact zeros.
    The plain x - x.mean() does not: in float32, the mean of eight copies of 0.7 is one ulp
    off 0.7, and dividing that leftover by a near-zero group std makes it an advantage of
    +-0.056 for a group that carries no signal at all."""
    d = x - x[:, :1]
    return d - d.mean(dim=1, keepdim=True)


def grpo_advantages(rewards: torch.Tensor, mask: torch.Tensor, group_size: int, eps: float = 1e-6) -> torch.Tensor:
    """GRPO outcome supervision (Shao et al. 2024, DeepSeekMath §4.1.2): every token of
    completion i gets (r_i - mean(group)) / (std(group) + eps). std is the unbiased
    (n-1) standard deviation, as in TRL and verl. A group whose rewards are all equal gets
    exactly zero. rewards (B,), mask (B, T) -> (B, T)."""
    g = _groups(rewards, group_size)
    dev = centered(g)
    std = dev.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(g[:, :1])
    adv = dev / (std + eps)
    return adv.reshape(-1, 1) * mask


def dr_grpo_advantages(rewards: torch.Tensor, mask: torch.Tensor, group_size: int) -> torch.Tensor:
    """Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training", eq. 3): r_i minus
    the group mean, without dividing by the group std (which over-weights groups that are
    almost all right or all wrong). Pair it with loss_agg='seq-mean-token-sum-norm'.
    rewards (B,), mask (B, T) -> (B, T)."""
    return centered(_groups(rewards, group_size)).reshape(-1, 1) * mask


def rloo_advantages(rewards: torch.Tensor, mask: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO (Ahmadian et al. 2024, eq. 5; Kool et al. 2019): r_i minus the mean reward of
    the other group_size - 1 samples of the same prompt. rewards (B,), mask (B, T) -> (B, T)."""
    if group_size < 2:
        raise ValueError("rloo needs group_size >= 2 (the baseline is the other samples' mean)")
    g = _groups(rewards, group_size)
    d = g - g[:, :1]  # around the first sample, so that equal rewards give exact zeros
    baseline = (d.sum(dim=1, keepdim=True) - d) / (group_size - 1)
    return (d - baseline).reshape(-1, 1) * mask


def discounted_returns(token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """G_t = sum_{k >= t} gamma^(k-t) r_k over response tokens. (B, T) -> (B, T)."""
    out = torch.zeros_like(token_rewards)
    running = torch.zeros_like(token_rewards[:, 0])
    for t in reversed(range(token_rewards.shape[1])):
        running = token_rewards[:, t] + gamma * running * mask[:, t]
        out[:, t] = running
    return out * mask


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries (population std); zero everywhere when the
    masked entries are all equal (see `centered`). (B, T) -> (B, T)."""
    on = mask > 0
    if not on.any():
        return torch.zeros_like(x)
    d = torch.where(on, x - x[on][0], 0.0)  # around one masked entry, as in `centered`
    n = mask.sum()
    mean = (d * mask).sum() / n
    dev = (d - mean) * mask
    var = (dev ** 2).sum() / n
    return dev * torch.rsqrt(var + eps)


def reinforce_pp_advantages(token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """REINFORCE++ (Hu 2025, §3): the discounted return of each token (KL penalty folded into
    the token rewards), whitened over every response token of the batch instead of a
    per-prompt or learned baseline. token_rewards (B, T), mask (B, T) -> (B, T)."""
    return masked_whiten(discounted_returns(token_rewards, mask, gamma), mask)


def gae_advantages(
    token_rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16):
    delta_t = r_t + gamma V_{t+1} - V_t, A_t = sum_l (gamma lam)^l delta_{t+l}, with V = 0
    past the last response token. Returns (advantages, returns = A + V), both (B, T); the
    advantages are not whitened here (PPO whitens them over the batch, see `gae` below).

    The values come from a value head on the policy's own last hidden state (`ActorCritic` in
    rl_batch.py): the critic shares the policy's trunk, and the value loss trains that trunk
    too. verl and OpenRLHF train a separate critic model (its own weights and optimiser), as
    the PPO-for-LLMs papers do; the shared trunk is a deliberate simplification here - half
    the memory and one forward, at the price of value-loss gradients in the policy."""
    B, T = token_rewards.shape
    adv = torch.zeros_like(token_rewards)
    last = torch.zeros(B, dtype=token_rewards.dtype)
    for t in reversed(range(T)):
        next_v = values[:, t + 1] * mask[:, t + 1] if t + 1 < T else torch.zeros(B)
        delta = token_rewards[:, t] + gamma * next_v - values[:, t]
        last = (delta + gamma * lam * last * (mask[:, t + 1] if t + 1 < T else 0.0)) * mask[:, t]
        adv[:, t] = last
    return adv * mask, (adv + values) * mask


def process_grpo_advantages(
    step_rewards: list[list[float]], step_ends: list[list[int]], mask: torch.Tensor, group_size: int, eps: float = 1e-6
) -> torch.Tensor:
    """GRPO with process supervision (DeepSeekMath §4.1.3): the step rewards of all
    completions in a group are normalised together, r~ = (r - mean(R)) / std(R) over the
    group's set R of step rewards, and the advantage of token t is the sum of the normalised
    rewards of the steps that end at or after t, A_t = sum_{index(j) >= t} r~_j. A completion
    without steps gets zero, and so does every token of a group whose step rewards are all equal.

    The last step ends where the completion ends: its index(j) is the row's last response token
    (the last 1 of `mask`), not the last character of its text. The paper's steps partition the
    whole output, so the tokens after the final step's text - the trailing delimiter and the
    EOS - belong to that step and get its reward. Read literally at the text's end they would
    get an advantage of 0, and the EOS, the token that ends the solution, would never be
    reinforced or penalised (step_token_ends gives the token where each step's text ends).

    Outcome rewards play no part: as in DeepSeekMath §4.1.3, process supervision uses only the
    step rewards (a final answer counts only through the score of the step that states it).
    step_rewards/step_ends: B lists (index j: reward of step j / token index where it ends);
    mask (B, T) -> (B, T)."""
    B, T = mask.shape
    if len(step_rewards) != B or len(step_ends) != B:
        raise ValueError(f"expected {B} rows of step rewards and step ends")
    for i, (r, e) in enumerate(zip(step_rewards, step_ends)):
        if len(r) != len(e):
            raise ValueError(f"row {i}: {len(r)} step rewards for {len(e)} step ends")
    adv = torch.zeros(B, T)
    for start in range(0, B, group_size):
        rows = range(start, start + group_size)
        flat = torch.tensor([r for i in rows for r in step_rewards[i]], dtype=torch.float32)
        if flat.numel() == 0:
            continue
        dev = centered(flat[None])[0]
        std = dev.std() if flat.numel() > 1 else torch.tensor(0.0)
        norm = (dev / (std + eps)).tolist()
        k = 0
        for i in rows:
            on = mask[i].nonzero()
            last = int(on.max()) if on.numel() else T - 1  # the row's last response token
            for j, end in enumerate(step_ends[i]):
                if j == len(step_ends[i]) - 1:
                    end = max(end, last)  # the last step covers the completion's end (EOS)
                # the step's normalised reward counts for every token up to its end
                adv[i, : end + 1] += norm[k]
                k += 1
    return adv * mask


ESTIMATORS: dict[str, Callable[[AdvantageInputs], tuple[torch.Tensor, torch.Tensor | None]]] = {}


def register_estimator(name: str):
    def wrap(fn):
        ESTIMATORS[name] = fn
        return fn

    return wrap


@register_estimator("grpo")
def _grpo(x: AdvantageInputs):
    return grpo_advantages(x.rewards, x.mask, x.group_size), None


@register_estimator("dr_grpo")
def _dr_grpo(x: AdvantageInputs):
    return dr_grpo_advantages(x.rewards, x.mask, x.group_size), None


@register_estimator("rloo")
def _rloo(x: AdvantageInputs):
    return rloo_advantages(x.rewards, x.mask, x.group_size), None


@register_estimator("reinforce_pp")
def _reinforce_pp(x: AdvantageInputs):
    return reinforce_pp_advantages(x.token_rewards, x.mask, x.gamma), None


@register_estimator("gae")
def _gae(x: AdvantageInputs):
    if x.values is None:
        raise ValueError("the gae estimator needs value estimates (the trainer adds a value head for it)")
    adv, returns = gae_advantages(x.token_rewards, x.values, x.mask, x.gamma, x.lam)
    return masked_whiten(adv, x.mask), returns


@register_estimator("process_grpo")
def _process_grpo(x: AdvantageInputs):
    if x.step_rewards is None or x.step_ends is None:
        raise ValueError("process_grpo needs step rewards: give the trainer a process scorer (a PRM or the verifier)")
    return process_grpo_advantages(x.step_rewards, x.step_ends, x.mask, x.group_size), None


def compute_advantages(name: str, inputs: AdvantageInputs) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(advantages (B, T), returns (B, T) or None) with the estimator registered as `name`."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {name!r}: expected one of {', '.join(sorted(ESTIMATORS))}")
    return ESTIMATORS[name](inputs)
