"""Search many problems at once: one engine call (and one scorer call) per round.

    results = search_many("beam", ctx, problems, SearchParams(n=16, beam_width=4))

A strategy is written for one problem (base.py): it calls `ctx.generator.generate` and the
scorer for that problem alone. On a small model most of such a call is overhead, so
`search_many` runs the strategies of all problems together, each unchanged:

1. each problem's `search` runs in its own thread, with a context whose generator and scorer
   are stand-ins for the real ones; a stand-in's call queues its request and blocks;
2. the threads run one at a time, in problem order, each until it blocks or finishes (so
   tokenizers and tasks are never used by two threads at once, and the order of requests
   is the same on every run);
3. when every thread is blocked or finished, the queued requests are served together: the
   generate requests whose `SamplingParams` are equal (the seed aside) go into one real
   `generate` call, each prompt with its own seed as a `(seed, index)` pair, so it is sampled
   as it would have been in its own call (engine contract, generation/base.py); requests
   whose params differ go into separate calls; the scorer requests of one method go into one
   scorer call. The results are split back and the threads resume.

Compute stays per problem: a stand-in counts what its own requests cost, as the engine would
have counted them - the prompt's tokens once per prompt and the sampled tokens (torch engine,
vLLM, servers), one call per request - and the scorer tokens of its rows (see
`_row_tokens`). A problem's `wall_s` is its share of the batch's wall time (the batch's
time over its problems), since the problems run at the same time.

An error in one problem's search (its strategy, or a real call that fails) stops the batch:
the other threads are unwound and the first failed problem's exception is raised here.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

from ponder.generation.base import Generator, SamplingParams, Usage, check_params
from ponder.rewards.base import Scorer, ScorerUsage
from ponder.search.base import SearchContext, SearchParams, SearchResult, get_strategy, search
from ponder.tasks.base import Problem


def search_many(strategy: str, ctx: SearchContext, problems: list[Problem],
                params: SearchParams, batch: bool = True) -> list[SearchResult]:
    """`search(strategy, ctx, p, params)` for every problem, their engine and scorer calls
    made together (module docstring); the results are those of one-by-one searches, which
    `batch=False` runs instead."""
    get_strategy(strategy)
    if not batch or len(problems) <= 1:
        return [search(strategy, ctx, p, params) for p in problems]
    t0 = time.perf_counter()
    results = _Batch(ctx).run(lambda c, p: search(strategy, c, p, params), problems)
    share = (time.perf_counter() - t0) / len(problems)
    for r in results:
        r.compute.wall_s = share
    return results


class _Unwind(BaseException):
    """Delivered to a blocked search when another one failed: ends its thread quietly."""


@dataclass
class _Request:
    worker: "_Worker"
    method: str
    """generate, score_steps or score_outcomes"""
    args: tuple
    result: object = None
    error: BaseException | None = None


class _Worker:
    """One problem's search in its own thread, run by `_Batch` one step at a time."""

    def __init__(self, batch: "_Batch", fn, problem: Problem):
        self.batch, self.problem = batch, problem
        self.go = threading.Semaphore(0)
        self.request: _Request | None = None
        self.result, self.error, self.finished = None, None, False
        ctx = batch.ctx
        scorer = _ProblemScorer(self) if ctx.scorer is not None else None
        self.ctx = SearchContext(_ProblemGenerator(self), ctx.task, scorer)
        self.thread = threading.Thread(target=self._main, args=(fn,), daemon=True,
                                       name=f"search {problem.id}")

    def _main(self, fn) -> None:
        self.go.acquire()
        try:
            if self.request is not None:  # unwound before it started
                raise self.request.error
            self.result = fn(self.ctx, self.problem)
        except _Unwind:
            pass
        except BaseException as e:  # raised again by the batch, in the caller's thread
            self.error = e
        self.finished = True
        self.batch.back.release()

    def call(self, method: str, *args):
        """Queue a request, hand control back to the batch, and wait for the answer."""
        self.request = _Request(self, method, args)
        self.batch.back.release()
        self.go.acquire()
        request, self.request = self.request, None
        if request.error is not None:
            raise request.error
        return request.result

    def step(self) -> None:
        """Let the thread run until it blocks on its next request or finishes."""
        self.go.release()
        self.batch.back.acquire()


class _Batch:
    def __init__(self, ctx: SearchContext):
        self.ctx = ctx
        self.back = threading.Semaphore(0)

    def run(self, fn, problems: list[Problem]) -> list[SearchResult]:
        workers = [_Worker(self, fn, p) for p in problems]
        for w in workers:
            w.thread.start()
        live = workers
        try:
            while True:
                for w in live:
                    w.step()
                failed = next((w for w in workers if w.error is not None), None)
                live = [w for w in live if not w.finished]
                if failed is not None:
                    raise failed.error
                if not live:
                    return [w.result for w in workers]
                self.serve([w.request for w in live])
        finally:
            for w in live:  # unwind the searches still blocked, so no thread is left waiting
                if not w.finished:
                    w.request = w.request or _Request(w, "start", ())
                    w.request.error = _Unwind()
                    w.step()
            for w in workers:
                w.thread.join()

    def serve(self, requests: list[_Request]) -> None:
        """Answer every request: equal requests grouped into one real call each."""
        groups: dict[tuple, list[_Request]] = {}
        for r in requests:
            if r.method == "generate":
                params = r.args[1]
                key = (r.method, repr(replace(params, seed=None)), params.seed is None and r.args[2] is None)
            else:
                key = (r.method,)
            groups.setdefault(key, []).append(r)
        for key, group in groups.items():
            try:
                if key[0] == "generate":
                    self._generate(group)
                else:
                    self._score(key[0], group)
            except Exception as e:  # every search that asked gets the error
                for r in group:
                    r.error = e

    def _generate(self, group: list[_Request]) -> None:
        engine = self.ctx.generator
        if len(group) == 1:  # alone: the very call the search would have made
            prompts, params, seeds = group[0].args
            group[0].result = engine.generate(prompts, params) if seeds is None else \
                engine.generate(prompts, params, seeds=seeds)
            return
        prompts, seeds = [], []
        for r in group:
            rp, params, rs = r.args
            prompts += rp
            seeds += list(rs) if rs is not None else [(params.seed, i) for i in range(len(rp))]
        unseeded = group[0].args[1].seed is None and group[0].args[2] is None
        out = engine.generate(prompts, group[0].args[1], seeds=None if unseeded else seeds)
        start = 0
        for r in group:
            r.result, start = out[start:start + len(r.args[0])], start + len(r.args[0])

    def _score(self, method: str, group: list[_Request]) -> None:
        scorer = self.ctx.scorer
        prompts = [p for r in group for p in r.args[0]]
        items = [x for r in group for x in r.args[1]]
        before = scorer.usage.tokens
        out = getattr(scorer, method)(prompts, items)
        tokens = _split_tokens(scorer, method, prompts, items, scorer.usage.tokens - before)
        start = 0
        for r in group:
            end = start + len(r.args[0])
            r.result = (out[start:end], sum(tokens[start:end]))
            start = end


def _split_tokens(scorer: Scorer, method: str, prompts: list[str], items: list, total: int) -> list[int]:
    """The scorer tokens of each row of a call that read `total` tokens in all: the rows'
    own counts (`_row_tokens`) when they add up to `total`, else `total` shared out in
    proportion to the rows' characters (largest remainders, so the shares add up)."""
    if total == 0:
        return [0] * len(prompts)
    rows = _row_tokens(scorer, method, prompts, items)
    if rows is not None and sum(rows) == total:
        return rows
    chars = [len(p) + (len(x) if isinstance(x, str) else sum(len(s) for s in x)) for p, x in zip(prompts, items)]
    weight = max(sum(chars), 1)
    exact = [total * c / weight for c in chars]
    shares = [int(e) for e in exact]
    for i in sorted(range(len(exact)), key=lambda i: shares[i] - exact[i])[:total - sum(shares)]:
        shares[i] += 1
    return shares


def _row_tokens(scorer: Scorer, method: str, prompts: list[str], items: list) -> list[int] | None:
    """Tokens a reward model reads for each row (`RewardModel.encode` of the row, what its
    `usage.tokens` adds up, or what a remote PRM's server counted for each row of the call
    just made, its `row_tokens`); None for a scorer that cannot tell."""
    counted = getattr(scorer, "row_tokens", None)
    if counted is not None and len(counted) == len(prompts):
        return list(counted)
    encode, split = getattr(scorer, "encode", None), getattr(scorer, "split", None)
    if encode is None or (method == "score_outcomes" and split is None):
        return None
    steps = items if method == "score_steps" else [split(c) for c in items]
    return [len(encode(p, s)[0]) for p, s in zip(prompts, steps)]


class _ProblemGenerator(Generator):
    """The generator one problem's search sees: `generate` goes through the batch; usage
    counts this problem's requests only."""

    def __init__(self, worker: _Worker):
        self.worker, self.engine = worker, worker.batch.ctx.generator
        self.name = self.engine.name
        self.usage = Usage()

    def generate(self, prompts, params: SamplingParams, seeds=None):
        prompts = list(prompts)
        check_params(params)
        if seeds is not None and len(seeds) != len(prompts):
            raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts; give one seed per prompt")
        lengths = [len(ids) for ids in self.engine.encode(prompts)]
        out = self.worker.call("generate", prompts, params, seeds)
        self.usage.prefill_tokens += sum(lengths)  # once per prompt: its n samples share it
        self.usage.generated_tokens += sum(s.num_tokens for samples in out for s in samples)
        self.usage.calls += 1
        return out

    def prompt_ids(self, prompts):
        return self.engine.prompt_ids(prompts)

    def tokenize(self, texts):
        return self.engine.tokenize(texts)


class _ProblemScorer(Scorer):
    """The scorer one problem's search sees: calls go through the batch; usage counts this
    problem's rows only."""

    def __init__(self, worker: _Worker):
        self.worker = worker
        self.usage = ScorerUsage()

    def _call(self, method: str, prompts, items):
        out, tokens = self.worker.call(method, list(prompts), list(items))
        self.usage.calls += 1
        self.usage.tokens += tokens
        return out

    def score_steps(self, prompts, steps):
        return self._call("score_steps", prompts, steps)

    def score_outcomes(self, prompts, completions):
        return self._call("score_outcomes", prompts, completions)

    def start_search(self, prompt: str) -> None:
        self.worker.batch.ctx.scorer.start_search(prompt)
