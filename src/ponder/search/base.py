"""The search contract: what every test-time strategy gets, returns and spends.

    result = search("beam", ctx, problem, SearchParams(n=16, beam_width=4))
    result.answer, result.candidates, result.compute

A strategy is a function `strategy(ctx, problem, cfg) -> (candidates, chosen)`, registered
under the name the literature uses (`best_of_n`, `beam`, `dvts`, `mcts`, ...). `ctx` bundles
the three things a strategy may touch: the policy (`Generator`), the task (prompts, answer
extraction, step splitting) and an optional scorer (verifier, ORM or PRM behind the `Scorer`
interface). `search` wraps the call in a meter, so compute is taken from the engine's and the
scorer's own counters - never estimated by the strategy - and nothing is counted twice or
left out: every token the engine generated or prefilled and every token the scorer read
during the call is in `result.compute`.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

from ponder.config import narrow
from ponder.generation.base import Generator
from ponder.rewards.base import Scorer
from ponder.seeds import derive
from ponder.tasks.base import Problem, Task


@dataclass
class SearchParams:
    """The knobs of one search call (budget, widths, sampling, selection), shared by the
    strategies; each strategy reads the ones it needs. Not LLM Reasoners' `SearchConfig`
    (their policy + reward): here the policy, task and scorer are the `SearchContext`."""

    n: int = 4
    """budget: samples (majority, best_of_n), beams (beam, dvts, lookahead), simulations
    (mcts), revision rounds (self_refine) or "Wait" extensions (budget_forcing)"""
    beam_width: int = 4
    """M: beam keeps n/M beams and expands each M times; dvts runs n/M subtrees; mcts
    expands a node into M children"""
    temperature: float = 1.0
    """sampling temperature of the policy"""
    top_p: float = 1.0
    """nucleus sampling mass"""
    max_tokens: int = 256
    """generated tokens per solution, at most"""
    max_step_tokens: int = 64
    """generated tokens per step, at most (step-level strategies)"""
    max_steps: int = 16
    """steps per solution, at most (step-level strategies)"""
    aggregation: str = "last"
    """how step scores make a solution score: last, min, prod or mean (ponder.rewards.aggregate)"""
    weighted: bool = False
    """best-of-N / tree search: pick the answer with the largest summed score over all
    candidates (weighted vote) instead of the single best-scored candidate"""
    share_prefix: bool = True
    """tree search: expand a node as one prompt with n=M (its text prefilled once) rather
    than M prompts (prefilled M times); off only to measure what sharing saves"""
    lookahead: int = 2
    """lookahead: greedy steps rolled out past a candidate step before scoring it"""
    c_puct: float = 1.0
    """mcts: exploration constant of the PUCT rule"""
    think_end: str = "</think>"
    """budget_forcing: the string that closes the thinking block"""
    wait: str = "Wait"
    """budget_forcing: appended in place of the end of thinking to make the model go on"""
    think_tokens: int = 0
    """budget_forcing: cut thinking to this many tokens (0 = no cap but max_tokens)"""
    seed: int = 0
    """seed of the sampling calls"""


@dataclass
class Candidate:
    """One finished (or abandoned) solution a strategy considered."""

    text: str
    """the completion (no prompt)"""
    answer: str | None
    """the answer extracted by the task"""
    score: float | None = None
    """the strategy's score of it (scorer score, vote share, ...); None when it has none"""
    step_scores: list[float] | None = None
    """per-step scorer scores, when a step scorer was used"""


@dataclass
class Compute:
    """What a search spent. `generated_tokens` and `prefill_tokens` are the engine's usage
    deltas (a prompt shared by n samples is prefilled once); `scorer_tokens` the scorer's."""

    generated_tokens: int = 0
    prefill_tokens: int = 0
    scorer_tokens: int = 0
    generate_calls: int = 0
    scorer_calls: int = 0
    wall_s: float = 0.0

    def __add__(self, other: "Compute") -> "Compute":
        return Compute(*(a + b for a, b in zip(asdict(self).values(), asdict(other).values())))

    def prefill_per_generated(self) -> float:
        return self.prefill_tokens / max(self.generated_tokens, 1)


@dataclass
class SearchResult:
    strategy: str
    answer: str | None
    """the chosen answer"""
    text: str | None
    """the chosen candidate's completion"""
    candidates: list[Candidate]
    compute: Compute

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SearchContext:
    """The policy, the task and an optional scorer: everything a strategy may touch."""

    generator: Generator
    task: Task
    scorer: Scorer | None = None

    def need_scorer(self, strategy: str) -> Scorer:
        if self.scorer is None:
            raise ValueError(f"strategy {strategy!r} needs a scorer: pass --scorer verifier or --scorer <PRM dir>")
        return self.scorer


Strategy = Callable[[SearchContext, Problem, SearchParams], "tuple[list[Candidate], int | None]"]
STRATEGIES: dict[str, Strategy] = {}
"""name -> strategy; filled by the modules that `ponder.search` imports (STRATEGY_MODULES)"""


def register_strategy(name: str):
    """Function decorator adding a strategy to the registry under `name`. The module must be
    listed in `ponder.search.STRATEGY_MODULES` (a test checks every module that registers)."""

    def wrap(fn: Strategy) -> Strategy:
        if name in STRATEGIES and STRATEGIES[name] is not fn:
            raise ValueError(f"search strategy {name!r} registered twice ({STRATEGIES[name].__module__} "
                             f"and {fn.__module__})")
        STRATEGIES[name] = fn
        return fn

    return wrap


def get_strategy(name: str) -> Strategy:
    """The strategy registered as `name`; an unknown name lists the known ones."""
    import ponder.search  # noqa: F401  (imports every strategy module, filling the registry)

    if name not in STRATEGIES:
        raise ValueError(f"unknown search strategy {name!r}: expected one of {', '.join(sorted(STRATEGIES))}")
    return STRATEGIES[name]


def search(strategy: str, ctx: SearchContext, problem: Problem, cfg: SearchParams) -> SearchResult:
    """Run one strategy on one problem and measure what it spent."""
    fn = get_strategy(strategy)
    if ctx.scorer is not None:
        ctx.scorer.start_search(ctx.task.prompt(problem))
    gen0 = ctx.generator.usage.copy()
    sc0 = ctx.scorer.usage.copy() if ctx.scorer is not None else None
    t0 = time.perf_counter()
    candidates, chosen = fn(ctx, problem, cfg)
    wall = time.perf_counter() - t0
    used = ctx.generator.usage - gen0
    compute = Compute(generated_tokens=used.generated_tokens, prefill_tokens=used.prefill_tokens,
                      generate_calls=used.calls, wall_s=wall)
    if sc0 is not None:
        compute.scorer_tokens = ctx.scorer.usage.tokens - sc0.tokens
        compute.scorer_calls = ctx.scorer.usage.calls - sc0.calls
    best = candidates[chosen] if chosen is not None else None
    return SearchResult(strategy, best.answer if best else None, best.text if best else None, candidates, compute)


def seed_for(seed: int, problem: Problem, call: int = 0) -> int:
    """The sampling seed of one engine call of a search: distinct per problem and per call,
    so problems do not share noise streams, and the same for every strategy, so strategies
    that draw whole solutions (majority, best_of_n) see the same samples - a paired
    comparison."""
    return derive(seed, "problem", problem.id, call)


def search_params(cfg: SearchParams) -> SearchParams:
    """The plain SearchParams inside a command's config that extends it."""
    return narrow(cfg, SearchParams)


def check_width(cfg: SearchParams, strategy: str) -> int:
    """n / M for the tree strategies, with an error a user can act on when M does not divide n."""
    n, m = cfg.n, cfg.beam_width
    if n < 1 or m < 1:
        raise ValueError(f"{strategy}: n and beam_width must be >= 1, got n={n}, beam_width={m}")
    if n % m:
        raise ValueError(
            f"{strategy}: beam_width={m} must divide n={n} (n beams keep n/M and expand each M times); "
            f"try beam_width in {[d for d in range(1, n + 1) if n % d == 0]}"
        )
    return n // m
