"""Compute-optimal scaling must not learn a problem's outcome from its difficulty bin.

On problems where every sample is a fair coin flip no setting can beat another, so the
compute-optimal row must come out within noise of majority@N. Binning problems by the pass
rate of the sweep's own samples leaked the outcome (majority@4's samples are the first 4 of
majority@16's): it reported ~0.69 against majority's ~0.50 on such problems. Difficulty now
comes from a separate draw (Snell et al. 2024 estimate it on samples of their own)."""
from __future__ import annotations

import hashlib
import math

from ponder.generation.base import Generator, Sample, Usage, seed_key
from ponder.search.base import SearchContext
from ponder.search.scale import ScaleConfig, run_scale
from ponder.tasks.base import Problem, Task


class CoinTask(Task):
    """Problem i's gold answer is 1; a solution answers 0 or 1."""

    name = "coin"

    def problems(self, split="test", n=None, seed=0):
        return [Problem(id=f"c{i}", question=f"q{i}", answer="1") for i in range(n or 400)]

    def prompt(self, problem):
        return problem.question

    def extract_answer(self, text):
        return text.rsplit("Answer: ", 1)[-1].strip() if "Answer: " in text else None

    def is_correct(self, problem, text):
        return self.extract_answer(text) == problem.answer


class CoinEngine(Generator):
    """Every sample answers 1 or 0 with probability 1/2, from a hash of its seed, its prompt
    and its index: independent across seeds, reproducible for a seed (the engine contract's
    seeding), one generated token each."""

    name = "coin"

    def __init__(self):
        self.usage = Usage()

    def prompt_ids(self, prompts):
        return [[ord(c) for c in p] for p in prompts]

    def tokenize(self, texts):
        return [[ord(c) for c in t] for t in texts]

    def generate(self, prompts, params, seeds=None):
        ids = self.encode(prompts)
        out = []
        for i, p in enumerate(ids):
            s, k = seed_key(seeds[i]) if seeds is not None else (params.seed, i)
            flips = [hashlib.sha256(f"{s}:{k}:{p}:{j}".encode()).digest()[0] & 1 for j in range(params.n)]
            out.append([Sample(f"Answer: {f}", [48 + f], [math.log(0.5)], "stop", 1) for f in flips])
            self.usage.prefill_tokens += len(p)
            self.usage.generated_tokens += params.n
        self.usage.calls += 1
        return out


def test_compute_optimal_is_within_noise_of_majority_on_coin_flips():
    task = CoinTask()
    problems = task.problems(n=400)
    cfg = ScaleConfig(strategies=("majority",), budgets=(1, 4, 16), n_problems=400, scorer="none", bins=3,
                      seed=0, max_tokens=4)
    out = run_scale(SearchContext(CoinEngine(), task, None), problems, cfg)
    majority = {r["budget"]: r["accuracy"] for r in out["rows"] if r["strategy"] == "majority"}
    optimal = {r["budget"]: r["accuracy"] for r in out["rows"] if r["strategy"] == "compute-optimal"}
    se = math.sqrt(0.25 / 400)  # a coin's standard error over 400 problems
    for n in (4, 16):
        assert abs(optimal[n] - majority[n]) < 3 * se, (n, optimal[n], majority[n])
        assert abs(optimal[n] - 0.5) < 3 * se
    assert "separate" in out["compute_optimal"]["difficulty"]  # the output says how difficulty was estimated
