"""A PRM served over HTTP (ponder.serve.scoring) and scored from another process
(ponder.rewards.remote.HTTPScorer), against real `ponder serve` subprocesses on loopback ports.

The policy is a random tiny character-level Llama and the PRMs random heads on tiny models:
their outputs mean nothing, but every sample, step score and token count is a deterministic
function of the inputs, which is what moving the PRM to another process must not change."""
from __future__ import annotations

import json
import socket

import pytest
import torch

from typer.testing import CliRunner

import served
from served import ponder_serve
from ponder.cli import app
from ponder.generation import EngineError, make_engine
from ponder.rewards.model import load_prm, new_reward_model
from ponder.rewards.remote import HTTPScorer
from ponder.search import SearchContext, SearchParams
from ponder.search.driver import search_all
from ponder.search.scorers import load_scorer
from ponder.tasks import get_task

KEY = "scorer-secret"


@pytest.fixture(scope="module")
def task():
    return get_task("arith", instruction=False)


@pytest.fixture(scope="module")
def prm_dir(tiny_dir, tmp_path_factory):
    """ponder's PRM format: the tiny model's backbone with a random head (at zero every step would score 0.5)."""
    rm = new_reward_model(str(tiny_dir), "prm")
    torch.manual_seed(1)
    torch.nn.init.normal_(rm.head.weight, std=0.5)
    out = tmp_path_factory.mktemp("prm")
    rm.save(out)
    return out


@pytest.fixture(scope="module")
def shepherd_dir(tmp_path_factory):
    """A tiny Math-Shepherd-format PRM (a causal LM whose tokenizer has the step tag `ки`),
    its final norm scaled so that its scores spread away from 0.5."""
    from ponder.models import build_char_tokenizer, build_tiny_model

    out = tmp_path_factory.mktemp("shepherd")
    tok = build_char_tokenizer()
    tok.add_tokens(["ки"])
    model = build_tiny_model(tok, "1m", seed=0).eval()
    with torch.no_grad():
        model.model.norm.weight.mul_(8.0)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def servers(tiny_dir, prm_dir, shepherd_dir, tmp_path_factory):
    """{"policy": the policy alone, "prm": a server with ponder's PRM (and a key), "shepherd":
    one with the Math-Shepherd PRM}: base URLs of three real `ponder serve` processes."""
    torch.set_num_threads(1)  # the servers have the cores while the test waits on them
    logs = tmp_path_factory.mktemp("logs")
    with ponder_serve(tiny_dir, logs / "policy.log", "--served-model-name", "tiny-policy") as policy, \
            ponder_serve(tiny_dir, logs / "prm.log", "--served-model-name", "other", "--scorer", str(prm_dir),
                         "--api-key", KEY, "--max-n", "64") as prm, \
            ponder_serve(tiny_dir, logs / "shepherd.log", "--scorer", str(shepherd_dir)) as shepherd:
        yield {"policy": policy["base"], "prm": prm["base"], "shepherd": shepherd["base"]}


def close(a: list[list[float]], b: list[list[float]]) -> bool:
    """Step scores equal to 1e-5, row by row."""
    return [len(r) for r in a] == [len(r) for r in b] and all(
        x == pytest.approx(y, abs=1e-5) for x, y in zip(a, b))


def solutions(task):
    """(prompts, steps) of different lengths: reference solutions and a wrong one."""
    problems = task.problems("test", n=3, seed=0)
    prompts = [task.prompt(p) for p in problems] + [task.prompt(problems[0])]
    steps = [list(p.meta["steps"]) for p in problems] + [["8+31", "39", "Answer: 39"]]
    return prompts, steps


def same_records(remote: dict, local: dict) -> None:
    """Answers, candidates (texts, answers, scores and step scores to 1e-5) and compute equal."""
    assert remote["summary"]["scorer_tokens"] == local["summary"]["scorer_tokens"] > 0
    for r, l in zip(remote["records"], local["records"], strict=True):
        assert (r["answer"], r["correct"], r["text"]) == (l["answer"], l["correct"], l["text"])
        assert len(r["candidates"]) == len(l["candidates"]) > 0
        for rc, lc in zip(r["candidates"], l["candidates"]):
            assert (rc["text"], rc["answer"]) == (lc["text"], lc["answer"])
            assert rc["step_scores"] == pytest.approx(lc["step_scores"], abs=1e-5)
            assert rc["score"] == pytest.approx(lc["score"], abs=1e-5)
        for key in ("scorer_tokens", "scorer_calls", "generated_tokens", "prefill_tokens"):
            assert r["compute"][key] == l["compute"][key], key


def test_beam_search_with_policy_and_prm_on_two_servers_equals_in_process(servers, tiny_dir, prm_dir, task,
                                                                          monkeypatch):
    """The policy on one `ponder serve`, the PRM on another: the same answers, candidates,
    step scores and scorer tokens as with the PRM in this process. Sampled (T=1), the policy
    is the served one in both runs (the HTTP engine's seeded samples are the server's own, not
    the in-process engine's); greedy, both runs are compared with a search wholly in process."""
    problems = task.problems("test", n=4, seed=0)
    hot = SearchParams(n=4, beam_width=2, max_tokens=12, max_step_tokens=4, temperature=1.0)
    greedy = SearchParams(n=2, beam_width=1, max_tokens=12, max_step_tokens=4, temperature=0.0)
    here = load_prm(prm_dir)
    monkeypatch.setenv("PONDER_SCORER_API_KEY", KEY)
    there = load_scorer(servers["prm"] + "/v1", task, problems)  # the URL branch
    assert isinstance(there, HTTPScorer) and there.route == "score_steps"
    _, before, _ = served.call(servers["prm"], "/ponder/stats", method="GET", key=KEY)
    with make_engine(servers["policy"] + "/v1", "tiny-policy") as policy:
        remote = search_all("beam", SearchContext(policy, task, there), problems, hot)
        local = search_all("beam", SearchContext(policy, task, here), problems, hot)
        remote_greedy = search_all("beam", SearchContext(policy, task, there), problems, greedy)
    _, after, _ = served.call(servers["prm"], "/ponder/stats", method="GET", key=KEY)
    same_records(remote, local)
    same_records(remote_greedy, search_all("beam", SearchContext(make_engine("torch", str(tiny_dir)), task, here),
                                           problems, greedy))
    scores = [s for r in local["records"] for c in r["candidates"] for s in c["step_scores"]]
    assert max(scores) - min(scores) > 0.05  # scores that tell steps apart, so equality means something
    # Every scoring call ran as a job on the scoring server's engine thread.
    assert after["other_calls"] - before["other_calls"] == there.usage.calls > 0


def test_scores_over_http_equal_in_process(servers, prm_dir, shepherd_dir, task):
    prompts, steps = solutions(task)
    completions = ["\n".join(s) for s in steps]
    here = load_prm(prm_dir)
    there = HTTPScorer(servers["prm"] + "/v1", api_key=KEY)
    assert (there.format, there.aggregation, there.delimiter) == ("ponder", here.aggregation, "\n")
    want = here.score_steps(prompts, steps)
    assert close(there.score_steps(prompts, steps), want)
    assert there.usage.tokens == here.usage.tokens > 0 and there.usage.calls == 1
    assert there.row_tokens == [len(here.encode(p, s)[0]) for p, s in zip(prompts, steps)]
    assert there.score_outcomes(prompts, completions) == pytest.approx(here.score_outcomes(prompts, completions),
                                                                       abs=1e-5)

    # A published PRM, through ponder's exact route and through vLLM's pooling API.
    shepherd = load_scorer(str(shepherd_dir), task, [])
    want = shepherd.score_steps(prompts, steps)
    assert max(s for row in want for s in row) - min(s for row in want for s in row) > 0.05
    for route in ("auto", "pooling"):
        remote = HTTPScorer(servers["shepherd"], route=route)
        assert remote.format == "math_shepherd" and remote.route == ("score_steps" if route == "auto" else route)
        assert close(remote.score_steps(prompts, steps), want), route
        assert remote.usage.tokens == sum(len(shepherd.encode(p, s)[0]) for p, s in zip(prompts, steps))
        assert remote.score_outcomes(prompts, completions) == pytest.approx(
            shepherd.score_outcomes(prompts, completions), abs=1e-5), route


def test_pooling_answers_in_vllms_shape(servers, shepherd_dir, prm_dir, task):
    """`/pooling` as vLLM answers it for a PRM: a row per input token, [P(+), P(-)] for a
    Math-Shepherd PRM, `usage.prompt_tokens` the tokens read; `/tokenize` with the PRM's
    name tokenises with the PRM's tokenizer."""
    base = servers["shepherd"]
    status, info, _ = served.call(base, "/ponder/scorer", method="GET")
    assert status == 200 and info["format"] == "math_shepherd" and info["kind"] == "prm"
    shepherd = load_scorer(str(shepherd_dir), task, [])
    ids, positions = shepherd.encode("3+4", ["3+4", "7"])
    status, tok, _ = served.call(base, "/tokenize", {"model": info["model"], "prompt": "3+4 3+4 ки\n7 ки"})
    assert status == 200 and tok["tokens"] == ids
    status, out, _ = served.call(base, "/pooling", {"model": info["model"], "input": [ids, "3+4 3+4 ки"]})
    assert status == 200, out
    assert out["object"] == "list" and out["id"].startswith("pool-") and out["model"] == info["model"]
    assert [d["index"] for d in out["data"]] == [0, 1] and {d["object"] for d in out["data"]} == {"pooling"}
    rows = out["data"][0]["data"]
    assert len(rows) == len(ids) and all(len(r) == 2 and abs(sum(r) - 1) < 1e-6 for r in rows)
    assert [rows[i][0] for i in positions] == pytest.approx(shepherd.score_steps(["3+4"], [["3+4", "7"]])[0],
                                                            abs=1e-5)
    assert out["usage"]["prompt_tokens"] == len(ids) + len(out["data"][1]["data"])

    # ponder's PRM: one column, P(correct), which at each step's separator is its step score.
    here = load_prm(prm_dir)
    ids, positions = here.encode("3+4", ["3+4", "7"])
    status, out, _ = served.call(servers["prm"], "/pooling", {"input": ids}, key=KEY)
    rows = out["data"][0]["data"]
    assert status == 200 and len(rows) == len(ids) and {len(r) for r in rows} == {1}
    assert [rows[i][0] for i in positions] == pytest.approx(here.score_steps(["3+4"], [["3+4", "7"]])[0], abs=1e-5)


def test_scoring_requests_are_bounded_and_checked(servers):
    base = servers["prm"]
    too_many = {"prompts": ["1+1"] * 65, "steps": [["2"]] * 65}
    status, out, _ = served.call(base, "/v1/score_steps", too_many, key=KEY)
    assert status == 400 and "--max-n" in out["error"]["message"]
    status, out, _ = served.call(base, "/v1/score_steps", {"prompts": ["1+1"], "steps": [["2"]]})
    assert status == 401  # the server's key guards its PRM as it guards its policy
    status, out, _ = served.call(base, "/v1/score_steps", {"prompts": ["1+1"], "steps": "2"}, key=KEY)
    assert status == 400 and out["error"]["param"] == "steps"
    status, out, _ = served.call(base, "/v1/score_steps", {"prompts": ["1" * 5000], "steps": [["2"]]}, key=KEY)
    assert status == 400 and "context" in out["error"]["message"]
    status, out, _ = served.call(base, "/pooling", {"model": "nope", "input": "1"}, key=KEY)
    assert status == 404 and "nope" in out["error"]["message"]
    status, out, _ = served.call(servers["policy"], "/pooling", {"input": "1+1"})
    assert status == 404 and "--scorer" in out["error"]["message"]


def test_a_bad_scorer_url_fails_clearly(servers, task, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    with pytest.raises(EngineError, match=rf"scorer {down} is unreachable .*ponder serve --scorer"):
        HTTPScorer(down, retries=0)
    with pytest.raises(EngineError, match="is ponder serve without a PRM: start it with .*--scorer PRM_DIR"):
        HTTPScorer(servers["policy"])
    with pytest.raises(EngineError, match=r"refused the API key \(set \$PONDER_SCORER_API_KEY\) \(401\)"):
        HTTPScorer(servers["prm"], api_key="wrong")
    # From the command line: one line naming the URL, no traceback.
    monkeypatch.delenv("PONDER_SCORER_API_KEY", raising=False)
    res = CliRunner().invoke(app, ["search", "--engine", servers["policy"] + "/v1", "--model", "tiny-policy",
                                   "--task", "arith", "--task-arg", "instruction=false", "--scorer",
                                   servers["policy"] + "/v1", "--n-problems", "1"])
    assert res.exit_code == 2 and "without a PRM" in res.output and "Traceback" not in res.output, res.output


def test_the_search_extension_scores_with_a_remote_prm(servers, tiny_dir, tmp_path, monkeypatch):
    """`ponder serve --scorer URL`: a search request scored by the PRM of another server gets
    the answer, scores and scorer tokens of the same request on the server that holds it."""
    monkeypatch.setenv("PONDER_SCORER_API_KEY", KEY)  # the remote PRM's key, read by the new server
    ext = {"strategy": "beam", "n": 4, "beam_width": 2, "scorer": "prm", "max_step_tokens": 4, "max_steps": 3,
           "seed": 3}
    body = {"prompt": "3+4*2\n", "max_tokens": 12, "ponder": ext}
    status, want, _ = served.call(servers["prm"], "/v1/completions", body, key=KEY)
    assert status == 200, want
    with ponder_serve(tiny_dir, tmp_path / "relay.log", "--scorer", servers["prm"] + "/v1") as relay:
        status, got, _ = served.call(relay["base"], "/v1/completions", body)
        assert status == 200, open(relay["log"]).read()[-3000:]
        status, out, _ = served.call(relay["base"], "/v1/score_steps", {"prompts": ["1"], "steps": [["2"]]})
        assert status == 404 and "remote PRM" in out["error"]["message"]  # it does not relay
    assert got["choices"][0]["text"] == want["choices"][0]["text"]
    assert got["ponder"]["answers"] == want["ponder"]["answers"]
    assert got["ponder"]["scores"] == pytest.approx(want["ponder"]["scores"], abs=1e-5)
    assert got["usage"]["scorer_tokens"] == want["usage"]["scorer_tokens"] > 0


def test_eval_rm_takes_a_prm_server(servers, tiny_dir, prm_dir, tmp_path, monkeypatch):
    """`ponder eval-rm --rm URL` rates the served PRM as `--rm DIR` rates the same PRM here."""
    monkeypatch.setenv("PONDER_SCORER_API_KEY", KEY)
    url = servers["prm"] + "/v1"
    out = tmp_path / "eval-rm.json"
    res = CliRunner().invoke(app, ["eval-rm", "--rm", str(prm_dir), "--rm", url, "--policy", str(tiny_dir),
                                   "--task-arg", "instruction=false", "--n", "4", "--samples", "4", "--max-tokens",
                                   "10", "--output", str(out)])
    assert res.exit_code == 0, res.output
    models = json.loads(out.read_text())["models"]
    here, there = models[str(prm_dir)], models[url]
    assert there["kind"] == "prm" and there["aggregation"] == here["aggregation"]
    assert there["best_of_n"] == here["best_of_n"] and there["weighted_best_of_n"] == here["weighted_best_of_n"]
    assert there["processbench"]["f1"] == here["processbench"]["f1"]
