"""Concurrent requests batched into engine calls, on one engine thread.

HTTP handler threads never touch the engine. They put a job on a queue and wait for its
result; one worker thread owns the engine and drains the queue in arrival order:

1. a generation job starts an engine call once `max_wait_s` have passed since it arrived
   (or `max_rows` sample rows wait: a full engine batch gains nothing from waiting longer);
   the waiting jobs whose sampling params equal its own apart from the seed ride along, as
   ONE `engine.generate(prompts, params, seeds=[...])` call;
2. the call keeps running while requests come and go (continuous batching across requests,
   as vLLM's engine loop does): between two decoding steps, while the batch has room, the
   torch engine asks `more` and the jobs of the same params waiting at the head of the
   line join the batch; each job is answered as soon as its own rows finish (`on_done`),
   and the call ends when its batch runs dry. A job of other params, or a `call` job, at
   the head of the line stops the joining, so it goes next as soon as the running rows end
   (nothing waits behind a call that never ends);
3. other work that must not overlap a generation (teacher-forced scoring, a search's PRM
   call, a weight update) is a `call(fn)` job, run on the same thread in its turn.

A search goes through here call by call (extension.py's `RequestGenerator`), so its engine
calls take turns with plain requests instead of holding the engine for the whole search.

Streaming: `stream(...)` queues the same job with a token hook; the engine calls it on its
thread for each row's token as it is sampled (the torch engine's `on_token`), the hook puts
the token on the job's own queue, and the handler thread reads them from there (a
`TokenStream`) and writes them to its client while the batch goes on decoding. Streamed and
waited-for jobs with equal params share engine calls alike.

Clients that hang up: a waiting handler asks `alive()` every `POLL_S`; once it says no (or,
streaming, once a write to the client fails), the job is marked cancelled. A cancelled job
still queued is dropped; one inside an engine call has its rows taken out of the batch at
the next decoding step (the torch engine's `abandoned` hook), so a client that leaves stops
costing compute at once.

Seeds: a job carries one seed per prompt (`request_seeds`: a request seeded with s gives its
k-th prompt `prompt_seed(s, k)`), and the engine samples each prompt "as if alone in a call
with that seed" (the `seeds` argument of the engine contract). So a seeded request gets the
same samples whether it was batched with others or sent alone. An unseeded request draws a
fresh random seed. (The engine's caveat holds: a matmul over a different number of rows may
round differently in the last bit, which can flip a draw sitting on a near-exact tie.)

If a call fails, its jobs not answered yet are retried one by one (nothing joins a retry),
so a request that breaks the engine fails alone instead of taking the requests it was
batched with down with it (a streamed job that already sent tokens fails instead: its
client cannot take them back).
"""
from __future__ import annotations

import inspect
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

from ponder.generation.base import EngineError, Generator, PromptSeed, Sample, SamplingParams, prompt_seed
from ponder.seeds import fresh

_STOP = object()
_END = object()
# How often a waiting handler checks that its client is still there.
POLL_S = 0.05


class ClientGone(Exception):
    """The client of a request hung up; its work was dropped and nobody is to be answered."""


def request_seeds(seed: int | None, prompts: int) -> list[int]:
    """Per-prompt seeds of a request seeded `seed` (None: a fresh random one)."""
    base = seed if seed is not None else fresh()
    return [prompt_seed(base, k) for k in range(prompts)]


@dataclass
class Generated:
    """A generation job's result: `params.n` samples per prompt, and the prompt tokens the
    engine served from its prefix cache, apportioned by prompt tokens among the prompts
    prefilled together."""

    samples: list[list[Sample]]
    cached_tokens: int


@dataclass(eq=False)
class _Job:
    prompts: list[list[int]] | None = None
    params: SamplingParams | None = None
    seeds: list[PromptSeed] | None = None
    fn: Callable | None = None
    """set for a `call` job instead of the generation fields"""
    arrived: float = field(default_factory=time.monotonic)
    future: Future = field(default_factory=Future)
    cancelled: bool = False
    """its client hung up: skip it, or drop its rows from the engine call"""
    on_token: Callable | None = None
    """a streamed job's hook: (prompt, sample, token_id, logprob, done) per sampled token"""
    streamed: bool = False
    """its hook has been called: the job cannot be run again"""
    parts: list = field(default_factory=list)
    """in an engine call: its prompts' samples as they finish (None: not yet)"""
    left: int = 0
    """in an engine call: its prompts not finished yet"""
    cached: int = 0
    """in an engine call: its prompt tokens served from the engine's cache so far"""
    span: range = range(0)
    """in an engine call: its prompts' indices there"""

    @property
    def rows(self) -> int:
        return len(self.prompts) * self.params.n if self.fn is None else 0


class Batcher:
    """Owns the engine; `generate` and `call` may be used from any thread."""

    def __init__(self, engine: Generator, max_wait_s: float = 0.005, max_rows: int = 64):
        self.engine = engine
        self.max_wait_s = max(0.0, max_wait_s)
        self.max_rows = max(1, max_rows)
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        self._stats = {"generate_calls": 0, "generate_requests": 0, "max_requests_per_call": 0, "joined_requests": 0,
                       "other_calls": 0, "cancelled_jobs": 0}
        self._waiting = 0
        self._pending: list[_Job] = []  # taken off the queue, not started; the engine thread's own
        self._stopping = False
        hooks = inspect.signature(engine.generate).parameters
        self._abandons, self._streams = "abandoned" in hooks, "on_token" in hooks
        self._joins = "more" in hooks and "on_done" in hooks
        self._thread = threading.Thread(target=self._run, name="ponder-engine", daemon=True)
        self._thread.start()

    # ----- any thread -----

    def generate(self, prompts: list[list[int]], params: SamplingParams, seeds: list[PromptSeed],
                 alive: Callable[[], bool] | None = None) -> Generated:
        """Samples for token-id `prompts`, one seed per prompt; blocks until they are
        finished. `alive`: whether the caller still wants the answer (see the module
        docstring); ClientGone once it does not."""
        if len(seeds) != len(prompts):
            raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts; give one seed per prompt")
        return self._submit(_Job(prompts=prompts, params=params, seeds=list(seeds)), alive)

    def stream(self, prompts: list[list[int]], params: SamplingParams, seeds: list[PromptSeed],
               alive: Callable[[], bool] | None = None) -> "TokenStream":
        """As `generate`, but returns at once: the job's tokens as they are sampled (see
        `TokenStream`), then its `Generated` result."""
        if len(seeds) != len(prompts):
            raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts; give one seed per prompt")
        events: queue.Queue = queue.Queue()
        job = _Job(prompts=prompts, params=params, seeds=list(seeds),
                   on_token=lambda *token: events.put(Token(*token)))
        job.future.add_done_callback(lambda _: events.put(_END))  # after every token: the engine call has ended
        self._enqueue(job)
        return TokenStream(self, job, events, alive)

    def call(self, fn: Callable, alive: Callable[[], bool] | None = None):
        """`fn()` run on the engine thread, between batched generations; its result or error."""
        return self._submit(_Job(fn=fn), alive)

    def stats(self) -> dict:
        """Engine calls so far (those that answered a request), the requests they answered,
        the most one call answered and how many joined a call already decoding; `call` jobs;
        jobs waiting now; jobs dropped because their client hung up."""
        with self._lock:
            return {**self._stats, "waiting_jobs": self._waiting}

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker after the work in hand; jobs still queued fail. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _submit(self, job: _Job, alive: Callable[[], bool] | None):
        self._enqueue(job)
        try:
            while True:
                try:
                    return job.future.result(timeout=POLL_S if alive is not None else None)
                except TimeoutError:
                    if not alive():
                        self._cancel(job)
                        raise ClientGone() from None
        finally:
            self._done_waiting()

    def _enqueue(self, job: _Job) -> None:
        with self._lock:
            if self._closed:
                raise EngineError("the server is shutting down")
            self._queue.put(job)
            self._waiting += 1

    def _done_waiting(self) -> None:
        with self._lock:
            self._waiting -= 1

    def _cancel(self, job: _Job) -> None:
        """Nobody wants the job's result any more: drop it, or its rows (at the next step)."""
        if job.cancelled or job.future.done():
            return
        job.cancelled = True
        with self._lock:
            self._stats["cancelled_jobs"] += 1

    # ----- the engine thread -----

    def _run(self) -> None:
        """Jobs in arrival order: a `call` job alone; a generation job starts an engine call
        (`_run_group`) once `max_wait_s` have passed since it arrived or `max_rows` rows wait,
        with the waiting jobs of equal params queued before the next `call` job."""
        while True:
            if not self._pending:
                if self._stopping:
                    break
                self._pull(None)
                continue
            job = self._pending.pop(0)
            if job.cancelled:  # its client left while it waited
                continue
            if job.fn is not None:
                self._run_call(job)
                continue
            while not self._stopping and job.rows + sum(j.rows for j in self._pending) < self.max_rows:
                wait = job.arrived + self.max_wait_s - time.monotonic()
                if wait <= 0 or not self._pull(wait):
                    break
            self._run_group([job] + self._take(job.params))
        while True:  # fail whatever arrived after the stop
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP:
                job.future.set_exception(EngineError("the server is shutting down"))

    def _pull(self, timeout: float | None = 0.0) -> bool:
        """Move the queued jobs to `_pending`, waiting up to `timeout` s for the first (None:
        until one comes); whether any came."""
        got = False
        try:
            item = self._queue.get(timeout=timeout)
            while True:
                if item is _STOP:
                    self._stopping = True
                else:
                    self._pending.append(item)
                    got = True
                item = self._queue.get_nowait()
        except queue.Empty:
            pass
        return got

    def _take(self, params: SamplingParams, room: int | None = None) -> list[_Job]:
        """Waiting generation jobs with `params`, taken out of `_pending`. For a call's start
        (`room` None): all of them queued before the next `call` job (a call job may change
        what later generations see, e.g. the weights). To join a running call: those at the
        head of the line while `room` rows are left; a `call` job or a job of other params at
        the head stops the joining, so it goes next, as soon as the running call drains."""
        taken, keep = [], []
        for i, job in enumerate(self._pending):
            if job.cancelled:
                continue
            if job.fn is not None or (room is not None and (job.params != params or room <= 0)):
                keep += self._pending[i:]
                break
            if job.params == params:
                taken.append(job)
                room = None if room is None else room - job.rows
            else:
                keep.append(job)
        self._pending = keep
        return taken

    def _run_call(self, job: _Job) -> None:
        with self._lock:
            self._stats["other_calls"] += 1
        try:
            job.future.set_result(job.fn())
        except BaseException as e:  # the waiting handler reports it
            job.future.set_exception(e)

    def _run_group(self, group: list[_Job], joins: bool = True) -> None:
        """One engine call for `group` (jobs with equal params). With an engine that takes
        `more` and `on_done` (the torch engine), jobs of these params that arrive while it
        decodes join it between two decoding steps (unless `joins` is off), and each job is
        answered as soon as its own prompts are finished; the call ends when its batch runs
        dry. Other engines answer the group when the call returns."""
        group = [job for job in group if not job.cancelled]
        if not group:
            return
        params = group[0].params
        owners: dict[int, tuple[_Job, int]] = {}  # call prompt -> (job, its prompt), until it finishes
        live: dict[int, _Job] = {}  # id -> job, for those not answered yet (a running call keeps no others)
        carried = prompts = 0  # jobs and prompts the call took so far

        def add(jobs: list[_Job]) -> list[tuple[list[int], PromptSeed]]:
            nonlocal carried, prompts
            for job in jobs:
                job.parts, job.left, job.cached = [None] * len(job.prompts), len(job.prompts), 0
                job.span = range(prompts, prompts + len(job.prompts))
                owners.update((i, (job, k)) for k, i in enumerate(job.span))
                carried, prompts = carried + 1, job.span.stop
                live[id(job)] = job
            return [(p, seed) for job in jobs for p, seed in zip(job.prompts, job.seeds)]

        def more(rows: int) -> list[tuple[list[int], PromptSeed]]:
            self._pull()
            jobs = self._take(params, rows)
            if jobs:
                with self._lock:
                    self._stats["joined_requests"] += len(jobs)
            return add(jobs)

        def abandoned() -> set[int]:
            return {i for job in live.values() if job.cancelled for i in job.span}

        def on_token(i: int, j: int, token: int, logprob, done) -> None:
            job, k = owners[i]
            if job.on_token is not None and not job.cancelled:
                job.streamed = True
                job.on_token(k, j, token, logprob, done)

        def on_done(i: int, samples: list[Sample], cached: int) -> None:
            job, k = owners.pop(i)
            job.parts[k], job.left, job.cached = samples, job.left - 1, job.cached + cached
            if job.left:
                return
            del live[id(job)]
            with self._lock:  # counted before the answer goes out, so a client that reads the stats sees it
                if carried - len(live) == 1:  # the call's first answer
                    self._stats["generate_calls"] += 1
                self._stats["generate_requests"] += 1
                self._stats["max_requests_per_call"] = max(self._stats["max_requests_per_call"], carried - len(live))
            job.future.set_result(Generated(job.parts, job.cached))

        first = add(group)
        extra = {"abandoned": abandoned} if self._abandons else {}
        if self._streams and any(job.on_token is not None for job in group):
            extra["on_token"] = on_token
        try:
            if self._joins:
                if joins:
                    extra["more"] = more
                    if self._streams:  # a streamed job may join later
                        extra["on_token"] = on_token
                self.engine.generate([p for p, _ in first], params, seeds=[seed for _, seed in first],
                                     on_done=on_done, **extra)
            else:
                cached0 = self.engine.usage.cached_tokens
                samples = self.engine.generate([p for p, _ in first], params, seeds=[seed for _, seed in first],
                                               **extra)
                # Cached tokens apportioned by prompt tokens; the first prompt takes the rounding remainder.
                cached, total = self.engine.usage.cached_tokens - cached0, sum(len(p) for p, _ in first)
                shares = [cached * len(p) // total for p, _ in first]
                shares[0] += cached - sum(shares)
                for i, (out, share) in enumerate(zip(samples, shares)):
                    on_done(i, out, share)
        except Exception as e:
            for job in list(live.values()):
                if carried == 1 or job.streamed:  # alone, or its client has tokens of the failed call already
                    job.future.set_exception(e)
                else:  # a request that breaks the engine fails alone
                    self._run_group([job], joins=False)


@dataclass
class Token:
    """One sampled token of a streamed job: its prompt (index in the job) and sample, the
    token's id and logprob, and the row's finished Sample when this token ended it."""

    prompt: int
    sample: int
    token_id: int
    logprob: float | None
    done: Sample | None


class TokenStream:
    """A streamed job as the handler thread reads it: iterate for its `Token`s as the engine
    samples them; once the iteration ends, `result` holds the job's `Generated` (the finished
    samples; an engine without a token hook delivers them only there). Iterating raises
    ClientGone once `alive()` says no, and the engine's error if the call failed. `close()`
    must end every stream: it drops the rows of a job not finished (a write to the client
    failed, or the client hung up)."""

    def __init__(self, batcher: Batcher, job: _Job, events: queue.Queue, alive: Callable[[], bool] | None):
        self.batcher, self.job, self.events, self.alive = batcher, job, events, alive
        self.result: Generated | None = None
        self._open = True

    def __iter__(self):
        checked = time.monotonic()
        while True:
            try:
                event = self.events.get(timeout=POLL_S)
            except queue.Empty:
                event = None
            # Tokens may arrive faster than POLL_S for a long time: ask about the client by the clock.
            if self.alive is not None and time.monotonic() - checked >= POLL_S:
                checked = time.monotonic()
                if not self.alive():
                    self.close()
                    raise ClientGone()
            if event is _END:
                break
            if event is not None:
                yield event
        self.result = self.job.future.result()

    def close(self) -> None:
        """Stop counting the job as waiting (idempotent); an unfinished job is cancelled."""
        if self._open:
            self._open = False
            self.batcher._cancel(self.job)
            self.batcher._done_waiting()
