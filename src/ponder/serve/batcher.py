"""Concurrent requests batched into engine calls, on one engine thread.

HTTP handler threads never touch the engine. They put a job on a queue and wait for its
result; one worker thread owns the engine and drains the queue:

1. it blocks until a job arrives, then keeps collecting for up to `max_wait_s` after that
   job's arrival (or until `max_rows` sample rows are waiting: a full engine batch gains
   nothing from waiting longer);
2. it runs the collected jobs in arrival order; consecutive generation jobs whose sampling
   params are equal apart from the seed form a group, and each group is ONE
   `engine.generate(prompts, params, seeds=[...])` call;
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

If a group's call fails, its jobs are retried one by one, so a request that breaks the
engine fails alone instead of taking the requests it was batched with down with it (a
streamed job that already sent tokens fails instead: its client cannot take them back).
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
    engine served from its prefix cache, apportioned to this request by its prompt tokens
    when the call carried several requests."""

    samples: list[list[Sample]]
    cached_tokens: int


@dataclass
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
        self._stats = {"generate_calls": 0, "generate_requests": 0, "max_requests_per_call": 0, "other_calls": 0,
                       "cancelled_jobs": 0}
        self._waiting = 0
        self._abandons = "abandoned" in inspect.signature(engine.generate).parameters
        self._streams = "on_token" in inspect.signature(engine.generate).parameters
        self._thread = threading.Thread(target=self._run, name="ponder-engine", daemon=True)
        self._thread.start()

    # ----- any thread -----

    def generate(self, prompts: list[list[int]], params: SamplingParams, seeds: list[PromptSeed],
                 alive: Callable[[], bool] | None = None) -> Generated:
        """Samples for token-id `prompts`, one seed per prompt; blocks until the engine call
        that carried them ends. `alive`: whether the caller still wants the answer (see the
        module docstring); ClientGone once it does not."""
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
        """Engine calls so far and the requests they carried; jobs waiting now; jobs dropped
        because their client hung up."""
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
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            jobs, rows = [first], first.rows
            while rows < self.max_rows:
                try:
                    job = self._queue.get(timeout=max(0.0, first.arrived + self.max_wait_s - time.monotonic()))
                except queue.Empty:
                    break
                if job is _STOP:
                    stopping = True
                    break
                jobs.append(job)
                rows += job.rows
            self._run_jobs(jobs)
        while True:  # fail whatever arrived after the stop
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP:
                job.future.set_exception(EngineError("the server is shutting down"))

    def _run_jobs(self, jobs: list[_Job]) -> None:
        """Jobs in arrival order; between two `call` jobs, generation jobs with equal params
        are grouped (a call job may change what later generations see, e.g. the weights)."""
        segment: list[_Job] = []
        for job in [j for j in jobs if not j.cancelled] + [None]:
            if job is not None and job.fn is None:
                segment.append(job)
                continue
            groups: list[list[_Job]] = []
            for g in segment:
                same = next((grp for grp in groups if grp[0].params == g.params), None)
                if same is None:
                    groups.append([g])
                else:
                    same.append(g)
            for grp in groups:
                self._run_group(grp)
            segment = []
            if job is not None:
                self._run_call(job)

    def _run_call(self, job: _Job) -> None:
        if job.cancelled:  # its client left while the jobs before it ran
            return
        with self._lock:
            self._stats["other_calls"] += 1
        try:
            job.future.set_result(job.fn())
        except BaseException as e:  # the waiting handler reports it
            job.future.set_exception(e)

    def _run_group(self, group: list[_Job]) -> None:
        group = [job for job in group if not job.cancelled]
        if not group:
            return
        prompts, seeds, spans = [], [], []
        for job in group:
            spans.append((job, range(len(prompts), len(prompts) + len(job.prompts))))
            prompts += job.prompts
            seeds += job.seeds

        def abandoned() -> set[int]:
            return {i for job, span in spans if job.cancelled for i in span}

        owners = [(job, k) for job, span in spans for k in range(len(span))]  # call prompt -> (job, its prompt)

        def on_token(i: int, j: int, token: int, logprob, done) -> None:
            job, k = owners[i]
            if job.on_token is not None and not job.cancelled:
                job.streamed = True
                job.on_token(k, j, token, logprob, done)

        cached0 = self.engine.usage.cached_tokens
        try:
            extra = {"abandoned": abandoned} if self._abandons else {}
            if self._streams and any(job.on_token is not None for job in group):
                extra["on_token"] = on_token
            samples = self.engine.generate(prompts, group[0].params, seeds=seeds, **extra)
        except Exception as e:
            if len(group) > 1:
                for job in group:
                    if job.streamed:  # its client has tokens of the failed call already
                        job.future.set_exception(e)
                    else:
                        self._run_group([job])
            else:
                group[0].future.set_exception(e)
            return
        with self._lock:
            self._stats["generate_calls"] += 1
            self._stats["generate_requests"] += len(group)
            self._stats["max_requests_per_call"] = max(self._stats["max_requests_per_call"], len(group))
        cached = self.engine.usage.cached_tokens - cached0
        total = sum(len(p) for p in prompts)
        # Cached tokens apportioned by prompt tokens; the first job takes the rounding remainder.
        shares = [cached * sum(len(p) for p in job.prompts) // total for job in group]
        shares[0] += cached - sum(shares)
        start = 0
        for job, mine in zip(group, shares):
            job.future.set_result(Generated(samples[start : start + len(job.prompts)], mine))
            start += len(job.prompts)


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
