"""Next-token selection as pure functions over a batch of logits.

Shapes: `logits` is (rows, vocab) float; one `SamplingParams` applies to every row of a call,
so temperature, top-k and top-p are scalars here.

The order of operations follows vLLM's sampler (vllm/v1/sample/sampler.py): temperature
first, then top-k, then top-p on the tempered distribution, then a draw. Greedy
(temperature 0) is a plain argmax over the raw logits, so it matches
`model.generate(do_sample=False)` token for token.

Log-probabilities (see `token_logprobs`) are those of the temperature-scaled model
distribution *before* top-k/top-p truncation: log_softmax(logits / T), or log_softmax(logits)
when T = 0. That is the quantity an RL trainer recomputes on its side (TRL's GRPO and verl
both divide the policy logits by the rollout temperature before log_softmax), so the
importance ratio pi / pi_old is exactly 1 on-policy. vLLM's default
`logprobs_mode='raw_logprobs'` ignores temperature instead; the two agree at T = 1.
"""
from __future__ import annotations

import torch


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """(rows, vocab) logits divided by `temperature`; T = 0 (greedy) leaves them unchanged."""
    if temperature == 0 or temperature == 1:
        return logits
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """(rows, vocab) logits with everything below each row's k-th largest set to -inf.
    k = 0 or k >= vocab is a no-op. Ties with the k-th value are kept (as in vLLM)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """(rows, vocab) logits keeping, per row, the smallest set of most likely tokens whose
    probability mass reaches `p` (nucleus sampling, Holtzman et al. 2019). The most likely
    token is always kept; p >= 1 is a no-op."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    # Mass strictly before each token: a token is dropped once the tokens ahead of it
    # already cover p. The first token has 0 mass before it, so it always survives.
    mass_before = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_tokens(probs: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """(rows,) token ids drawn from (rows, vocab) `probs`, row i using `generators[i]`.

    The exponential race (the Gumbel-max trick in another guise, as vLLM's sampler does):
    argmax_v p_v / E_v with E_v ~ Exp(1) i.i.d. picks v with probability p_v. Each row draws
    its noise from its own generator, so a row's sample does not depend on which other rows
    share the batch, how many there are, or when they leave it."""
    if all(gen.device == probs.device for gen in generators):
        noise = torch.empty_like(probs)
        for row, gen in enumerate(generators):
            noise[row].exponential_(generator=gen)
    else:  # a device whose tensors take no generator (the lazy test device): draw where the generator is
        noise = torch.stack([torch.empty(probs.shape[-1], dtype=probs.dtype, device=gen.device).exponential_(
            generator=gen) for gen in generators]).to(probs.device)
    return (probs / noise).argmax(dim=-1)


def select_tokens(
    logits: torch.Tensor,
    temperature: float,
    top_k: int,
    top_p: float,
    generators: list[torch.Generator] | None,
) -> torch.Tensor:
    """(rows,) next tokens from (rows, vocab) raw logits: argmax when `temperature` is 0 or
    top_k is 1, otherwise temperature -> top-k -> top-p -> a draw with per-row generators."""
    if temperature == 0 or top_k == 1:
        return logits.argmax(dim=-1)
    if generators is None or len(generators) != logits.shape[0]:
        raise ValueError("sampling with temperature > 0 needs one torch.Generator per row")
    filtered = top_p_filter(top_k_filter(apply_temperature(logits, temperature), top_k), top_p)
    return sample_tokens(filtered.softmax(dim=-1), generators)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """(rows,) log-probability of `tokens` (rows,) under log_softmax(logits / T) for (rows,
    vocab) raw `logits` (T = 0 uses the raw logits). Works for any leading shape: logits
    (..., vocab) with tokens (...)."""
    logp = apply_temperature(logits.float(), temperature).log_softmax(dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
