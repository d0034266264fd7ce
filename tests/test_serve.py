"""`ponder serve` as a real subprocess, spoken to over real HTTP.

One server (a tiny random char-level Llama with a toy chat template) starts once for the
module; each test checks one part of the API against ponder's in-process torch engine on
the same weights: greedy text and ids, seeded samples alone and batched, logprobs, stop
strings, the chat template, usage, errors, a weight update from disk, the `ponder` search
extension. The last test ends the server with SIGTERM and checks its exit code and log.

Threads: the server gets one torch thread (a tiny model gains nothing from two, and on a
shared 2-core machine two threads contend badly); the test process runs its own engine
with one thread, only while the server is idle.
"""
from __future__ import annotations

import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import served
import torch
from served import ponder_serve

from ponder.generation import Generator, Sample, SamplingParams, Usage, make_engine
from ponder.generation.base import prompt_seed
from ponder.models import build_char_tokenizer, build_tiny_model
from ponder.serve.batcher import Batcher, request_seeds

MAX_LEN = 128
KEY = "test-key"
ORIGIN = "http://ui.example"
CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")
PROMPTS = ["3+4*2\n", "Q: hi\nA:", "(1+2)*3"]


def save_tiny(path, seed):
    tokenizer = build_char_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    model = build_tiny_model(tokenizer, "1m", max_len=MAX_LEN, seed=seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """Two tiny models in the folder the server may load weights from (its
    --allow-weight-updates)."""
    root = tmp_path_factory.mktemp("serve")
    return save_tiny(root / "m0", 0), save_tiny(root / "m1", 1)


@pytest.fixture(scope="module")
def server(dirs, tmp_path_factory):
    """The base URL of a running `ponder serve` on a free loopback port, and its process."""
    log = tmp_path_factory.mktemp("serve-log") / "stderr.txt"
    with ponder_serve(dirs[0], log, "--served-model-name", "tiny", "--api-key", KEY, "--max-batch-wait-ms", "20",
                      "--allow-weight-updates", str(dirs[0].parent), "--allowed-origins", ORIGIN,
                      "--max-n", "8", "--max-request-tokens", "500", "--max-prompt-tokens", "100",
                      "--max-search-n", "16") as srv:
        assert srv["name"] == "tiny"
        status, models = call(srv["base"], "/v1/models", method="GET")
        assert status == 200
        yield srv


@pytest.fixture(scope="module")
def engine(dirs):
    torch.set_num_threads(1)
    return make_engine("torch", str(dirs[0]))


def call(base, path, body=None, method="POST", key=KEY, raw=None):
    """(status, JSON body) of one request; error statuses are returned, not raised."""
    status, out, _ = served.call(base, path, body, method, key, raw)
    return status, out


def ok(server, path, body=None, method="POST"):
    status, out = call(server["base"], path, body, method)
    assert status == 200, out
    return out


def ids_of(engine, text):
    """A completions text prompt's ids: tokenized as is, with the tokenizer's special tokens."""
    return engine.tokenizer(text, add_special_tokens=True)["input_ids"]


def chat_ids(engine, messages):
    text = engine.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return engine.tokenizer(text, add_special_tokens=False)["input_ids"]


# ----- the batcher, with a scripted engine -----


class Recorder(Generator):
    """Records each call's prompts, params and seeds; answers each prompt with its seed as
    text; fails a call that carries the prompt [666]."""

    def __init__(self):
        self.usage, self.calls = Usage(), []

    def generate(self, prompts, params, seeds=None):
        self.calls.append((list(prompts), params.max_tokens, list(seeds)))
        if [666] in prompts:
            raise RuntimeError("bad prompt")
        return [[Sample(str(s), [], None, "length", 0)] * params.n for s in seeds]


def test_batcher_groups_equal_params_and_isolates_failures():
    engine = Recorder()
    batcher = Batcher(engine, max_wait_s=0.2, max_rows=64)
    jobs = [([[1], [2]], 4, 9), ([[3]], 4, 5), ([[4]], 8, 5), ([[5]], 4, None), ([[666]], 4, 1)]
    barrier = threading.Barrier(len(jobs))

    def send(job):
        prompts, max_tokens, seed = job
        barrier.wait()
        try:
            return batcher.generate(prompts, SamplingParams(max_tokens=max_tokens),
                                    request_seeds(seed, len(prompts))).samples
        except RuntimeError as e:
            return str(e)

    with ThreadPoolExecutor(len(jobs)) as pool:
        results = list(pool.map(send, jobs))
    batcher.close()
    assert results[0] == [[Sample(str(prompt_seed(9, k)), [], None, "length", 0)] for k in range(2)]
    assert results[1][0][0].text == results[2][0][0].text == str(prompt_seed(5, 0))  # batched or not
    assert results[4] == "bad prompt" and isinstance(results[3][0][0].text, str)
    # One call per max_tokens; the failed one is retried request by request.
    first = [c for c in engine.calls if c[1] == 4][0]
    assert sorted(first[0]) == [[1], [2], [3], [5], [666]]
    retries = [c[0] for c in engine.calls if c[1] == 4][1:]
    assert sorted(retries) == [[[1], [2]], [[3]], [[5]], [[666]]]
    assert ([[4]], 8, [prompt_seed(5, 0)]) in engine.calls and len(engine.calls) == 6
    stats = batcher.stats()
    assert stats["generate_requests"] == stats["generate_calls"] == 4 and stats["max_requests_per_call"] == 1


# ----- the model, plain generation -----


def test_models_and_health(server):
    models = ok(server, "/v1/models", method="GET")
    assert models["object"] == "list"
    [m] = models["data"]
    assert (m["id"], m["object"], m["owned_by"], m["max_model_len"]) == ("tiny", "model", "ponder", MAX_LEN)
    assert call(server["base"], "/health", method="GET", key=None)[0] == 200  # no key needed


def test_greedy_completions_match_the_engine(server, engine):
    out = ok(server, "/v1/completions", {"model": "tiny", "prompt": PROMPTS, "temperature": 0, "max_tokens": 12,
                                         "return_token_ids": True})
    prompt_ids = [ids_of(engine, p) for p in PROMPTS]
    ref = engine.generate(prompt_ids, SamplingParams(temperature=0, max_tokens=12))
    assert out["object"] == "text_completion" and out["model"] == "tiny"
    assert [c["index"] for c in out["choices"]] == [0, 1, 2]
    for choice, ids, [sample] in zip(out["choices"], prompt_ids, ref):
        assert choice["text"] == sample.text and choice["token_ids"] == sample.token_ids
        assert choice["prompt_token_ids"] == ids
        assert (choice["finish_reason"], choice["stop_reason"], choice["logprobs"]) == ("length", None, None)
    usage = out["usage"]
    assert usage["prompt_tokens"] == sum(len(p) for p in prompt_ids)
    assert usage["completion_tokens"] == 3 * 12 and usage["total_tokens"] == usage["prompt_tokens"] + 36
    assert usage["prompt_tokens_details"]["cached_tokens"] >= 0


def test_token_id_prompts_continue_exactly(server, engine):
    prompt = ids_of(engine, PROMPTS[0])
    full = ok(server, "/v1/completions", {"prompt": prompt, "temperature": 0, "max_tokens": 10,
                                          "return_token_ids": True})["choices"][0]["token_ids"]
    # The prompt plus the first 4 generated ids, as a list of lists: the rest comes out unchanged.
    out = ok(server, "/v1/completions", {"prompt": [prompt + full[:4]], "temperature": 0, "max_tokens": 6,
                                         "return_token_ids": True})
    assert out["choices"][0]["token_ids"] == full[4:]
    assert out["usage"]["prompt_tokens"] == len(prompt) + 4


def test_n_samples_and_seeds_alone_or_batched(server, engine):
    prompt = ids_of(engine, PROMPTS[1])
    body = {"prompt": PROMPTS[1], "n": 3, "temperature": 1.0, "max_tokens": 8, "return_token_ids": True}
    out = ok(server, "/v1/completions", {**body, "seed": 7})
    ids = [c["token_ids"] for c in out["choices"]]
    assert [c["index"] for c in out["choices"]] == [0, 1, 2] and len({tuple(i) for i in ids}) > 1
    # The server seeds prompt k of a request seeded s with prompt_seed(s, k).
    [ref] = engine.generate([prompt], SamplingParams(n=3, temperature=1.0, max_tokens=8), seeds=[prompt_seed(7, 0)])
    assert ids == [s.token_ids for s in ref]
    assert out["usage"]["prompt_tokens"] == len(prompt)  # once for its 3 samples
    again = ok(server, "/v1/completions", {**body, "seed": 7})
    assert [c["token_ids"] for c in again["choices"]] == ids
    unseeded = [ok(server, "/v1/completions", body)["choices"][0]["token_ids"] for _ in range(2)]
    assert unseeded[0] != unseeded[1]

    # Six seeded requests alone, then all at once: same samples, fewer engine calls.
    seeds = list(range(6))
    alone = [ok(server, "/v1/completions", {**body, "seed": s})["choices"] for s in seeds]
    before = ok(server, "/ponder/stats", method="GET")
    barrier = threading.Barrier(len(seeds))

    def send(seed):
        barrier.wait()
        return ok(server, "/v1/completions", {**body, "seed": seed})["choices"]

    with ThreadPoolExecutor(len(seeds)) as pool:
        together = list(pool.map(send, seeds))
    after = ok(server, "/ponder/stats", method="GET")
    assert [[c["token_ids"] for c in r] for r in together] == [[c["token_ids"] for c in r] for r in alone]
    assert after["generate_requests"] - before["generate_requests"] == len(seeds)
    assert after["generate_calls"] - before["generate_calls"] < len(seeds)
    assert after["max_requests_per_call"] >= 2


def test_logprobs_and_echo_match_teacher_forcing(server, engine):
    prompt = ids_of(engine, PROMPTS[0])
    out = ok(server, "/v1/completions", {"prompt": PROMPTS[0], "temperature": 0.7, "seed": 1, "max_tokens": 8,
                                         "logprobs": 0, "return_token_ids": True})
    choice = out["choices"][0]
    lp = choice["logprobs"]
    [ref] = engine.logprobs([prompt], [choice["token_ids"]], temperature=0.7)
    assert lp["token_logprobs"] == pytest.approx(ref, abs=1e-4)
    assert lp["tokens"] == [engine.tokenizer.decode([t]) for t in choice["token_ids"]]
    assert [list(d) for d in lp["top_logprobs"]] == [[t] for t in lp["tokens"]]
    lengths = [len(t) for t in lp["tokens"]]
    assert lp["text_offset"] == [sum(lengths[:i]) for i in range(len(lengths))]

    # Scoring a prompt: echo, logprobs=0, max_tokens=1, at the default temperature 1.
    out = ok(server, "/v1/completions", {"prompt": PROMPTS[0], "echo": True, "logprobs": 0, "max_tokens": 1,
                                         "temperature": 0})
    choice = out["choices"][0]
    assert choice["text"].startswith(PROMPTS[0]) and len(choice["logprobs"]["tokens"]) == len(prompt) + 1
    lps = choice["logprobs"]["token_logprobs"]
    assert lps[0] is None
    [ref] = engine.logprobs([prompt[:1]], [prompt[1:]], temperature=0)  # the request's temperature
    assert lps[1 : len(prompt)] == pytest.approx(ref, abs=1e-4)
    out = ok(server, "/v1/completions", {"prompt": PROMPTS[0], "echo": True, "logprobs": 0, "max_tokens": 1})
    [ref] = engine.logprobs([prompt[:1]], [prompt[1:]], temperature=1.0)
    assert out["choices"][0]["logprobs"]["token_logprobs"][1 : len(prompt)] == pytest.approx(ref, abs=1e-4)


def test_stop_strings(server, engine):
    [[greedy]] = engine.generate([ids_of(engine, PROMPTS[2])], SamplingParams(temperature=0, max_tokens=16))
    stop = greedy.text[4:6]
    cut = greedy.text.find(stop)
    body = {"prompt": PROMPTS[2], "temperature": 0, "max_tokens": 16, "stop": stop}
    choice = ok(server, "/v1/completions", body)["choices"][0]
    assert (choice["text"], choice["finish_reason"], choice["stop_reason"]) == (greedy.text[:cut], "stop", stop)
    choice = ok(server, "/v1/completions", {**body, "stop": ["@@@", stop], "include_stop_str_in_output": True})
    assert choice["choices"][0]["text"] == greedy.text[: cut + len(stop)]


def test_tokenize_and_detokenize_round_trip(server, engine):
    out = ok(server, "/tokenize", {"prompt": "3+4*2"})
    assert out["tokens"] == ids_of(engine, "3+4*2") and out["count"] == 5 and out["max_model_len"] == MAX_LEN
    assert ok(server, "/detokenize", {"tokens": out["tokens"]})["prompt"] == "3+4*2"
    messages = [{"role": "user", "content": "hi"}]
    out = ok(server, "/tokenize", {"messages": messages, "add_generation_prompt": True})
    assert out["tokens"] == chat_ids(engine, messages)
    assert ok(server, "/detokenize", {"tokens": out["tokens"]})["prompt"] == "<user>hi\n<assistant>"


def test_chat_applies_the_template(server, engine):
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2"}]
    out = ok(server, "/v1/chat/completions", {"messages": messages, "temperature": 0, "max_tokens": 10,
                                              "logprobs": True, "return_token_ids": True})
    ids = chat_ids(engine, messages)
    [[ref]] = engine.generate([ids], SamplingParams(temperature=0, max_tokens=10))
    choice = out["choices"][0]
    assert out["object"] == "chat.completion" and choice["message"] == {"role": "assistant", "content": ref.text}
    assert choice["prompt_token_ids"] == ids and choice["token_ids"] == ref.token_ids
    content = choice["logprobs"]["content"]
    [teacher] = engine.logprobs([ids], [ref.token_ids], temperature=0)
    assert [c["logprob"] for c in content] == pytest.approx(teacher, abs=1e-4)
    assert out["usage"]["prompt_tokens"] == len(ids) and out["usage"]["completion_tokens"] == 10


# ----- errors -----

ERRORS = [
    # (path, body, status, param, words in the message)
    ("/v1/completions", {"max_tokens": 4}, 400, "prompt", "'prompt' must be"),
    ("/v1/completions", {"prompt": "x", "n": 0}, 400, "n", "'n' must be an integer >= 1"),
    ("/v1/completions", {"prompt": "x", "n": "2"}, 400, "n", "'n' must be an integer"),
    ("/v1/completions", {"prompt": "x", "temperature": -0.5}, 400, "temperature", ">= 0"),
    ("/v1/completions", {"prompt": "x", "top_p": 0}, 400, "top_p", "(0, 1]"),
    ("/v1/completions", {"prompt": "x", "top_p": 1.5}, 400, "top_p", "(0, 1]"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 0}, 400, "max_tokens", ">= 1"),
    ("/v1/completions", {"prompt": "x" * 200}, 400, "prompt", "maximum context length is 128"),
    ("/v1/completions", {"prompt": "x", "max_tokens": 500}, 400, "max_tokens", "maximum context length is 128"),
    ("/v1/completions", {"prompt": [1, 2, 100000]}, 400, "prompt", "token ids"),
    ("/v1/completions", {"prompt": "x", "stream_options": {"include_usage": True}}, 400, "stream_options",
     "only allowed with stream=true"),
    ("/v1/completions", {"prompt": "x", "stream": True, "stream_options": {"include_usage": 1}}, 400,
     "stream_options", "true or false"),
    ("/v1/completions", {"prompt": "x", "stream": True, "temperature": -1}, 400, "temperature", ">= 0"),
    ("/v1/completions", {"prompt": "x", "logprobs": 5}, 400, "logprobs", "logprobs=0"),
    ("/v1/completions", {"prompt": "x", "stop": 3}, 400, "stop", "'stop' must be"),
    ("/v1/completions", {"prompt": "x", "presence_penalty": 0.5}, 400, "presence_penalty", "not supported"),
    ("/v1/chat/completions", {"messages": "hi"}, 400, "messages", "non-empty list"),
    ("/v1/chat/completions", {"messages": [{"role": "user"}]}, 400, "messages", "content must be a string"),
    ("/tokenize", {}, 400, "prompt", "'prompt'"),
    ("/detokenize", {"tokens": ["a"]}, 400, "tokens", "token ids"),
    ("/v1/completions", {"model": "gpt-4", "prompt": "x"}, 404, "model", "This server serves `tiny`"),
    ("/update_weights_from_disk", {"model_path": "/no/such/dir"}, 400, "model_path", "not a folder inside"),
    # the server's own bounds, each with its flag
    ("/v1/completions", {"prompt": "x" * 110}, 400, "prompt", "(--max-prompt-tokens)"),
    ("/v1/completions", {"prompt": "x", "n": 9}, 400, "n", "at most 8 per request (--max-n)"),
    ("/v1/completions", {"prompt": ["x"] * 5, "n": 2}, 400, "n", "10 samples"),
    ("/v1/completions", {"prompt": "x", "n": 8, "max_tokens": 100}, 400, "max_tokens", "(--max-request-tokens)"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}], "n": 5}, 400, "max_tokens",
     "(--max-request-tokens)"),
]


@pytest.mark.parametrize("path,body,status,param,words", ERRORS, ids=[f"{e[0]}:{e[3]}:{i}" for i, e in
                                                                         enumerate(ERRORS)])
def test_bad_requests_name_the_field(server, path, body, status, param, words):
    got, out = call(server["base"], path, body)
    assert got == status, out
    err = out["error"]
    assert err["param"] == param and words in err["message"], err
    assert err["type"] == "invalid_request_error"
    if status == 404:
        assert err["code"] == "model_not_found"


def test_protocol_errors(server):
    base = server["base"]
    status, out = call(base, "/v1/completions", raw=b"{not json")
    assert status == 400 and "not valid JSON" in out["error"]["message"]
    status, out = call(base, "/v1/completions", raw=b"[1, 2]")
    assert status == 400 and "JSON object" in out["error"]["message"]
    status, out = call(base, "/v1/nothing", {})
    assert status == 404 and out["error"]["code"] == "not_found" and "/v1/completions" in out["error"]["message"]
    status, out = call(base, "/v1/completions", method="GET")
    assert status == 405 and "use POST" in out["error"]["message"]
    for key in (None, "wrong"):
        status, out = call(base, "/v1/completions", {"prompt": "x"}, key=key)
        assert status == 401 and "Authorization: Bearer" in out["error"]["message"]


# ----- weights, search, the command line -----


def test_update_weights_from_disk(server, engine, dirs):
    body = {"prompt": PROMPTS, "temperature": 0, "max_tokens": 8}
    before = [c["text"] for c in ok(server, "/v1/completions", body)["choices"]]
    out = ok(server, "/update_weights_from_disk", {"model_path": str(dirs[1])})
    assert out["success"] is True
    after = [c["text"] for c in ok(server, "/v1/completions", body)["choices"]]
    prompts = [ids_of(engine, p) for p in PROMPTS]
    other = make_engine("torch", str(dirs[1]))
    assert after == [s.text for [s] in other.generate(prompts, SamplingParams(temperature=0, max_tokens=8))]
    assert after != before
    ok(server, "/update_weights_from_disk", {"model_path": str(dirs[0])})  # back, for the other tests
    assert [c["text"] for c in ok(server, "/v1/completions", body)["choices"]] == before


def test_weights_load_only_from_inside_the_allowed_folder(server, dirs, tmp_path):
    """Folders outside --allow-weight-updates get one answer whether they exist or not, and
    name no server path; an index naming a shard out of its folder (`..`, an absolute path, a
    link) is refused before any file is read; the served weights stay as they were."""
    import json
    import os

    body = {"prompt": PROMPTS, "temperature": 0, "max_tokens": 8}
    before = [c["text"] for c in ok(server, "/v1/completions", body)["choices"]]
    root = dirs[0].parent
    answers = set()
    for outside in (str(tmp_path), str(tmp_path / "missing"), "../" * 8 + "etc", "/etc"):
        status, out = call(server["base"], "/update_weights_from_disk", {"model_path": outside})
        assert status == 400 and out["error"]["param"] == "model_path"
        assert str(root) not in out["error"]["message"]
        answers.add(out["error"]["message"].replace(repr(outside), "X"))
    assert len(answers) == 1  # no way to tell which of them exist
    for i, shard in enumerate(["../../../etc/passwd", "/etc/passwd", "link/passwd"]):
        evil = root / f"evil{i}"
        evil.mkdir()
        (evil / "link").symlink_to("/etc")
        (evil / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": shard}}))
        status, out = call(server["base"], "/update_weights_from_disk", {"model_path": str(evil)})
        assert status == 400 and "not a file inside the folder" in out["error"]["message"], out
        status, out = call(server["base"], "/update_weights_from_disk", {"model_path": f"evil{i}"})  # relative
        assert status == 400 and "not a file inside the folder" in out["error"]["message"], out
    link = root / "out"
    link.symlink_to(tmp_path)  # a folder link out of the allowed folder
    status, out = call(server["base"], "/update_weights_from_disk", {"model_path": "out"})
    assert status == 400 and "not a folder inside" in out["error"]["message"]
    assert [c["text"] for c in ok(server, "/v1/completions", body)["choices"]] == before
    assert os.path.isdir(root / "m1")


def test_cors_for_the_allowed_origin_only(server):
    base = server["base"]
    status, out, headers = served.call(base, "/v1/completions", method="OPTIONS", key=None,
                                       headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert status == 204 and headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    status, out, headers = served.call(base, "/v1/completions", {"prompt": "3+", "max_tokens": 2}, key=KEY,
                                       headers={"Origin": ORIGIN})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == ORIGIN
    status, out, headers = served.call(base, "/v1/completions", {"prompt": "3+", "max_tokens": 2}, key=KEY,
                                       headers={"Origin": "http://other.example"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    # the key still holds for an allowed origin
    status, out, _ = served.call(base, "/v1/completions", {"prompt": "3+"}, key=None, headers={"Origin": ORIGIN})
    assert status == 401


def test_ponder_extension_searches(server, engine):
    messages = [{"role": "user", "content": "3+4*2\n"}]
    out = ok(server, "/v1/chat/completions", {"messages": messages, "max_tokens": 24, "seed": 0,
                                              "ponder": {"strategy": "majority", "n": 4}})
    info, usage = out["ponder"], out["usage"]
    assert info["strategy"] == "majority" and info["candidates"] == 4 and len(info["scores"]) == 4
    content = out["choices"][0]["message"]["content"]
    from ponder.tasks import get_task

    assert get_task("arith").extract_answer(content) == info["answer"]
    assert usage["prompt_tokens"] == len(chat_ids(engine, messages))  # one prompt, prefilled once for 4 samples
    assert 0 < usage["completion_tokens"] <= 4 * 24 and usage["scorer_tokens"] == 0

    # Step-level beam search with the task's exact step checker, from a completions text.
    ext = {"strategy": "beam", "n": 4, "beam_width": 2, "scorer": "verifier", "answer": "11",
           "max_step_tokens": 8, "max_steps": 3, "seed": 0}
    out = ok(server, "/v1/completions", {"prompt": "3+4*2\n", "max_tokens": 24, "ponder": ext})
    info = out["ponder"]
    assert info["strategy"] == "beam" and info["candidates"] >= 1
    assert all(0.0 <= s <= 1.0 for s in info["scores"]) and info["generate_calls"] >= 1
    assert out["usage"]["completion_tokens"] > 0 and isinstance(out["choices"][0]["text"], str)

    # Beam search guided by the served model's own rollouts: their tokens are scorer tokens.
    ext = {"strategy": "beam", "n": 4, "beam_width": 2, "scorer": "rollout:k=2", "answer": "11",
           "max_step_tokens": 8, "max_steps": 3, "seed": 0}
    out = ok(server, "/v1/completions", {"prompt": "3+4*2\n", "max_tokens": 24, "ponder": ext})
    assert out["usage"]["scorer_tokens"] > 0 and out["usage"]["completion_tokens"] > 0
    assert all(0.0 <= s <= 1.0 for s in out["ponder"]["scores"])

    for ext, param, words in [
        ({"strategy": "beam", "scorer": "rollout:k=99", "answer": "1"}, "ponder.scorer", "--max-n"),
        ({"strategy": "beam", "scorer": "rollout:depth=2", "answer": "1"}, "ponder.scorer", "names among k"),
        ({"strategy": "beam", "scorer": "rollout"}, "ponder.answer", "gold answer"),
        # the rollouts spend the request's token budget with the search
        ({"strategy": "beam", "n": 16, "beam_width": 4, "scorer": "rollout:k=8", "answer": "11", "max_tokens": 24,
          "seed": 0}, "ponder", "(--max-request-tokens 500)"),
        ({"strategy": "beam", "n": 4, "beam_width": 2}, "ponder", "needs a scorer"),
        ({"strategy": "beam", "scorer": "verifier"}, "ponder.answer", "gold answer"),
        ({"strategy": "nope"}, "ponder.strategy", "unknown search strategy"),
        ({"strategy": "majority", "n": "4"}, "ponder.n", "type int"),
        ({"strategy": "majority", "bogus": 1}, "ponder", "unknown field(s) bogus"),
        # the task and the PRM are fixed when the server starts: no request names a file here
        ({"strategy": "majority", "task": "/etc/passwd.jsonl"}, "ponder.task", "fixed when it starts"),
        ({"strategy": "majority", "task": "countdown"}, "ponder.task", "task 'arith'"),
        ({"strategy": "majority", "task_args": {"path": "/etc"}}, "ponder.task", "cannot change it"),
        ({"strategy": "best_of_n", "scorer": "/tmp"}, "ponder.scorer", "'none', 'verifier', 'prm'"),
        ({"strategy": "best_of_n", "scorer": "prm"}, "ponder.scorer", "has no PRM"),
        # the search budget
        ({"strategy": "majority", "n": 17}, "ponder.n", "(--max-search-n)"),
        ({"strategy": "beam", "n": 16, "beam_width": 32, "scorer": "verifier", "answer": "1"}, "ponder.beam_width",
         "(--max-search-n)"),
        ({"strategy": "majority", "n": 16, "max_tokens": 100}, "ponder.n", "(--max-request-tokens)"),
    ]:
        status, err = call(server["base"], "/v1/chat/completions", {"messages": messages, "ponder": ext})
        assert status == 400 and err["error"]["param"] == param and words in err["error"]["message"], err


def test_bad_model_fails_clearly(tmp_path):
    from typer.testing import CliRunner

    from ponder.cli import app

    res = CliRunner().invoke(app, ["serve", "--model", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "not found" in res.output and "Traceback" not in res.output


def test_sigterm_ends_the_server_cleanly(server):
    """Last: stops the module's server."""
    proc = server["proc"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    log = server["log"].read_text()
    assert "POST /v1/completions 200" in log and "POST /v1/completions 400" in log
    assert "GET /v1/models 200" in log and "Traceback" not in log
