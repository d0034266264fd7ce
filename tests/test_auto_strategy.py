"""Strategy 'auto': the policy's pure functions on hand-built scale records (bins fit on the
probe's predicted difficulty, the choice within a budget, refusals), and one real `ponder
serve --auto-policy` subprocess answering `"strategy": "auto"` requests."""
from __future__ import annotations

import json

import pytest
import served
import yaml
from served import ponder_serve

from ponder.commands.serve import Config, search_setup
from ponder.config import ConfigError
from ponder.search.auto import (
    Setting,
    assign_bin,
    best_fixed,
    bin_edges,
    build_policy,
    choose,
    load_policy,
)
from ponder.search.compute_optimal import difficulty_bins
from ponder.serve import auto as serve_auto
from ponder.serve.protocol import APIError


def rec(strategy, budget, problem, correct, tokens, mean_score=None):
    return {"strategy": strategy, "budget": budget, "problem": problem, "correct": correct, "generated_tokens": tokens,
            "prefill_tokens": 3, "scorer_tokens": 0, "mean_score": mean_score}


EASY, HARD = ["e0", "e1", "e2", "e3"], ["h0", "h1", "h2", "h3"]


def scale_records():
    """Easy problems (all 2 probe samples agree): greedy is as right as majority, for a
    quarter of the tokens. Hard ones (they disagree): only majority@4 gets them all."""
    records = []
    for p in EASY:
        records += [rec("difficulty", 2, p, True, 16, mean_score=1.0), rec("greedy", 1, p, True, 8),
                    rec("majority", 2, p, True, 16), rec("majority", 4, p, True, 32)]
    for i, p in enumerate(HARD):
        records += [rec("difficulty", 2, p, False, 16, mean_score=0.5 if i % 2 else 0.0), rec("greedy", 1, p, False, 8),
                    rec("majority", 2, p, i < 3, 16), rec("majority", 4, p, True, 32)]
    return records


CONFIG = {"task": "arith", "task_args": {}, "scorer": "none", "difficulty": "pass_rate", "bins": 2, "compute": "generated",
          "temperature": 1.0, "max_tokens": 8, "beam_width": 4, "strategies": ["greedy", "majority"]}


def test_bin_edges_put_each_fitting_value_back_in_its_bin():
    values = {"a": 1.0, "b": 1.0, "c": 0.625, "d": 0.375, "e": 0.25, "f": 0.25, "g": 0.0}
    edges, labels = bin_edges(values, 3)
    bins = difficulty_bins(values, 3)
    assert edges == sorted(edges, reverse=True) and labels == sorted(set(bins.values()))
    assert {p: assign_bin(v, edges, labels) for p, v in values.items()} == bins
    assert assign_bin(2.0, edges, labels) == 0 and assign_bin(-1.0, edges, labels) == labels[-1]
    # One tie, one bin, no edge: every value lands there.
    assert bin_edges({"a": 0.5, "b": 0.5}, 3) == ([], [0]) and assign_bin(0.9, [], [0]) == 0


def test_choose_the_most_accurate_setting_that_fits():
    settings = [Setting("greedy", 1, 0.5, 8, 4), Setting("majority", 2, 0.75, 16, 4), Setting("majority", 4, 0.75, 32, 4)]
    assert choose(settings, 100) == settings[1]  # equal accuracy: fewer tokens
    assert choose(settings, 15.9) == settings[0]
    assert choose(settings, 7) is None


def test_policy_bins_by_predicted_difficulty_and_chooses_per_bin():
    policy = build_policy({"records": scale_records(), "compute": "generated"}, CONFIG, "run")
    assert policy.predictor == "agreement" and policy.probe_n == 2 and policy.probe_tokens == 16
    assert policy.labels == [0, 1] and policy.edges == [0.75]  # between the easy 1.0 and the hard 0.5
    assert policy.bin_of(1.0) == 0 and policy.bin_of(0.5) == policy.bin_of(0.0) == 1
    easy, hard = policy.settings[0], policy.settings[1]
    assert {(s.strategy, s.n): s.accuracy for s in hard} == {("greedy", 1): 0.0, ("majority", 2): 0.75,
                                                              ("majority", 4): 1.0}
    assert (policy.choose(0, 100).strategy, policy.choose(0, 100).n) == ("greedy", 1)
    assert (policy.choose(1, 100).strategy, policy.choose(1, 100).n) == ("majority", 4)
    assert (policy.choose(1, 20).strategy, policy.choose(1, 20).n) == ("majority", 2)
    assert policy.choose(1, 7) is None and policy.cheapest(1).tokens == 8 and easy[0].problems == 4
    assert policy.min_budget() == 16 + 8  # the probe, then the dearest bin's cheapest setting
    # The fixed strategy a user would take at 40 tokens: majority@4 on every problem.
    assert best_fixed(scale_records(), 40) == Setting("majority", 4, 1.0, 32, 8)
    assert best_fixed(scale_records(), 20) == Setting("majority", 2, 7 / 8, 16, 8)
    assert best_fixed(scale_records(), 5) is None
    # 'total' counts prefill and scorer tokens too (3 prefill per record here).
    total = build_policy({"records": scale_records(), "compute": "total"}, CONFIG, "run")
    assert total.probe_tokens == 19 and total.cheapest(1).tokens == 11


def test_policy_refuses_what_serving_cannot_reproduce():
    records = scale_records() + [rec("best_of_n", 2, p, True, 16) for p in EASY + HARD]
    # Scored by the verifier: needs gold answers, left out.
    policy = build_policy({"records": records}, {**CONFIG, "scorer": "verifier"}, "run")
    assert all(s.strategy != "best_of_n" for ss in policy.settings.values() for s in ss)
    assert policy.dropped == ["best_of_n@2: scored by 'verifier', which needs each problem's gold answer"]
    assert not policy.needs_prm
    with pytest.raises(ValueError, match="pass rate and needs the gold answer"):
        build_policy({"records": records}, {**CONFIG, "scorer": "verifier", "difficulty": "score"}, "run")
    with pytest.raises(ValueError, match="start the server with that PRM"):
        build_policy({"records": records}, {**CONFIG, "scorer": "runs/prm", "difficulty": "score"}, "run")
    with_prm = build_policy({"records": records}, {**CONFIG, "scorer": "runs/prm", "difficulty": "score"}, "run",
                            prm=True)
    assert with_prm.predictor == "prm" and with_prm.needs_prm and not with_prm.dropped
    capped = build_policy({"records": records}, {**CONFIG, "scorer": "runs/prm"}, "run", prm=True, max_n=2)
    assert capped.dropped == ["majority@4: N above the server's 2 (--max-search-n)"]
    with pytest.raises(ValueError, match="no difficulty probe"):
        build_policy({"records": [r for r in records if r["strategy"] != "difficulty"]}, CONFIG, "run")


def test_auto_requests_are_checked_before_any_work():
    policy = build_policy({"records": scale_records()}, CONFIG, "run")

    def refused(ext, policy=policy, room=100):
        with pytest.raises(APIError) as e:
            serve_auto.parse({"strategy": "auto", **ext}, {}, room, policy)
        assert e.value.status == 400
        return e.value.param, e.value.message

    assert refused({"budget": 50}, policy=None)[0] == "ponder.strategy"
    assert "--auto-policy" in refused({"budget": 50}, policy=None)[1]
    assert refused({})[0] == "ponder.budget"
    assert refused({"budget": "lots"})[0] == "ponder.budget"
    param, message = refused({"budget": 20})
    assert param == "ponder.budget" and "cheapest this server's policy can do is 24" in message
    assert refused({"budget": 50, "n": 4})[0] == "ponder.n"
    assert refused({"budget": 50, "scorer": "prm"})[0] == "ponder.scorer"
    assert refused({"budget": 50}, room=4)[0] == "prompt"
    budget, cfg = serve_auto.parse({"strategy": "auto", "budget": 50, "seed": 7}, {"temperature": 0.1}, 100, policy)
    assert budget == 50 and cfg.seed == 7 and cfg.temperature == 1.0 and cfg.max_tokens == 8


def write_run(path, records, config):
    path.mkdir()
    (path / "scale.json").write_text(json.dumps({"records": records, "compute": config["compute"]}))
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    return path


def test_serve_refuses_a_policy_of_another_task(tmp_path, tiny_dir):
    run = write_run(tmp_path / "run", scale_records(), CONFIG)
    assert search_setup(Config(model=str(tiny_dir), task="arith", auto_policy=str(run))).policy.labels == [0, 1]
    with pytest.raises(ConfigError, match="the run searched task 'arith'"):
        search_setup(Config(model=str(tiny_dir), task="countdown", auto_policy=str(run)))
    with pytest.raises(ConfigError, match="does not exist"):
        search_setup(Config(model=str(tiny_dir), task="arith", auto_policy=str(tmp_path / "nowhere")))


def test_served_auto_reports_its_choice_and_compute(tmp_path, tiny_dir):
    run = write_run(tmp_path / "run", scale_records(), CONFIG)
    policy = load_policy(run / "scale.json")
    with ponder_serve(tiny_dir, tmp_path / "log.txt", "--task", "arith", "--auto-policy", str(run),
                      "--max-batch-wait-ms", "1") as srv:
        assert "strategy 'auto': " in open(srv["log"]).read()
        for budget in (25, 60):
            status, out, _ = served.call(srv["base"], "/v1/completions", {
                "model": srv["name"], "prompt": "3+4*2\n", "ponder": {"strategy": "auto", "budget": budget, "seed": 1}})
            assert status == 200, out
            auto, usage = out["ponder"]["auto"], out["usage"]
            probe, search = auto["probe"], auto["search"]
            assert auto["budget"] == budget and auto["compute"] == "generated" and auto["predictor"] == "agreement"
            assert auto["bin"] == policy.bin_of(auto["predicted_difficulty"]) and probe["n"] == 2
            expected = policy.choose(auto["bin"], budget - probe["tokens"]) or policy.cheapest(auto["bin"])
            assert (auto["strategy"], auto["n"]) == (expected.strategy, expected.n)
            assert auto["fits"] == (policy.choose(auto["bin"], budget - probe["tokens"]) is not None)
            assert out["ponder"]["strategy"] == expected.strategy and out["ponder"]["candidates"] == expected.n
            # usage is the probe's compute plus the search's
            assert usage["completion_tokens"] == probe["generated_tokens"] + search["generated_tokens"] == auto["tokens"]
            assert usage["prompt_tokens"] == probe["prefill_tokens"] + search["prefill_tokens"]
            assert 0 < probe["generated_tokens"] <= 2 * 8 and auto["why"].startswith("predicted difficulty")
        status, out, _ = served.call(srv["base"], "/v1/completions", {
            "model": srv["name"], "prompt": "3+4*2\n", "ponder": {"strategy": "auto", "budget": 10}})
        assert status == 400 and out["error"]["param"] == "ponder.budget", out


def test_a_prm_policy_probes_with_best_of_n_and_charges_the_scorer(tiny_dir):
    """The PRM branch in process: the probe is best_of_n scored by the context's scorer (here
    the task's verifier, a real scorer, standing where the server's PRM goes), whose tokens
    the 'total' budget counts (the verifier reads none: its checks are exact)."""
    from ponder.generation import make_engine
    from ponder.rewards.base import VerifierScorer
    from ponder.search import SearchContext
    from ponder.search.auto import auto_search
    from ponder.tasks import get_task

    records = scale_records() + [rec("best_of_n", 2, p, True, 16) for p in EASY + HARD]
    policy = build_policy({"records": records, "compute": "total"},
                          {**CONFIG, "scorer": "runs/prm", "difficulty": "score"}, "run", prm=True)
    task = get_task("arith")
    problem = task.problems("test", n=1, seed=0)[0]
    with make_engine("torch", str(tiny_dir)) as engine:
        result = auto_search(SearchContext(engine, task, VerifierScorer(task, [problem])), problem, policy, 200, seed=3)
    auto = result.auto
    assert auto["predictor"] == "prm" and auto["probe"]["strategy"] == "best_of_n" and auto["probe"]["n"] == 2
    assert result.compute.scorer_calls >= 1 and auto["probe"]["tokens"] == (
        auto["probe"]["generated_tokens"] + auto["probe"]["prefill_tokens"] + auto["probe"]["scorer_tokens"])
    assert auto["predicted_difficulty"] == 0.0 and auto["bin"] == 1  # a random model answers nothing right
    chosen = policy.choose(1, 200 - auto["probe"]["tokens"])
    assert (auto["strategy"], auto["n"]) == (chosen.strategy, chosen.n)
    assert result.compute.scorer_tokens == auto["probe"]["scorer_tokens"] + auto["search"]["scorer_tokens"]
