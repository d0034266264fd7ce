"""Policy losses, loss aggregation and KL estimators: pure functions over (B, T) tensors.

    logp, old_logp, ref_logp   (B, T)  log-probabilities of the sampled response tokens
    advantages                 (B, T)
    mask                       (B, T)  1 on response tokens that count in the loss

A policy loss returns the per-token loss matrix and its statistics; `aggregate` reduces it
to a scalar in one of three ways, whose differences are the length biases discussed by DAPO
(Yu et al. 2025, §3.3) and Dr. GRPO (Liu et al. 2025, §3.1).
"""
from __future__ import annotations

from typing import Callable

import torch

AGGREGATIONS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def aggregate(loss_mat: torch.Tensor, mask: torch.Tensor, mode: str = "token-mean", norm: float | None = None,
              num_tokens: float | None = None, num_seqs: float | None = None) -> torch.Tensor:
    """Scalar loss from a (B, T) per-token loss.

    token-mean: sum over all tokens / number of tokens (DAPO eq. 8: every token weighs the
        same, so long completions are not down-weighted).
    seq-mean-token-mean: the mean over tokens of each sequence, then over the sequences that
        have tokens in the loss (GRPO's original 1/|o_i| normalisation, DeepSeekMath eq. 3; a
        row masked out whole, e.g. by DAPO's overlong filtering, is no sequence of the mean,
        as in verl).
    seq-mean-token-sum-norm: each sequence's token sum divided by a constant `norm` (default
        T), then the mean over all rows, masked ones included (Dr. GRPO: no normaliser that
        depends on lengths or on what the mask left).

    `num_tokens` / `num_seqs` override the denominators (the mask's token count, and the count
    of rows defined above) when rows whose loss is exactly zero were left out of the batch:
    the result is then the same as over the full batch. A denominator of 0 counts as 1, so an
    empty or fully masked batch gives a loss of 0."""
    mask = mask.to(loss_mat.dtype)
    if mode == "token-mean":
        tokens = num_tokens if num_tokens is not None else mask.sum()
        return (loss_mat * mask).sum() / max(float(tokens), 1.0)
    if mode == "seq-mean-token-mean":
        seqs = num_seqs if num_seqs is not None else int((mask.sum(-1) > 0).sum())
        per_seq = (loss_mat * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        return per_seq.sum() / max(seqs, 1)
    if mode == "seq-mean-token-sum-norm":
        seqs = num_seqs if num_seqs is not None else loss_mat.shape[0]
        return ((loss_mat * mask).sum(-1) / (norm or loss_mat.shape[-1])).sum() / max(seqs, 1)
    raise ValueError(f"unknown loss aggregation {mode!r}: expected one of {', '.join(AGGREGATIONS)}")


def ppo_clip_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
) -> tuple[torch.Tensor, dict]:
    """PPO's clipped surrogate (Schulman et al. 2017, eq. 7) with DAPO's decoupled clip range
    (Yu et al. 2025, eq. 10, "clip-higher"): per token
    -min(rho A, clip(rho, 1 - epsilon_low, 1 + epsilon_high) A), rho = exp(logp - old_logp).
    Returns the (B, T) loss and stats: clip_frac (share of tokens where the clipped term was
    chosen) and approx_kl (mean of old_logp - logp)."""
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high) * advantages
    loss = -torch.minimum(unclipped, clipped)
    with torch.no_grad():
        m = mask.to(loss.dtype)
        n = m.sum().clamp(min=1)
        clip_frac = ((clipped < unclipped).to(loss.dtype) * m).sum() / n
        approx_kl = ((old_logp - logp) * m).sum() / n
    return loss, {"clip_frac": float(clip_frac), "approx_kl": float(approx_kl)}


def vanilla_pg_loss(logp, old_logp, advantages, mask, epsilon_low=0.2, epsilon_high=0.2):
    """The unclipped importance-weighted policy gradient, -rho A per token (REINFORCE when
    the update is on-policy, rho = 1). Same contract as `ppo_clip_loss`."""
    ratio = torch.exp(logp - old_logp)
    with torch.no_grad():
        m = mask.to(ratio.dtype)
        approx_kl = ((old_logp - logp) * m).sum() / m.sum().clamp(min=1)
    return -ratio * advantages, {"clip_frac": 0.0, "approx_kl": float(approx_kl)}


POLICY_LOSSES: dict[str, Callable] = {"ppo_clip": ppo_clip_loss, "vanilla": vanilla_pg_loss}


def policy_loss(name: str, *args, **kwargs) -> tuple[torch.Tensor, dict]:
    if name not in POLICY_LOSSES:
        raise ValueError(f"unknown policy loss {name!r}: expected one of {', '.join(sorted(POLICY_LOSSES))}")
    return POLICY_LOSSES[name](*args, **kwargs)


KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from tokens sampled from pi (Schulman 2020,
    "Approximating KL divergence"), with log r = ref_logp - logp. (B, T) -> (B, T).

        k1 = -log r                    unbiased value, high variance, can be negative
        k2 = (log r)^2 / 2             biased value (exact to second order in log r), >= 0;
                                       verl calls it "mse"
        k3 = r - 1 - log r             unbiased value, low variance, >= 0 (DeepSeekMath eq. 4)

    What an estimator is worth depends on how it enters training, because the gradient of an
    unbiased estimate is not an unbiased estimate of the gradient (Tang & Munos 2025, "On a
    few pitfalls in KL divergence gradient estimation for RL"). For one token's distribution,
    context held fixed, tokens sampled from pi (on-policy):

    As a loss term (differentiated, `kl_in_reward` off), E_pi[grad k] is
        k1: 0, since E_pi[grad log pi] = 0: the term pulls nothing toward pi_ref;
        k2: E_pi[log(pi/pi_ref) grad log pi] = grad KL(pi || pi_ref), the true gradient;
        k3: E_pi[(1 - pi_ref/pi) grad log pi] = -E_pi_ref[grad log pi] = grad KL(pi_ref || pi),
            the gradient of the forward KL, which agrees with the reverse KL's only to first
            order in log(pi/pi_ref).
    Summed over tokens, each of these treats the contexts as fixed: it leaves out how earlier
    tokens change the states at which later tokens' KL is taken, so even k2 gives only that
    partial gradient of the sequence KL (Tang & Munos 2025, §4).

    As a reward penalty (`kl_in_reward`: a detached number in the return, so its gradient is
    the score-function term E_pi[k grad log pi]):
        k1: grad KL(pi || pi_ref), since the missing pathwise term E_pi[grad k1] is 0; with the
            penalty of every token in the sequence's return, this is the sequence KL's gradient;
        k2: not the KL gradient (the penalty's expectation is not the KL);
        k3: grad KL(pi || pi_ref) - grad KL(pi_ref || pi): biased, although E_pi[k3] = KL.
    `tests/test_rl_math.py` checks each of these identities on a categorical distribution."""
    d = ref_logp - logp
    if estimator == "k1":
        return -d
    if estimator == "k2":
        return 0.5 * d ** 2
    if estimator == "k3":
        return torch.exp(d) - d - 1.0
    raise ValueError(f"unknown KL estimator {estimator!r}: expected 'k1', 'k2' or 'k3'")


def rollout_correction(trainer_logp: torch.Tensor, sampler_logp: torch.Tensor, mask: torch.Tensor,
                       cap: float) -> tuple[torch.Tensor, dict]:
    """Truncated importance sampling weights for rollouts drawn by another engine than the
    trainer (Yao et al. 2025; Ionides 2008's truncation): w = min(pi_trainer / pi_sampler, cap)
    per token, detached, to multiply each token's policy loss. Stats: `rollout_kl`, the k3
    estimate of KL(pi_sampler || pi_trainer) from the sampler's tokens (0 when they agree), and
    `tis_clip_frac`, the share of tokens whose weight was capped. (B, T) -> (B, T), dict."""
    log_ratio = (trainer_logp - sampler_logp).detach()
    ratio = torch.exp(log_ratio)
    m = mask.to(ratio.dtype)
    n = m.sum().clamp(min=1)
    kl = (((ratio - 1) - log_ratio) * m).sum() / n  # k3 with r = pi_trainer / pi_sampler
    weights = ratio.clamp(max=cap) if cap > 0 else torch.ones_like(ratio)
    clipped = (((ratio > cap).to(m.dtype) * m).sum() / n) if cap > 0 else torch.zeros(())
    return weights, {"rollout_kl": float(kl), "tis_clip_frac": float(clipped)}


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float = 0.2) -> torch.Tensor:
    """PPO's clipped value loss (as in OpenAI baselines / verl): per token
    0.5 max((V - R)^2, (clip(V, V_old - c, V_old + c) - R)^2), token-mean over the mask.
    (B, T) tensors -> scalar."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    loss = 0.5 * torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return aggregate(loss, mask, "token-mean")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> float:
    m = mask.to(x.dtype)
    return float((x * m).sum() / m.sum().clamp(min=1))
