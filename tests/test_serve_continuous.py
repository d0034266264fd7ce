"""`ponder serve` keeps one engine call running across requests: a request that arrives
while another decodes joins its batch between two decoding steps, and each is answered as
soon as its own rows end. Checked over real HTTP against a real server subprocess (a tiny
random char-level Llama), with engine call counts from /ponder/stats, samples against the
in-process engine's, and the cached prompt tokens each request reports.
"""
from __future__ import annotations

import http.client
import json
import threading
import time

import pytest
import served
import torch
from served import ponder_serve

from ponder.generation import SamplingParams, make_engine
from ponder.generation.base import prompt_seed
from ponder.models import build_char_tokenizer, build_tiny_model

PROMPT = "3+4*2\n"
MAX_TOKENS = 300
BODY = {"prompt": PROMPT, "temperature": 1.0, "max_tokens": MAX_TOKENS, "return_token_ids": True}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("continuous")
    tokenizer = build_char_tokenizer()
    build_tiny_model(tokenizer, "1m", max_len=512, seed=0).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    with ponder_serve(model_dir, tmp_path_factory.mktemp("log") / "stderr.txt", "--served-model-name", "tiny") as srv:
        yield srv


@pytest.fixture(scope="module")
def seeds(model_dir):
    """Seeds whose sample of PROMPT is long and short, and those samples: what each request
    seeded so gets alone (the server seeds a request's prompt k with prompt_seed(seed, k))."""
    torch.set_num_threads(1)
    with make_engine("torch", str(model_dir)) as engine:
        prompt = engine.tokenize([PROMPT])[0]
        out = engine.generate([prompt] * 32, SamplingParams(temperature=1.0, max_tokens=MAX_TOKENS),
                              seeds=[prompt_seed(s, 0) for s in range(32)])
    lengths = [samples[0].num_tokens for samples in out]
    long, short = lengths.index(max(lengths)), lengths.index(min(lengths))
    assert lengths[long] >= 100 and lengths[short] <= 10, lengths
    return {"long": long, "short": short, "ids": {long: out[long][0].token_ids, short: out[short][0].token_ids},
            "prompt": prompt}


def stats(server):
    status, out, _ = served.call(server["base"], "/ponder/stats", method="GET")
    assert status == 200
    return out


def stream(server, body, started: threading.Event, result: dict) -> None:
    """A streamed completion read as it comes: `started` is set at its first token; `result`
    gets its token ids, usage and the time its last event arrived."""
    host, port = server["base"].removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    conn.request("POST", "/v1/completions", json.dumps({**body, "stream": True,
                                                        "stream_options": {"include_usage": True}}),
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    ids, usage = [], None
    for line in resp:
        if not line.startswith(b"data: {"):
            continue
        chunk = json.loads(line[6:])
        for choice in chunk["choices"]:
            ids += choice.get("token_ids") or []
            started.set()
        usage = chunk.get("usage") or usage
    result.update(ids=ids, usage=usage, ended=time.monotonic())
    conn.close()


def test_a_request_sent_while_another_decodes_joins_it_and_ends_first(server, seeds):
    """A long streamed request decodes; a short one sent after its first token joins its
    engine call (one call for both, one request joined) and is answered while the long one
    goes on; each gets the samples its seed gives alone."""
    before = stats(server)
    started, long = threading.Event(), {}
    reader = threading.Thread(target=stream, args=(server, {**BODY, "seed": seeds["long"]}, started, long))
    reader.start()
    assert started.wait(60), "the long request never started"
    status, short, _ = served.call(server["base"], "/v1/completions", {**BODY, "seed": seeds["short"]})
    short_ended = time.monotonic()
    reader.join(120)
    after = stats(server)
    assert status == 200, short
    assert short["choices"][0]["token_ids"] == seeds["ids"][seeds["short"]]
    assert long["ids"] == seeds["ids"][seeds["long"]]
    assert short_ended < long["ended"], "the short request waited for the long one"
    assert after["generate_calls"] - before["generate_calls"] == 1
    assert after["joined_requests"] - before["joined_requests"] == 1
    assert after["generate_requests"] - before["generate_requests"] == 2


def test_a_joining_request_reports_its_own_cached_tokens(server, seeds):
    """Once the long sample is in the server's prefix cache, a request that repeats its
    prompt and continues its first 50 tokens joins a running call: its cached prompt tokens
    are its own hit (all its prompt but the last token), not a share of the call's."""
    started, first = threading.Event(), {}
    reader = threading.Thread(target=stream, args=(server, {**BODY, "seed": seeds["long"]}, started, first))
    reader.start()
    assert started.wait(60)
    reader.join(120)  # the long sample is stored now
    before = stats(server)
    started, running = threading.Event(), {}
    other = {**BODY, "prompt": "7*(1+", "seed": seeds["long"]}  # nothing cached shares this prompt
    reader = threading.Thread(target=stream, args=(server, other, started, running))
    reader.start()
    assert started.wait(60)
    prompt = seeds["prompt"] + seeds["ids"][seeds["long"]][:50]
    status, joined, _ = served.call(server["base"], "/v1/completions", {**BODY, "prompt": prompt, "seed": 1})
    reader.join(120)
    after = stats(server)
    assert status == 200, joined
    assert after["joined_requests"] - before["joined_requests"] == 1
    assert after["generate_calls"] - before["generate_calls"] == 1
    assert joined["usage"]["prompt_tokens_details"]["cached_tokens"] == len(prompt) - 1
    assert running["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
