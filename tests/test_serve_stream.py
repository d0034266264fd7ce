"""Streaming from `ponder serve` (server-sent events), spoken to by the clients people use.

One real `ponder serve` subprocess (a tiny random char-level Llama with a toy chat
template), read through the official `openai` client and LangChain's `ChatOpenAI`: streamed
chat and completions with n = 2 equal the non-streamed answers of the same seed (text,
logprobs, token ids, finish reasons, usage), a stop string that spans several chunks is
never sent, a search streams its chosen answer, streamed and plain requests share engine
calls, and a client that hangs up mid-stream has its rows freed at once.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import served
from served import ponder_serve
from test_serve import KEY, chat_ids, ids_of, save_tiny

from ponder.generation import SamplingParams, make_engine
from ponder.serve.streaming import held_back

MESSAGES = [{"role": "user", "content": "3+4*2\n"}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("stream") / "m0", 0)


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """Room for one huge request (the hang-up test) and a batching window wide enough for
    concurrent requests to meet."""
    log = tmp_path_factory.mktemp("stream-log") / "stderr.txt"
    with ponder_serve(model_dir, log, "--served-model-name", "tiny", "--api-key", KEY, "--max-batch-wait-ms", "20",
                      "--batch-size", "16", "--max-n", "10000", "--max-request-tokens", "500000") as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server["base"] + "/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def engine(model_dir):
    import torch

    torch.set_num_threads(1)
    return make_engine("torch", str(model_dir))


def stats(server):
    status, out, _ = served.call(server["base"], "/ponder/stats", method="GET", key=KEY)
    assert status == 200, out
    return out


def gather(chunks, chat: bool):
    """Per choice index: the streamed text, its pieces, finish reason, token ids and
    logprobs; the order in which indices arrived; the usage chunk."""
    got = defaultdict(lambda: {"pieces": [], "finish": None, "ids": [], "lps": [], "prompt_ids": None, "role": None})
    order, usage, ids = [], None, set()
    for c in chunks:
        ids.add(c.id)
        if not c.choices:
            usage = c.usage
            continue
        assert len(c.choices) == 1 and c.usage is None
        [ch] = c.choices
        g = got[ch.index]
        assert g["finish"] is None, "a chunk after the choice's finishing chunk"
        order.append(ch.index)
        extra = ch.model_extra or {}
        if chat:
            if g["role"] is None:  # the role comes first, alone
                assert ch.delta.role == "assistant" and ch.delta.content == ""
                g["role"] = ch.delta.role
            elif ch.delta.content:
                g["pieces"].append(ch.delta.content)
            if ch.logprobs is not None:
                g["lps"] += [t.logprob for t in ch.logprobs.content]
        else:
            if ch.text:
                g["pieces"].append(ch.text)
            if ch.logprobs is not None:
                g["lps"] += ch.logprobs.token_logprobs
        g["ids"] += extra.get("token_ids") or []
        g["prompt_ids"] = g["prompt_ids"] or extra.get("prompt_token_ids")
        if ch.finish_reason is not None:
            g["finish"] = ch.finish_reason
    assert len(ids) == 1  # one response id for all chunks
    return {i: {**g, "text": "".join(g["pieces"])} for i, g in got.items()}, order, usage


def test_held_back_is_the_longest_end_that_may_begin_a_stop():
    assert held_back("x = 1\n", ["\n\n"]) == 1
    assert held_back("x = 1\n", ["\n\n", "1\n\n"]) == 2
    assert held_back("abc", ["abc"]) == 0  # a whole stop string is the engine's to cut, not a prefix
    assert held_back("abcab", ["abcabd", "bx"]) == 5
    assert held_back("ab", ["b", "xy"]) == 0 and held_back("", ["ab"]) == 0 and held_back("a", []) == 0


def test_the_engine_hands_out_each_token_as_it_is_sampled(engine):
    """The torch engine's `on_token` hook sees every row's tokens in order, with their
    logprobs, and the finished sample on the token that ended the row, while the batch
    (rows of several prompts, joining and leaving) decodes."""
    prompts = [ids_of(engine, p) for p in ("3+4*2\n", "(1+2)*3", "Q: hi\nA:")]
    seen = defaultdict(list)
    done = {}

    def on_token(i, j, token, logprob, sample):
        assert (i, j) not in done, "a token after the row ended"
        seen[i, j].append((token, logprob))
        if sample is not None:
            done[i, j] = sample

    params = SamplingParams(n=2, temperature=1.0, max_tokens=12, stop=["1"], seed=0)
    out = engine.generate(prompts, params, on_token=on_token)
    again = engine.generate(prompts, params)  # the hook changes nothing
    assert [[(s.text, s.token_ids, s.finish_reason) for s in r] for r in out] == \
        [[(s.text, s.token_ids, s.finish_reason) for s in r] for r in again]
    for i, samples in enumerate(out):
        for j, sample in enumerate(samples):
            assert [t for t, _ in seen[i, j]] == sample.token_ids and done[i, j] is sample
            assert [lp for _, lp in seen[i, j]] == sample.logprobs


def test_streamed_chat_equals_the_unstreamed_answer(client, engine):
    body = dict(model="tiny", messages=MESSAGES, n=2, temperature=1.0, seed=5, max_tokens=24, logprobs=True,
                extra_body={"return_token_ids": True})
    full = client.chat.completions.create(**body)
    stream = client.chat.completions.create(**body, stream=True, stream_options={"include_usage": True})
    got, order, usage = gather(stream, chat=True)
    assert sorted(got) == [0, 1]
    for choice in full.choices:
        g = got[choice.index]
        assert g["text"] == choice.message.content and g["finish"] == choice.finish_reason
        assert g["ids"] == choice.model_extra["token_ids"] and g["prompt_ids"] == chat_ids(engine, MESSAGES)
        assert g["lps"] == pytest.approx([t.logprob for t in choice.logprobs.content], abs=1e-6)
        assert len(g["pieces"]) > 1  # token by token, not one piece at the end
    assert (usage.prompt_tokens, usage.completion_tokens) == (full.usage.prompt_tokens, full.usage.completion_tokens)
    assert order[:2] == [0, 1]  # both roles first; then the samples interleave


def test_streamed_completions_with_n_2_interleave_by_index(client):
    body = dict(model="tiny", prompt=["3+4*2\n", "(1+2)*3"], n=2, temperature=1.0, seed=3, max_tokens=16, logprobs=0,
                extra_body={"return_token_ids": True})
    full = client.completions.create(**body)
    got, order, usage = gather(client.completions.create(**body, stream=True), chat=False)
    assert usage is None and sorted(got) == [0, 1, 2, 3]
    for choice in full.choices:
        g = got[choice.index]
        assert g["text"] == choice.text and g["finish"] == choice.finish_reason
        assert g["ids"] == choice.model_extra["token_ids"]
        assert g["lps"] == pytest.approx(choice.logprobs.token_logprobs, abs=1e-6)
    # The four samples decode together: their chunks interleave instead of coming one choice after another.
    assert order != sorted(order)

    # echo: each choice opens with its prompt (and the prompt tokens' logprobs, the first None).
    body = dict(model="tiny", prompt="3+4*2\n", n=2, seed=3, max_tokens=4, logprobs=0, echo=True)
    full = client.completions.create(**body)
    got, _, _ = gather(client.completions.create(**body, stream=True), chat=False)
    for choice in full.choices:
        assert got[choice.index]["text"] == choice.text and got[choice.index]["pieces"][0] == "3+4*2\n"
        assert got[choice.index]["lps"] == pytest.approx(choice.logprobs.token_logprobs, abs=1e-6)


def test_a_stop_string_across_chunks_is_never_sent(client):
    """A 3-character stop string arrives over three tokens (three would-be chunks): the text
    before it is sent, none of it. A stop string whose start appears but never completes
    holds that text back only until the next token settles it."""
    body = dict(model="tiny", prompt="(1+2)*3", temperature=1.0, seed=1, max_tokens=20)
    text = client.completions.create(**body).choices[0].text
    stop = text[5:8]
    cut = text.find(stop)
    assert cut >= 2 and len(text) == 20
    got, _, _ = gather(client.completions.create(**body, stop=[stop], stream=True), chat=False)
    assert got[0]["text"] == text[:cut] and got[0]["finish"] == "stop"
    assert len(got[0]["pieces"]) > 1
    got, _, _ = gather(client.completions.create(**body, stop=[stop], stream=True,
                                                 extra_body={"include_stop_str_in_output": True}), chat=False)
    assert got[0]["text"] == text[: cut + len(stop)]
    never = text[5:7] + "\x00"  # its first two characters come, the third never does
    got, _, _ = gather(client.completions.create(**body, stop=[never], stream=True), chat=False)
    assert got[0]["text"] == text and got[0]["finish"] == "length"
    assert text[5:8] in got[0]["pieces"], got[0]["pieces"]  # held, then released with the next character


def test_langchain_chat_openai_streams(server, engine):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="tiny", base_url=server["base"] + "/v1", api_key=KEY, temperature=0, max_tokens=12,
                     max_retries=0)
    pieces = [chunk.content for chunk in llm.stream("2+2")]
    [[ref]] = engine.generate([chat_ids(engine, [{"role": "user", "content": "2+2"}])],
                              SamplingParams(temperature=0, max_tokens=12))
    assert "".join(pieces) == ref.text == llm.invoke("2+2").content
    assert sum(1 for p in pieces if p) > 1


def test_a_search_streams_its_answer(client):
    body = dict(model="tiny", messages=MESSAGES, max_tokens=24, seed=0,
                extra_body={"ponder": {"strategy": "majority", "n": 4}})
    full = client.chat.completions.create(**body)
    chunks = list(client.chat.completions.create(**body, stream=True, stream_options={"include_usage": True}))
    assert [c.choices[0].delta.content for c in chunks[:1]] == [full.choices[0].message.content]
    info, full_info = chunks[1].model_extra["ponder"], full.model_extra["ponder"]
    assert chunks[1].choices[0].finish_reason == "stop" and info.pop("wall_s") > 0 and full_info.pop("wall_s") > 0
    assert info == full_info and info["candidates"] == 4
    assert chunks[2].choices == [] and chunks[2].usage.completion_tokens == full.usage.completion_tokens


def test_streamed_and_plain_requests_share_engine_calls(server, client):
    """Three streamed and three plain requests sent at once: fewer engine calls than
    requests, and each gets the samples its seed gives alone."""
    body = dict(model="tiny", prompt="Q: hi\nA:", temperature=1.0, max_tokens=8)
    alone = [client.completions.create(**body, seed=s).choices[0].text for s in range(6)]
    before = stats(server)
    barrier = threading.Barrier(6)

    def send(seed):
        barrier.wait()
        if seed % 2:
            return client.completions.create(**body, seed=seed).choices[0].text
        return gather(client.completions.create(**body, seed=seed, stream=True), chat=False)[0][0]["text"]

    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(send, range(6)))
    after = stats(server)
    assert together == alone
    assert after["generate_requests"] - before["generate_requests"] == 6
    assert after["generate_calls"] - before["generate_calls"] < 6


def test_a_client_that_leaves_mid_stream_frees_its_rows(server):
    """4000 prompts x 100 tokens would decode for about a minute: the first tokens reach the
    client long before that; it reads a few chunks and hangs up; its rows leave the batch at
    once and the server answers the next request."""
    base = stats(server)
    body = json.dumps({"prompt": [[5, 6, 7]] * 4000, "max_tokens": 100, "temperature": 1.0, "stream": True}).encode()
    host, port = server["base"].removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 + f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    sock.settimeout(60)
    received = b""
    while received.count(b"data: {") < 20:
        data = sock.recv(65536)
        assert data, received[-500:]
        received += data
    head = received.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.1 200") and "text/event-stream" in head and "chunked" in head.lower()
    early = stats(server)
    # Tokens arrive while the batch decodes: most of the request is still to come.
    assert early["generated_tokens"] - base["generated_tokens"] < 4000 * 100 / 4
    sock.close()
    first = served.settled_after_hang_up(lambda: stats(server), base)
    assert first["generated_tokens"] - base["generated_tokens"] < 4000 * 100 / 4
    start = time.monotonic()
    status, out, _ = served.call(server["base"], "/v1/completions", {"prompt": "3+", "max_tokens": 3}, key=KEY)
    assert status == 200 and time.monotonic() - start < 10, out
    assert "client hung up" in open(server["log"]).read()
