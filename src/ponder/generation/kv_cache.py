"""A KV cache layer that appends in place, drops rows cheaply and can be assembled by hand.

transformers' `DynamicLayer` appends each new token with `torch.cat`, which copies the whole
cache every decoding step: at batch 64 with a few hundred cached positions that copy is
about a fifth of a SmolLM2-135M step on CPU (measured with torch.profiler). `GrowingLayer`
keeps keys and values in a buffer with spare capacity along the sequence axis, writes each
new token into it, and hands attention a view of the filled part. It is a `DynamicLayer`
subclass, so models use it through the ordinary `Cache` interface (`update`,
`get_seq_length`, `reorder_cache`).

The engine also writes prefilled keys/values straight into it (`place`), which lets it
prefill a shared prompt prefix once and groups of prompt suffixes separately, then assemble
one batch whose rows read [prefix | padding | suffix] (prefill.py).

Buffers are (rows, kv_heads, capacity, head_dim); the cache is positions [start, length) of
them. Positions a row never wrote (padding) hold zeros, never garbage: they are masked out of
attention, but NaN garbage times a zero attention weight would still be NaN. `trim` drops
leading positions that no row attends to any more (continuous batching leaves them behind
when the rows that filled them finish) by moving `start`, without a copy.
"""
from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

# Spare positions a decoding cache keeps beyond what it holds: a buffer is reallocated (and
# copied) only once every GROW_BY generated tokens.
GROW_BY = 256


class GrowingLayer(DynamicLayer):
    """One attention layer's keys and values, appended in place."""

    def __init__(self, spare: int = GROW_BY, **kwargs):
        """`spare`: free positions to leave after each (re)allocation; 0 for a cache that
        is filled once and never appended to."""
        super().__init__(**kwargs)
        self.spare = spare
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self.start = 0
        self.length = 0

    def allocate(self, rows: int, length: int, like_k: torch.Tensor, like_v: torch.Tensor) -> None:
        """Buffers for `rows` rows holding `length` zeroed positions (plus spare room);
        `like_*` (any tensors of shape (_, kv_heads, _, head_dim)) give heads, dim, dtype."""
        self._k = like_k.new_empty(rows, like_k.shape[1], length + self.spare, like_k.shape[3])
        self._v = like_v.new_empty(rows, like_v.shape[1], length + self.spare, like_v.shape[3])
        self._k[:, :, :length] = 0
        self._v[:, :, :length] = 0
        self.start, self.length = 0, length
        self.device, self.is_initialized = like_k.device, True
        self._views()

    def place(self, rows: torch.Tensor, start: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Write (len(rows), kv_heads, S, head_dim) `keys`/`values` into buffer `rows` at
        positions [start, start + S) of a freshly allocated buffer (a (1, ...) tensor is
        broadcast to all `rows`)."""
        end = start + keys.shape[2]
        self._k[rows, :, start:end] = keys
        self._v[rows, :, start:end] = values

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.allocate(key_states.shape[0], 0, key_states, value_states)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new = key_states.shape[2]
        if self.length + new > self._k.shape[2]:
            self._resize(torch.arange(self._k.shape[0], device=self._k.device),
                         self.length - self.start + new + self.spare)
        self._k[:, :, self.length : self.length + new] = key_states
        self._v[:, :, self.length : self.length + new] = value_states
        self.length += new
        self._views()
        return self.keys, self.values

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Keep rows `beam_idx` in that order (the engine drops finished rows and repeats a
        prompt's row for its n samples with it).

        Dropping rows by moving a few rows from the end of the batch into the holes - an
        order where every moved row comes from at or past the new row count - runs in
        place and copies only the moved rows. Any other order copies every kept row."""
        if not self.is_initialized:
            return
        idx = beam_idx.to(self._k.device)
        keep = len(idx)
        moved = (idx != torch.arange(keep, device=idx.device)).nonzero().squeeze(1)
        if keep <= self._k.shape[0] and bool((idx[moved] >= keep).all()):
            src = idx[moved]
            self._k[moved, :, self.start : self.length] = self._k[src, :, self.start : self.length]
            self._v[moved, :, self.start : self.length] = self._v[src, :, self.start : self.length]
            self._k, self._v = self._k[:keep], self._v[:keep]
            self._views()
        else:
            self._resize(idx, self._k.shape[2])

    def extend(self, other: "GrowingLayer") -> None:
        """Append `other`'s rows after this layer's (continuous batching: newly prefilled
        prompts join a running batch). Both are right-aligned to the longer of the two
        lengths; the shorter one's rows get zeros on their left, which the caller's mask
        hides. Copies both caches once."""
        k, v = self.keys, self.values
        own, theirs, ours = k.shape[2], other.keys.shape[2], k.shape[0]
        length = max(own, theirs)
        self.allocate(ours + other.keys.shape[0], length, k, v)
        self._k[:ours, :, length - own : length] = k
        self._v[:ours, :, length - own : length] = v
        self._k[ours:, :, length - theirs : length] = other.keys
        self._v[ours:, :, length - theirs : length] = other.values

    def trim(self, positions: int) -> None:
        """Drop the first `positions` cached positions of every row (ones no row attends
        to; the caller cuts its mask alike). No copy: the cache starts later in the buffer."""
        self.start = min(self.length, self.start + positions)
        self._views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.reorder_cache(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            rows = torch.arange(self._k.shape[0] * repeats, device=self._k.device) // repeats
            self.reorder_cache(rows)

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("GrowingLayer.crop takes a negative number of positions to remove")
        self.length = max(self.start, self.length + tokens_to_remove)
        self._views()

    def reset(self) -> None:
        self._k = self._v = self.keys = self.values = None
        self.start, self.length, self.is_initialized = 0, 0, False

    def _resize(self, rows: torch.Tensor, capacity: int) -> None:
        """New buffers holding `rows` of the old ones, with room for `capacity` positions.
        Only the cached positions are copied, to the start of the new buffers; the rest is
        never read before it is written."""
        k, v, held = self._k, self._v, self.length - self.start
        self._k = k.new_empty(len(rows), k.shape[1], capacity, k.shape[3])
        self._v = v.new_empty(len(rows), v.shape[1], capacity, v.shape[3])
        self._k[:, :, :held] = k[rows, :, self.start : self.length]
        self._v[:, :, :held] = v[rows, :, self.start : self.length]
        self.start, self.length = 0, held
        self._views()

    def _views(self) -> None:
        self.keys = self._k[:, :, self.start : self.length]
        self.values = self._v[:, :, self.start : self.length]


def growing_cache(config, spare: int = GROW_BY) -> DynamicCache | None:
    """A `DynamicCache` whose layers are all `GrowingLayer(spare)`s, or None when the model
    has layers of another kind (sliding-window, linear attention...) - the engine then uses
    transformers' own cache and skips the optimisations that need `place`."""
    cache = DynamicCache(config=config)
    if not cache.layers or any(type(layer) is not DynamicLayer for layer in cache.layers):
        return None
    cache.layers = [GrowingLayer(spare) for _ in cache.layers]
    return cache


def join_batches(running, new):
    """The running batch's (cache, logits, mask, next_pos) with the newly prefilled rows
    appended: caches and masks right-aligned to the longer length (GrowingLayer.extend)."""
    cache, logits, mask, next_pos = running
    new_cache, new_logits, new_mask, new_pos = new
    for layer, other in zip(cache.layers, new_cache.layers):
        layer.extend(other)
    width = max(mask.shape[1], new_mask.shape[1])
    mask = torch.cat([torch.nn.functional.pad(mask, (width - mask.shape[1], 0)),
                      torch.nn.functional.pad(new_mask, (width - new_mask.shape[1], 0))])
    return cache, torch.cat([logits, new_logits]), mask, torch.cat([next_pos, new_pos])


def fill_holes(rows: int, done: list[int]) -> list[int]:
    """The batch positions to keep, in their new order, when positions `done` of `rows`
    finish: the last running rows move into the holes, so the cache copies only them (see
    `GrowingLayer.reorder_cache`) rather than every row after the first hole."""
    keep = rows - len(done)
    finished = set(done)
    order = list(range(keep))
    movers = [j for j in range(keep, rows) if j not in finished]
    for hole, mover in zip(sorted(j for j in done if j < keep), movers):
        order[hole] = mover
    return order
