"""Search over many problems: sharded across Ray workers (ponder.parallel), each shard batched
across its problems (batch.py), with accuracy and total compute.

    out = search_all("beam", ctx, problems, SearchParams(n=16, beam_width=4))
    out["summary"]["accuracy"], out["records"]
"""
from __future__ import annotations

from functools import partial
from typing import Callable

from ponder.parallel import map_shards
from ponder.search.base import Compute, SearchContext, SearchParams, get_strategy
from ponder.search.batch import search_many
from ponder.tasks.base import Problem


def search_all(strategy: str, ctx: SearchContext | None, problems: list[Problem], params: SearchParams,
               on_result: Callable[[], None] | None = None, workers: int = 1, ray_address: str | None = None,
               setup: Callable[[], SearchContext] | None = None, batch: bool = True) -> dict:
    """`strategy` over every problem: accuracy and total compute, with per-problem records.
    With `batch` the problems of a shard are searched together, one engine call per round
    (batch.py; the same records as one by one). With `workers` > 1 the problems run on Ray
    workers, each with the context `setup()` builds (ponder.parallel); a problem's search
    depends on the problem alone (`seed_for`), so the records are the same whoever ran them."""
    get_strategy(strategy)  # a bad name fails before any work
    if workers > 1 and setup is None:
        raise ValueError("a search on Ray workers needs `setup`: a function that builds a worker's SearchContext")
    size = shard_size(len(problems), workers, batch)
    shards = [(i, problems[i:i + size]) for i in range(0, len(problems), size)]
    done: dict[int, list[dict]] = {}
    for result in map_shards(partial(_search_problems, strategy, params, batch), shards, setup=setup, workers=workers,
                             ray_address=ray_address, state=ctx):
        done[result.index] = result.value
        for _ in result.value:
            if on_result:
                on_result()
    records = [r for i, _ in shards for r in done[i]]
    total = sum((Compute(**r["compute"]) for r in records), Compute())
    n = max(len(problems), 1)
    summary = {"strategy": strategy, "n": params.n, "problems": len(problems),
               "accuracy": sum(r["correct"] for r in records) / n,
               "generated_tokens": total.generated_tokens, "prefill_tokens": total.prefill_tokens,
               "scorer_tokens": total.scorer_tokens, "generated_tokens_per_problem": total.generated_tokens / n,
               "prefill_per_generated": total.prefill_per_generated(), "wall_s": round(total.wall_s, 2)}
    return {"summary": summary, "records": records}


MAX_BATCH = 256
"""problems searched together at most (a thread each, see batch.py)"""


def shard_size(problems: int, workers: int, batch: bool) -> int:
    """Problems per shard: one by one, a shard of 1 (4 on Ray workers: small shards keep every
    worker busy to the end); batched, each worker's share in one shard (at most MAX_BATCH),
    so a worker's problems go into the same engine calls."""
    if not batch:
        return 1 if workers <= 1 else 4
    return max(1, min(MAX_BATCH, -(-problems // max(1, workers))))


def _search_problems(strategy: str, params: SearchParams, batch: bool, ctx: SearchContext, index: int,
                     problems: list[Problem]) -> list[dict]:
    results = search_many(strategy, ctx, problems, params, batch)
    records = []
    for p, r in zip(problems, results):
        records.append({"id": p.id, "gold": p.answer, "answer": r.answer,
                        "correct": bool(r.text is not None and ctx.task.is_correct(p, r.text)),
                        "text": r.text, "compute": r.compute.__dict__,
                        "candidates": [c.__dict__ for c in r.candidates]})
    return records
