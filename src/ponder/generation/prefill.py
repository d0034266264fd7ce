"""Prefill: push a chunk's prompts through the model once and lay out the decoding batch.

`prefill` returns the KV cache, the logits of each row's last prompt position, the 2D
attention mask and each row's next position id, for `n` rows per prompt (the n samples of a
prompt share its prefill: its cache row is copied, not recomputed).

Prefill is compute-bound - every padded position costs as much as a real one - and for
short answers it is a large part of a generate call (a fifth of `model.generate`'s time for
64 chat prompts of 39-71 tokens and answers of up to 128 with SmolLM2-135M, a quarter of it
padding). So instead of one left-padded batch:

- the longest token prefix shared by all prompts (with a chat template, at least the system
  turn) is computed once, with batch 1 - vLLM's automatic prefix caching in miniature;
- the rest of each prompt (its suffix) is prefilled in groups of similar length, so little
  padding is computed;
- the pieces are written into one cache whose rows read [prefix | padding | suffix].

Position ids count real tokens only and the mask hides the padding, so each row attends to
exactly the tokens it would see alone, at the positions it would have alone (`generate`
numbers left-padded rows the same way). Models with layers other than plain full attention
(sliding windows, linear attention) get the plain left-padded batch in transformers' own
cache.
"""
from __future__ import annotations

from typing import Callable

import torch

from ponder.generation.kv_cache import growing_cache

# Suffix groups (see `length_groups`): the share of padding a group may compute, and the
# size in positions under which a group takes more prompts anyway - a forward pass reads
# every weight once however few positions it computes, so tiny passes are wasteful.
PAD_WASTE = 0.1
GROUP_MIN_TOKENS = 256

# forward(ids (rows, S), mask (rows, past + S), positions (rows, S), cache) -> (rows, vocab)
# float logits of the last position, appending to `cache`.
Forward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, object], torch.Tensor]


def left_pad(seqs: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask), both (len(seqs), longest): each sequence right-aligned after `pad_id`s,
    mask 1 on real tokens."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s) :] = 1
    return ids.to(device), mask.to(device)


def positions_of(mask: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """(rows, S) position ids counting only real tokens from `offset`, as `generate` does
    for left padding (padding positions get `offset`; they are masked anyway)."""
    return offset + (mask.cumsum(-1) - 1).clamp(min=0)


def shared_prefix(prompt_ids: list[list[int]]) -> int:
    """Length of the token prefix common to all prompts, leaving every prompt at least one
    token of its own (its last position's logits start generation). 0 for one prompt."""
    if len(prompt_ids) < 2:
        return 0
    limit = min(len(p) for p in prompt_ids) - 1
    first = prompt_ids[0]
    k = 0
    while k < limit and all(p[k] == first[k] for p in prompt_ids):
        k += 1
    return k


def length_groups(lengths: list[int]) -> list[list[int]]:
    """Indices of `lengths`, longest first, cut into prefill groups: a group grows while its
    padding stays within PAD_WASTE of the positions it computes, or while it computes no
    more than GROUP_MIN_TOKENS positions."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[list[int]] = []
    for i in order:
        if groups:
            group = groups[-1]
            computed = lengths[group[0]] * (len(group) + 1)
            real = sum(lengths[j] for j in group) + lengths[i]
            if computed - real <= PAD_WASTE * computed or computed <= GROUP_MIN_TOKENS:
                group.append(i)
                continue
        groups.append([i])
    return groups


def prefill(forward: Forward, config, prompt_ids: list[list[int]], n: int, pad_id: int, device, spare: int):
    """(cache, logits (R, vocab), mask (R, W), next_pos (R,), shared) for R = len(prompt_ids)
    * n rows, prompt p owning rows p*n .. p*n+n-1; `shared` is the length of the prefix
    computed once for all prompts. `spare`: free cache positions to reserve for decoding."""
    expand = torch.arange(len(prompt_ids), device=device).repeat_interleave(n)
    cache = growing_cache(config, spare)
    if cache is None:
        from transformers import DynamicCache

        ids, mask = left_pad(prompt_ids, pad_id, device)
        positions = positions_of(mask)
        cache = DynamicCache(config=config)
        logits = forward(ids, mask, positions, cache)
        cache.reorder_cache(expand)
        return cache, logits[expand], mask[expand], positions[expand, -1] + 1, 0

    prefix = shared_prefix(prompt_ids)
    suffix_len = [len(p) - prefix for p in prompt_ids]
    width = prefix + max(suffix_len)

    prefix_cache = None
    if prefix:
        prefix_cache = growing_cache(config, spare=0)
        ids = torch.tensor([prompt_ids[0][:prefix]], device=device)
        forward(ids, torch.ones_like(ids), torch.arange(prefix, device=device)[None], prefix_cache)
        everyone = torch.arange(len(prompt_ids) * n, device=device)

    logits = None
    for group in length_groups(suffix_len):
        ids, suffix_mask = left_pad([prompt_ids[p][prefix:] for p in group], pad_id, device)
        mask = torch.cat([suffix_mask.new_ones(len(group), prefix), suffix_mask], dim=1)
        group_cache = growing_cache(config, spare=0)
        if prefix_cache is not None:  # the group continues from the shared prefix
            for layer, shared in zip(group_cache.layers, prefix_cache.layers):
                layer.allocate(len(group), prefix, shared.keys, shared.values)
                layer.place(torch.arange(len(group), device=device), 0, shared.keys, shared.values)
        group_logits = forward(ids, mask, positions_of(suffix_mask, prefix), group_cache)
        if logits is None:
            logits = group_logits.new_empty(len(prompt_ids), group_logits.shape[-1])
        logits[group] = group_logits

        # The group's suffix keys/values go, right-aligned, into the n rows of each prompt.
        rows = torch.tensor([p * n + j for p in group for j in range(n)], device=device)
        source = torch.arange(len(group), device=device).repeat_interleave(n)
        start = width - ids.shape[1]
        for layer, own in zip(cache.layers, group_cache.layers):
            if not layer.is_initialized:
                layer.allocate(len(prompt_ids) * n, width, own.keys, own.values)
            layer.place(rows, start, own.keys[source, :, prefix:], own.values[source, :, prefix:])
    if prefix_cache is not None:
        for layer, shared in zip(cache.layers, prefix_cache.layers):
            layer.place(everyone, 0, shared.keys, shared.values)

    mask = torch.zeros(len(prompt_ids), width, dtype=torch.long, device=device)
    mask[:, :prefix] = 1
    for p, s in enumerate(suffix_len):
        mask[p, width - s :] = 1
    next_pos = torch.tensor([len(p) for p in prompt_ids], device=device)
    return cache, logits[expand], mask[expand], next_pos[expand], prefix
