"""Keys and values of earlier calls' sequences, reused by later calls that extend them.

Step-level search and Monte Carlo annotation call the engine again and again with prompts
that extend what an earlier call already computed: depth d of a beam search is depth d-1's
prompt plus the step a sample wrote (`prompt_ids(question) + sample.token_ids`), a rollout
from step k of a solution is the solution's own prompt and first k steps. Without a cache
every call prefills all of it again. vLLM's automatic prefix caching keeps the KV blocks of
earlier requests for this; `PrefixCache` is the same idea for the torch engine:

- When a sample finishes, its row's keys and values (prompt and generated tokens, all but
  the last token, which was never fed) are stored under its token ids.
- A new prompt looks up the stored sequence sharing its longest token prefix and prefills
  only the rest (prefill.py). Longest match: entries are kept sorted by token ids, and the
  entry with the longest common prefix with a query is one of its two neighbours in that
  order, so a lookup is one bisection plus two comparisons.
- Memory is bounded (`max_bytes`); the least recently used entries go first.
- Cached keys depend on the weights: the engine clears the cache whenever a parameter
  changes (an RL step), so samples always come from the current weights.

Reused positions are computed in a different batch than a fresh prefill would compute them,
so they can differ in the last bit (as any batched matmul may); greedy outputs equal
uncached ones in this project's tests.
"""
from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass

import torch


@dataclass
class Entry:
    ids: tuple[int, ...]
    keys: list[torch.Tensor]  # per layer (kv_heads, len(ids), head_dim)
    values: list[torch.Tensor]
    nbytes: int


class PrefixCache:
    """LRU store of per-layer keys/values by token ids, with longest-prefix lookup."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: OrderedDict[tuple[int, ...], Entry] = OrderedDict()  # least recently used first
        self._sorted: list[tuple[int, ...]] = []
        self.hits = 0
        self.lookups = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self._sorted.clear()
        self.bytes = 0

    def lookup(self, ids: list[int]) -> tuple[Entry | None, int]:
        """The entry sharing the longest prefix with `ids` and that length, at most
        len(ids) - 1 (the last prompt position must be computed: its logits start
        generation); (None, 0) when nothing is shared."""
        self.lookups += 1
        if not self._sorted or len(ids) < 2:
            return None, 0
        query = tuple(ids)
        at = bisect.bisect_left(self._sorted, query)
        best, best_len = None, 0
        for k in (at - 1, at):
            if 0 <= k < len(self._sorted):
                n = _common(self._sorted[k], query)
                if n > best_len:
                    best, best_len = self._sorted[k], n
        best_len = min(best_len, len(ids) - 1)
        if best is None or best_len == 0:
            return None, 0
        self._entries.move_to_end(best)
        self.hits += 1
        return self._entries[best], best_len

    def insert(self, ids: list[int], keys: list[torch.Tensor], values: list[torch.Tensor]) -> None:
        """Store one sequence's keys/values (per layer (kv_heads, len(ids), head_dim), owned
        by the cache from now on). An entry that is a prefix of the new one is dropped: the
        new one answers every lookup it would."""
        key = tuple(ids)
        nbytes = sum(t.numel() * t.element_size() for t in keys) * 2
        if nbytes > self.max_bytes or not key:
            return
        if key in self._entries:
            self._entries.move_to_end(key)
            return
        at = bisect.bisect_left(self._sorted, key)
        if at > 0 and key[: len(self._sorted[at - 1])] == self._sorted[at - 1]:
            self._drop(self._sorted[at - 1])  # its own prefix: superseded
            at -= 1
        self._sorted.insert(at, key)
        self._entries[key] = Entry(key, keys, values, nbytes)
        self.bytes += nbytes
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: tuple[int, ...]) -> None:
        entry = self._entries.pop(key)
        self.bytes -= entry.nbytes
        del self._sorted[bisect.bisect_left(self._sorted, key)]


def _common(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo
