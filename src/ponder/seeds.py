"""One seed scheme for every random draw that must be reproducible.

    derive(run_seed, "rollout", step, attempt)      # an int in [0, 2**62)

A seed is a hash of everything that names the draw (the run's seed first, then a word for
what is drawn, then the indices that place it), never of anything that depends on who runs
it: a problem's samples are `derive(seed, problem.id, call)`, not a function of the chunk,
shard, worker or batch it lands in. That is what makes `--workers 1` and `--workers N` (and a
resumed run, and one request among many in a server batch) produce the same records.

Parts are ints or strings, hashed with their types and order (SHA-256 of their JSON), so
`(1, 23)`, `(12, 3)`, `(1, "23")` and `(123,)` are four unrelated seeds, and neighbouring
tuples give unrelated streams. The result stays below 2**62: vLLM seeds sample j of a request
with seed + j, and OpenAI-compatible servers take a signed 64-bit int.
"""
from __future__ import annotations

import hashlib
import json
import operator
import secrets


def derive(*parts: int | str) -> int:
    """The seed of the draw named by `parts` (ints and strings), in [0, 2**62)."""
    if not parts:
        raise ValueError("derive() needs at least one part (the run's seed)")
    words = []
    for p in parts:
        if not isinstance(p, (int, str)):
            try:
                p = operator.index(p)  # numpy integers
            except TypeError:
                raise TypeError(f"seed parts are ints or strings, got {type(p).__name__} {p!r}") from None
        if isinstance(p, bool):
            raise TypeError(f"seed parts are ints or strings, got the bool {p!r}")
        words.append(p)
    digest = hashlib.sha256(json.dumps(words, separators=(",", ":")).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 2


def fresh() -> int:
    """A random seed in the same range, for a call that asked for none."""
    return secrets.randbits(62)
