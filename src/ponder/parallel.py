"""Ray sharding of embarrassingly parallel work: annotation, evaluation, search sweeps.

Work is cut into fixed shards (chunks of problems) *before* anything runs, and every shard's
randomness is a function of the run's seed and the shard (or problem) alone. A shard is then
the same engine call whoever runs it, so a run writes the same records with 1 worker or N.

With `workers <= 1` shards run here, in this process, on the caller's engine. With more,
ponder starts a local Ray (`ray.init(num_cpus=workers)`; nothing to set up) or joins the
cluster at `ray_address` / `$RAY_ADDRESS`, and runs the shards on `workers` Ray actors. Each
actor builds its own state once (`setup()`, e.g. an engine holding the model: torch on CPU,
one vLLM per GPU, or a client of a shared HTTP server) and is pinned to a share of the cores:
its torch thread count is cores // workers, so N actors never oversubscribe the machine
(oversubscribed torch threads slow a process down many times over: docs/scaling-out.md).

GPUs: on a machine with CUDA GPUs each actor asks Ray for one (`num_gpus`, or
`--gpus-per-worker` / $PONDER_GPUS_PER_WORKER), so N workers hold N engines on N GPUs. Ray sets
CUDA_VISIBLE_DEVICES for an actor that asks for GPUs, but hides nothing from one that asks for
none: without the request every worker's engine would land on GPU 0.

Faults: actors restart when their process dies (kill -9 included) and the shard they held is
retried on the new process (Ray's `max_restarts` / `max_task_retries`); since a shard is a
pure function of its inputs, the retried records equal the lost ones. The caller writes each
finished shard durably (e.g. `ponder.annotate.records.append_chunk`), so a killed driver
resumes from its files as before.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

_RAY_ENV = "RAY_ADDRESS"
GPUS_ENV = "PONDER_GPUS_PER_WORKER"
NOT_CONFIG = ("workers", "ray_address", "device")
"""Options that say where a run computes, not what: a resumed run may change them."""


@dataclass
class ShardResult:
    index: int
    value: Any


def cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    return max(1, cores() // max(1, workers))


def gpus_per_worker() -> float:
    """GPUs each Ray worker asks for: $PONDER_GPUS_PER_WORKER (`--gpus-per-worker`; a fraction
    shares a GPU), else one when this machine has CUDA GPUs, else none."""
    value = os.environ.get(GPUS_ENV)
    if value:
        try:
            gpus = float(value)
        except ValueError:
            raise ValueError(f"--gpus-per-worker must be a number, got {value!r}") from None
        if gpus < 0:
            raise ValueError(f"--gpus-per-worker must be >= 0, got {value}")
        return gpus
    import torch

    return 1.0 if torch.cuda.is_available() else 0.0


def check_workers(workers: int, ray_address: str | None = None) -> None:
    """Refuse a worker count the machine cannot run, before anything is written."""
    if workers < 1:
        raise ValueError(f"workers (--workers) must be at least 1, got {workers}")
    if workers > 1:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ImportError("--workers above 1 needs Ray: pip install 'ponder[ray]'") from None
    if workers > cores() and not (ray_address or os.environ.get(_RAY_ENV)):
        raise ValueError(f"--workers {workers} on a machine with {cores()} cores would oversubscribe it; "
                         f"use at most {cores()}, or join a cluster with --ray-address")


def _init_ray(workers: int, ray_address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    address = ray_address or os.environ.get(_RAY_ENV)
    opts = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
    if address:
        ray.init(address=address, **opts)
    else:  # a local Ray owned by this process: one CPU slot per worker
        ray.init(num_cpus=workers, **opts)


def _worker_class():
    import ray

    @ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1)
    class ShardWorker:
        """Holds `setup()`'s state (an engine, a task...) and runs shards on it."""

        def __init__(self, setup: Callable[[], Any], threads: int):
            import torch

            os.environ["OMP_NUM_THREADS"] = str(threads)
            torch.set_num_threads(threads)
            self.state = setup()

        def run(self, fn: Callable[[Any, int, Any], Any], index: int, shard: Any) -> tuple[int, Any, int]:
            return index, fn(self.state, index, shard), os.getpid()

        def pid(self) -> int:
            return os.getpid()

    return ShardWorker


def map_shards(fn: Callable[[Any, int, Any], Any], shards: Sequence[tuple[int, Any]], *,
               setup: Callable[[], Any], workers: int = 1, ray_address: str | None = None,
               state: Any = None) -> Iterator[ShardResult]:
    """`fn(state, index, shard)` for every `(index, shard)`, yielded as each finishes (in any
    order when workers > 1). `state` is what `setup()` builds, once per worker; with one
    worker, `state` (when given) is used as is, else `setup()` runs here."""
    if not shards:
        return
    if workers <= 1:
        state = setup() if state is None else state
        for index, shard in shards:
            yield ShardResult(index, fn(state, index, shard))
        return
    import ray
    from ray.util import ActorPool

    _init_ray(workers, ray_address)
    threads = threads_per_worker(workers) if not (ray_address or os.environ.get(_RAY_ENV)) else 1
    worker = _worker_class()
    gpus = gpus_per_worker()
    actors = [worker.options(num_gpus=gpus).remote(setup, threads) for _ in range(min(workers, len(shards)))]
    try:
        pool = ActorPool(actors)
        for index, shard in shards:
            pool.submit(lambda actor, job: actor.run.remote(fn, *job), (index, shard))
        while pool.has_next():
            index, value, _pid = pool.get_next_unordered()
            yield ShardResult(index, value)
    finally:
        for actor in actors:
            ray.kill(actor)


def in_order(results: Iterator[ShardResult], first: int) -> Iterator[ShardResult]:
    """Results re-ordered by index, starting at `first`: each is yielded as soon as all before
    it have been (what an append-only file of shards needs)."""
    pending: dict[int, ShardResult] = {}
    nxt = first
    for r in results:
        pending[r.index] = r
        while nxt in pending:
            yield pending.pop(nxt)
            nxt += 1
    for index in sorted(pending):  # indices with gaps: whatever is left, in order
        yield pending[index]
