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
- the pieces are written into one cache whose rows read [prefix | padding | suffix];
- a prompt that extends a sequence of an earlier call (prefix_cache.py) takes that
  sequence's keys/values as its prefix and computes only the rest.

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


def prefill(forward: Forward, config, prompt_ids: list[list[int]], n: int, pad_id: int, device, spare: int,
            hits: list[tuple] | None = None):
    """(cache, logits (R, vocab), mask (R, W), next_pos (R,), computed) for R = len(prompt_ids)
    * n rows, prompt p owning rows p*n .. p*n+n-1; `computed` counts the prompt tokens
    actually run through the model (padding aside). `spare`: free cache positions to reserve for decoding.
    `hits`: per prompt, (entry, length) from a `PrefixCache` lookup ((None, 0): none) - the
    first `length` positions' keys/values are taken from the entry instead of computed."""
    expand = torch.arange(len(prompt_ids) * n, device=device) // n  # each prompt n times (repeat_interleave)
    cache = growing_cache(config, spare)
    if cache is None:
        from transformers import DynamicCache

        ids, mask = left_pad(prompt_ids, pad_id, device)
        positions = positions_of(mask)
        cache = DynamicCache(config=config)
        logits = forward(ids, mask, positions, cache)
        cache.reorder_cache(expand)
        return cache, logits[expand], mask[expand], positions[expand, -1] + 1, int(mask.sum())

    # Each prompt's past: positions whose keys/values are known before this call's forward
    # passes - a cache hit, or the prefix all prompts share (computed once, batch 1).
    hits = hits or [(None, 0)] * len(prompt_ids)
    prefix = shared_prefix(prompt_ids)
    computed = 0
    pasts: list[tuple[list, list, int]] = []  # per prompt: (keys per layer, values per layer, length)
    if prefix and any(length < prefix for _, length in hits):
        donor = next((e for e, length in hits if length >= prefix), None)
        if donor is not None:  # a hit covers the shared prefix already
            shared_k = [k[:, :prefix] for k in donor.keys]
            shared_v = [v[:, :prefix] for v in donor.values]
        else:
            prefix_cache = growing_cache(config, spare=0)
            ids = torch.tensor([prompt_ids[0][:prefix]], device=device)
            forward(ids, torch.ones_like(ids), torch.arange(prefix, device=device)[None], prefix_cache)
            computed += prefix
            shared_k = [layer.keys[0] for layer in prefix_cache.layers]
            shared_v = [layer.values[0] for layer in prefix_cache.layers]
    for entry, length in hits:
        if length >= prefix and entry is not None:
            pasts.append((entry.keys, entry.values, length))
        elif prefix:
            pasts.append((shared_k, shared_v, prefix))
        else:
            pasts.append(([], [], 0))
    new_len = [len(p) - past[2] for p, past in zip(prompt_ids, pasts)]

    # Groups of similar new length: rows read [padding | past | padding | new tokens].
    groups = []
    for group in length_groups(new_len):
        width_past = max(pasts[p][2] for p in group)
        ids, new_mask = left_pad([prompt_ids[p][pasts[p][2]:] for p in group], pad_id, device)
        past_mask = torch.zeros(len(group), width_past, dtype=torch.long, device=device)
        for r, p in enumerate(group):
            past_mask[r, width_past - pasts[p][2]:] = 1
        group_cache = growing_cache(config, spare=0)
        if width_past:
            like = next(pasts[p] for p in group if pasts[p][2])  # any past gives heads, dim and dtype
            for li, layer in enumerate(group_cache.layers):
                layer.allocate(len(group), width_past, like[0][li][None], like[1][li][None])
                for r, p in enumerate(group):
                    keys, values, length = pasts[p]
                    if length:
                        at = torch.tensor([r], device=device)
                        layer.place(at, width_past - length, keys[li][None, :, :length], values[li][None, :, :length])
        offsets = torch.tensor([pasts[p][2] for p in group], device=device)[:, None]
        group_logits = forward(ids, torch.cat([past_mask, new_mask], dim=1), offsets + positions_of(new_mask),
                               group_cache)
        computed += int(new_mask.sum())
        groups.append((group, group_cache, torch.cat([past_mask, new_mask], dim=1), group_logits))

    # One cache for all rows: each group's rows, right-aligned, copied into the n rows of its prompts.
    width = max(m.shape[1] for _, _, m, _ in groups)
    mask = torch.zeros(len(prompt_ids), width, dtype=torch.long, device=device)
    logits = None
    for group, group_cache, group_mask, group_logits in groups:
        if logits is None:
            logits = group_logits.new_empty(len(prompt_ids), group_logits.shape[-1])
        logits[group] = group_logits
        mask[group, width - group_mask.shape[1]:] = group_mask
        rows = torch.tensor([p * n + j for p in group for j in range(n)], device=device)
        source = torch.arange(len(group) * n, device=device) // n
        start = width - group_mask.shape[1]
        for layer, own in zip(cache.layers, group_cache.layers):
            if not layer.is_initialized:
                layer.allocate(len(prompt_ids) * n, width, own.keys, own.values)
            layer.place(rows, start, own.keys[source], own.values[source])
    next_pos = torch.tensor([len(p) for p in prompt_ids], device=device)
    return cache, logits[expand], mask[expand], next_pos[expand], computed
