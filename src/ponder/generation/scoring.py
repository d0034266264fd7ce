"""Teacher-forced scoring on the torch engine: the log-probability of given completions.

Batched like generation (left padding, the longest completion first so a batch's first row
sets how many positions it keeps, rows per batch bounded by the logits they hold), with
`generate`'s convention log_softmax(logits / temperature), so an RL trainer's ratio is 1
on-policy. `TorchGenerator.logprobs` is this function.
"""
from __future__ import annotations

import torch

from ponder.generation.prefill import left_pad, positions_of
from ponder.generation.sampling import token_logprobs

LOGITS_BUDGET = 64 * 2**20
"""float logits one scoring batch may hold (rows x kept positions x vocab), at most: 256 MB"""


def teacher_forced_logprobs(engine, prompts, completions, temperature: float = 1.0) -> list[list[float]]:
    """Per-token log-probabilities of each completion (text or token ids) given its prompt
    (text or ids), on `engine` (a TorchGenerator), whose `usage.prefill_tokens` counts the
    tokens forwarded."""
    if len(prompts) != len(completions):
        raise ValueError(f"got {len(prompts)} prompts but {len(completions)} completions; pass one completion per prompt")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = raw logits), got {temperature}")
    prompt_ids = engine.encode(prompts)
    comp_ids = [
        engine.tokenizer(c, add_special_tokens=False)["input_ids"] if isinstance(c, str) else list(c)
        for c in completions
    ]
    vocab = engine.model.get_output_embeddings().weight.shape[0]
    # Longest completion first, so a batch's first row sets how many positions it keeps;
    # empty completions have nothing to score.
    order = sorted((i for i in range(len(prompts)) if comp_ids[i]), key=lambda i: -len(comp_ids[i]))
    results: list[list[float]] = [[] for _ in prompts]
    start = 0
    rows = engine.rows_for(max((len(prompt_ids[i]) + len(comp_ids[i]) for i in order), default=1))
    with engine._ready():
        while start < len(order):
            keep = 1 + len(comp_ids[order[start]])
            batch = order[start : start + max(1, min(rows, LOGITS_BUDGET // (keep * vocab)))]
            start += len(batch)
            ids, mask = left_pad([prompt_ids[i] + comp_ids[i] for i in batch], engine.pad_id, engine.device)
            logits = engine._forward(ids, mask, positions_of(mask), cache=None, keep=keep)  # (rows, keep, vocab)
            engine.usage.prefill_tokens += int(mask.sum())
            for b, i in enumerate(batch):
                c = len(comp_ids[i])
                # Left padding puts the completion last: its c tokens are predicted by
                # the logits at the c positions just before each of them.
                target = torch.tensor(comp_ids[i], dtype=torch.long, device=engine.device)
                results[i] = token_logprobs(logits[b, keep - 1 - c : keep - 1], target, temperature).tolist()
    engine.usage.calls += 1
    return results
