"""OmegaPRM process labels (Luo et al. 2024, "Improve Mathematical Reasoning in Language
Models by Automated Process Supervision", §3).

A tree per problem. Each node s is a step prefix with a visit count N(s) and a Monte Carlo
estimate MC(s) (fraction of k rollouts from s reaching the gold answer). The rollout pool
holds incorrect rollouts r hanging off states with MC(s) < 1. Each iteration:

1. Select (eq. 3-5): (s, r) = argmax_{(s,r) in pool}  Q(s, r) + U(s), with
       Q(s, r) = alpha^(1 - MC(s)) * beta^(len(r) / L)
       U(s)    = c_puct * sqrt(sum_i N(s_i)) / (1 + N(s)).
   Q prefers rollouts that are wrong although their state is likely right (a probable
   error worth finding) and short; U explores rarely visited states.
2. Binary search (Algorithm 1) for the first error in r: with lo = 0 steps known good and
   hi = len(r) known bad, probe the prefix s + r[:m] at m = (lo + hi) // 2 with k rollouts;
   MC > 0 means the prefix can still reach the answer, so the error lies after m (lo = m),
   otherwise at or before it (hi = m). The first error is step hi. Every probed prefix
   becomes a node; its incorrect rollouts join the pool when 0 < MC < 1 and they have at
   least one step (an empty rollout - the policy ended at once - holds no step that could be
   the first error: searching it would start with hi = 0 and blame the state's own last
   step, whose MC > 0 says it can still reach the answer).
3. Maintain: N(s) += 1 for the selected state; Q changes with the new MC estimates.

It stops when the pool is empty or `search_limit` selections were made. Binary search needs
about log2(K) probes per incorrect solution against Math-Shepherd's K - 1, and correct
solutions need none (every prefix of a correct solution demonstrably reaches the answer),
which is where its saving comes from.

Deliberate choices, stated: the root (the bare question) counts as a correct state, so the
policy's incorrect solutions are searched even when none of them is right (the question is
not wrong); a correct solution's steps are labelled 1.0; steps after a localised error 0.0.
All problems' binary searches advance in lockstep so each round is one batched `generate`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ponder.annotate.rollouts import Rollout, complete_states
from ponder.generation.base import Generator
from ponder.seeds import derive
from ponder.tasks.base import Problem, Task


@dataclass
class OmegaConfig:
    k: int = 8
    """rollouts per Monte Carlo estimate of a probed prefix"""
    alpha: float = 0.5
    """Q's weight on MC(s): alpha^(1 - MC)"""
    beta: float = 0.9
    """Q's length penalty: beta^(len(r) / L)"""
    length_scale: int = 500
    """L, the rollout length (tokens) normaliser in Q"""
    c_puct: float = 0.125
    """exploration constant of U(s)"""
    search_limit: int = 100
    """selections (binary searches) per problem, at most"""


@dataclass
class LabelledSolution:
    steps: list[str]
    """the whole solution's steps"""
    soft: list[float] | None
    """per-step MC labels (None: an incorrect solution the search never reached)"""
    origin: int | None
    """index of the input solution it labels, or None for a rollout the tree produced"""
    rollouts: int = 0
    """rollouts spent localising its error"""
    tokens: int = 0
    """tokens generated for those rollouts"""
    correct: bool = False

    @property
    def first_error(self) -> int | None:
        if self.soft is None:
            return None
        return next((i for i, s in enumerate(self.soft) if s <= 0), None)


@dataclass
class _Node:
    prefix: tuple[str, ...]
    hits: int = 0
    total: int = 0
    visits: int = 0

    @property
    def mc(self) -> float:
        return self.hits / self.total if self.total else 0.0


@dataclass
class _Candidate:
    node: _Node
    rollout: Rollout
    solution: LabelledSolution


@dataclass
class _Search:
    cand: _Candidate
    lo: int
    hi: int


def q_value(mc: float, length: int, alpha: float, beta: float, length_scale: int) -> float:
    """Q(s, r) = alpha^(1 - MC(s)) * beta^(len(r) / L)  (OmegaPRM eq. 4)."""
    return alpha ** (1.0 - mc) * beta ** (length / length_scale)


def u_value(visits: int, total_visits: int, c_puct: float) -> float:
    """U(s) = c_puct * sqrt(sum_i N(s_i)) / (1 + N(s))  (OmegaPRM eq. 5)."""
    return c_puct * math.sqrt(total_visits) / (1 + visits)


def binary_search_first_error(n_steps: int, reaches_answer) -> tuple[int, list[int]]:
    """The first-error step of an incorrect solution with `n_steps` steps, given an oracle
    `reaches_answer(m)` for "the prefix of m steps can still reach the gold answer" (the
    empty prefix is assumed to). Returns (index of the first wrong step, probed m's).
    This is the sequential form of the search `OmegaTree` runs in lockstep."""
    lo, hi, probed = 0, n_steps, []
    while hi - lo > 1:
        m = (lo + hi) // 2
        probed.append(m)
        if reaches_answer(m):
            lo = m
        else:
            hi = m
    return hi - 1, probed


class OmegaTree:
    """The search state of one problem; `next_probe` / `feed` let many trees share batches."""

    def __init__(self, problem: Problem, initial: list[tuple[list[str], bool, int]], cfg: OmegaConfig):
        self.problem, self.cfg = problem, cfg
        self.root = _Node(())
        self.nodes: dict[tuple[str, ...], _Node] = {(): self.root}
        self.solutions: list[LabelledSolution] = []
        self.pool: list[_Candidate] = []
        self.searches = 0
        self.active: _Search | None = None
        for i, (steps, correct, tokens) in enumerate(initial):
            self.root.total += 1
            self.root.hits += int(correct)
            sol = LabelledSolution(list(steps), [1.0] * len(steps) if correct else None, i, correct=correct)
            self.solutions.append(sol)
            if not correct and steps:
                self.pool.append(_Candidate(self.root, Rollout(list(steps), False, tokens), sol))

    # -- selection --------------------------------------------------------------------
    def _select(self) -> _Candidate | None:
        cfg = self.cfg
        live = [c for c in self.pool if c.node.mc < 1.0]
        if not live or self.searches >= cfg.search_limit:
            return None
        total = sum(n.visits for n in self.nodes.values())
        best = max(live, key=lambda c: q_value(c.node.mc, c.rollout.num_tokens, cfg.alpha, cfg.beta, cfg.length_scale)
                   + u_value(c.node.visits, total, cfg.c_puct))
        self.pool.remove(best)
        best.node.visits += 1
        self.searches += 1
        return best

    def _finish(self, search: _Search) -> None:
        """Label the searched solution: steps before the error get the MC of the nearest
        probed prefix at or after them (known > 0), the error and what follows get 0."""
        cand = search.cand
        base = len(cand.node.prefix)
        error = base + search.hi - 1
        full = list(cand.node.prefix) + cand.rollout.steps
        soft = [0.0] * len(full)
        nearest = None
        for j in range(error - 1, -1, -1):
            node = self.nodes.get(tuple(full[: j + 1]))
            if node is not None and node.total:
                nearest = node.mc
            soft[j] = nearest if nearest is not None else cand.node.mc
        cand.solution.steps, cand.solution.soft = full, soft

    def next_probe(self) -> list[str] | None:
        """The next prefix to estimate MC for, or None when this tree is done."""
        while True:
            if self.active is None:
                cand = self._select()
                if cand is None:
                    return None
                self.active = _Search(cand, 0, len(cand.rollout.steps))
            s = self.active
            if s.hi - s.lo <= 1:
                self._finish(s)
                self.active = None
                continue
            m = (s.lo + s.hi) // 2
            return list(s.cand.node.prefix) + s.cand.rollout.steps[:m]

    def feed(self, prefix: list[str], rollouts: list[Rollout]) -> None:
        """Record the k rollouts of the last probe and move the binary search on."""
        s = self.active
        key = tuple(prefix)
        node = self.nodes.setdefault(key, _Node(key))
        node.hits += sum(r.correct for r in rollouts)
        node.total += len(rollouts)
        s.cand.solution.rollouts += len(rollouts)
        s.cand.solution.tokens += sum(r.num_tokens for r in rollouts)
        m = (s.lo + s.hi) // 2
        if node.mc > 0:
            s.lo = m
        else:
            s.hi = m
        for r in rollouts:
            full = list(prefix) + r.steps
            if r.correct:
                self.solutions.append(LabelledSolution(full, [1.0] * len(full), None, correct=True))
            else:
                sol = LabelledSolution(full, None, None)
                self.solutions.append(sol)
                if 0 < node.mc < 1 and r.steps:
                    self.pool.append(_Candidate(node, r, sol))


def omega_prm(
    generator: Generator,
    task: Task,
    groups: list[tuple[Problem, list[tuple[list[str], bool, int]]]],
    cfg: OmegaConfig,
    temperature: float = 1.0,
    max_tokens: int = 256,
    seed: int = 0,
) -> list[list[LabelledSolution]]:
    """Run OmegaPRM on each (problem, initial solutions [(steps, correct, tokens)]).

    Returns, per problem, the labelled solutions: the inputs first (in order; `soft` is None
    for an incorrect one never searched), then the rollouts the tree produced."""
    trees = [OmegaTree(problem, initial, cfg) for problem, initial in groups]
    round_ = 0
    while True:
        probes = [(t, t.next_probe()) for t in trees]
        probes = [(t, p) for t, p in probes if p is not None]
        if not probes:
            break
        states = [(t.problem, p) for t, p in probes]
        results = complete_states(generator, task, states, cfg.k, temperature, max_tokens,
                                  seed=derive(seed, "omega-round", round_))
        for (t, p), rolls in zip(probes, results):
            t.feed(p, rolls)
        round_ += 1
    return [t.solutions for t in trees]
