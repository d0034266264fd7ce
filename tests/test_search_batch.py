"""Search batched across problems (ponder.search.batch): the same records as one problem at
a time, fewer engine calls, and errors that surface instead of hanging.

The model is a random tiny character-level Llama and the PRM a random head on it: their
outputs mean nothing, but every sample, step score and token count is a deterministic
function of the problem, which is what batching must not change."""
from __future__ import annotations

import threading

import pytest
import torch

from ponder.generation import SamplingParams, make_engine
from ponder.rewards.base import Scorer, ScorerUsage
from ponder.search import SearchContext, SearchParams
from ponder.search.driver import search_all
from ponder.search.scale import ScaleConfig, run_scale
from ponder.tasks import get_task

STRATEGIES = ("greedy", "majority", "best_of_n", "beam", "dvts", "lookahead", "mcts")


@pytest.fixture(scope="module")
def prm(tiny_dir):
    from ponder.rewards.model import new_reward_model

    rm = new_reward_model(str(tiny_dir), "prm")
    torch.manual_seed(1)
    torch.nn.init.normal_(rm.head.weight, std=0.5)  # a head at zero would score every step 0.5
    return rm.eval()


@pytest.fixture(scope="module")
def task():
    return get_task("arith", instruction=False)


def drop_wall(records):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in records]


def same_but_scores(a, b):
    """`a` equals `b` exactly, except PRM scores, which may differ in float32's last bits:
    the PRM's matmuls over a batch of other rows round differently (ponder.search.batch)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(
            same_but_scores(a[k], b[k]) if k not in ("score", "step_scores", "mean_score") or a[k] is None
            else a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6) for k in a if k != "wall_s")
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_but_scores(x, y) for x, y in zip(a, b))
    return a == b


def test_batched_sweep_equals_one_by_one(tiny_dir, prm, task):
    problems = task.problems("test", n=6, seed=0)
    cfg = dict(strategies=STRATEGIES, budgets=(1, 4), beam_width=2, max_tokens=12, max_step_tokens=4,
               temperature=1.0, lookahead=1, weighted=True)
    engine = make_engine("torch", str(tiny_dir))
    one = run_scale(SearchContext(engine, task, prm), problems, ScaleConfig(batch=False, **cfg))
    calls_one, prm_calls_one = engine.usage.calls, prm.usage.calls
    usage_one = engine.usage.copy()
    batched = run_scale(SearchContext(engine, task, prm), problems, ScaleConfig(**cfg))
    calls_batched = engine.usage.calls - calls_one
    assert len(one["records"]) == 6 * (1 + 6 * 2 + 1)  # + the difficulty probe
    # Answers, correctness, every token count.
    assert same_but_scores(batched["records"], one["records"])
    # Per-problem compute is what the engine counted, in both runs.
    assert sum(r["generated_tokens"] for r in one["records"]) == usage_one.generated_tokens
    assert sum(r["generated_tokens"] for r in batched["records"]) == engine.usage.generated_tokens - \
        usage_one.generated_tokens
    assert sum(r["scorer_tokens"] for r in batched["records"]) == sum(r["scorer_tokens"] for r in one["records"]) > 0
    # One engine call per round of a (strategy, budget), not per problem and round.
    assert calls_batched * 4 < calls_one
    assert prm.usage.calls - prm_calls_one < prm_calls_one


def test_batched_search_all_keeps_candidates_and_step_scores(tiny_dir, prm, task):
    problems = task.problems("test", n=5, seed=1)
    params = SearchParams(n=4, beam_width=2, max_tokens=10, max_step_tokens=3, temperature=1.0)
    engine = make_engine("torch", str(tiny_dir))
    one = search_all("beam", SearchContext(engine, task, prm), problems, params, batch=False)
    batched = search_all("beam", SearchContext(engine, task, prm), problems, params)
    assert same_but_scores(batched["records"], one["records"])  # texts, answers, step scores, compute
    assert [r["compute"]["generate_calls"] for r in batched["records"]] == \
        [r["compute"]["generate_calls"] for r in one["records"]]


class Failing(Scorer):
    """Scores steps 0.5, but fails on the prompt of one problem."""

    def __init__(self, bad_prompt: str):
        self.bad_prompt, self.usage = bad_prompt, ScorerUsage()

    def score_steps(self, prompts, steps):
        if self.bad_prompt in prompts:
            raise RuntimeError("PRM server refused the request: 503")
        return [[0.5] * len(s) for s in steps]


@pytest.mark.parametrize("strategy", ["best_of_n", "beam"])
def test_a_failing_scorer_raises_its_error_and_leaves_no_thread(tiny_dir, task, strategy):
    problems = task.problems("test", n=4, seed=2)
    scorer = Failing(task.prompt(problems[2]))
    engine = make_engine("torch", str(tiny_dir))
    params = SearchParams(n=2, beam_width=2, max_tokens=6, max_step_tokens=3)
    before = set(threading.enumerate())
    for batch in (False, True):
        with pytest.raises(RuntimeError, match="PRM server refused the request: 503"):
            search_all(strategy, SearchContext(engine, task, scorer), problems, params, batch=batch)
    # no thread of the search is left (a thread of an earlier test may end meanwhile)
    assert set(threading.enumerate()) <= before


def test_an_error_inside_one_problems_strategy_stops_the_batch(tiny_dir, task):
    problems = task.problems("test", n=3, seed=3)
    engine = make_engine("torch", str(tiny_dir))
    bad = task.prompt(problems[1])

    class NoScores(Scorer):
        """Returns None instead of the step scores of one problem: its strategy fails on them."""
        usage = ScorerUsage()

        def score_steps(self, prompts, steps):
            return [None if p == bad else [0.5] * len(s) for p, s in zip(prompts, steps)]

    params = SearchParams(n=2, max_tokens=6)
    before = set(threading.enumerate())
    for batch in (False, True):
        with pytest.raises(TypeError, match="'NoneType' object is not iterable"):
            search_all("best_of_n", SearchContext(engine, task, NoScores()), problems, params, batch=batch)
    assert set(threading.enumerate()) <= before


def test_a_prompt_seed_pair_samples_as_that_prompt_of_that_call(tiny_dir):
    engine = make_engine("torch", str(tiny_dir))
    params = SamplingParams(n=3, temperature=1.0, max_tokens=8, seed=11)
    a, b = engine.generate(["1+2", "3*4-5"], params)
    [alone_b] = engine.generate(["3*4-5"], params, seeds=[(11, 1)])
    [alone_a] = engine.generate(["1+2"], params, seeds=[11])  # an int s is the pair (s, 0)
    assert [s.token_ids for s in alone_b] == [s.token_ids for s in b]
    assert [s.token_ids for s in alone_a] == [s.token_ids for s in a]
    assert [s.token_ids for s in alone_b] != [s.token_ids for s in engine.generate(["3*4-5"], params)[0]]
