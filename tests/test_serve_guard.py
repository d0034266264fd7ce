"""`ponder serve` against what an attacker, a browser page or an overload would try, through
real HTTP against real `ponder serve` subprocesses.

One server starts as a user would start it (no key, no flags but a small engine batch and
room for one huge request); the other tests of the server's rules run against the keyed
server of test_serve.py. Each finding gets its test: the weight swap refused, the foreign
origin and the text/plain body refused, the `..` index refused, a 10 MB body and n = 10^6
answered 413/400 with the server still healthy, 256 parallel clients all answered, the rows
of a client that hung up dropped, and a search taking turns with a plain request.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from served import call, ponder_serve, settled_after_hang_up
from test_serve import save_tiny

from ponder.serve.guard import Guard, is_loopback, startup_problems

GREEDY = {"prompt": "3+4*2", "temperature": 0, "max_tokens": 8}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """Two tiny policies, and a (random) PRM on the first one's body."""
    from ponder.models import load_model
    from ponder.rewards.model import RewardModel

    root = tmp_path_factory.mktemp("guard")
    m0, m1 = save_tiny(root / "m0", 0), save_tiny(root / "m1", 1)
    lm, tok = load_model(str(m0))
    RewardModel(lm.model, tok, "prm").save(root / "prm")
    return m0, m1, root / "prm"


@pytest.fixture(scope="module")
def server(dirs, tmp_path_factory):
    """Defaults but a batch of 16 rows, room for one request of 4000 prompts, and a PRM."""
    log = tmp_path_factory.mktemp("guard-log") / "stderr.txt"
    with ponder_serve(dirs[0], log, "--batch-size", "16", "--max-n", "10000",
                      "--max-request-tokens", "500000", "--scorer", str(dirs[2])) as srv:
        yield srv


def ok(server, path, body=None, method="POST", **kw):
    status, out, _ = call(server["base"], path, body, method, **kw)
    assert status == 200, out
    return out


def healthy_and_unchanged(server, before: str) -> None:
    assert call(server["base"], "/health", method="GET")[0] == 200
    assert ok(server, "/v1/completions", GREEDY)["choices"][0]["text"] == before


def test_weight_swap_refused_without_the_flag(server, dirs):
    before = ok(server, "/v1/completions", GREEDY)["choices"][0]["text"]
    status, out, _ = call(server["base"], "/update_weights_from_disk", {"model_path": str(dirs[1])})
    assert status == 403 and out["error"]["code"] == "weight_updates_disabled"
    assert "--allow-weight-updates" in out["error"]["message"]
    healthy_and_unchanged(server, before)


def test_a_page_in_a_browser_is_refused(server, dirs):
    """A foreign Origin is refused whatever the body; a text/plain body (what a page can send
    cross-site without a preflight) is refused even without one; so is a DNS name rebound
    to 127.0.0.1 (its own name as Host)."""
    before = ok(server, "/v1/completions", GREEDY)["choices"][0]["text"]
    body = json.dumps({"model_path": str(dirs[1])}).encode()
    status, out, headers = call(server["base"], "/update_weights_from_disk", raw=body,
                                headers={"Origin": "http://evil.example", "Content-Type": "text/plain"})
    assert status == 403 and out["error"]["code"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in headers
    status, out, _ = call(server["base"], "/v1/completions", GREEDY, headers={"Origin": "http://evil.example"})
    assert status == 403 and "--allowed-origins" in out["error"]["message"]
    status, out, _ = call(server["base"], "/v1/completions", raw=json.dumps(GREEDY).encode(),
                          headers={"Content-Type": "text/plain"})
    assert status == 415 and "application/json" in out["error"]["message"]
    status, out, _ = call(server["base"], "/v1/completions", GREEDY, headers={"Host": "evil.example:8000"})
    assert status == 403 and out["error"]["code"] == "host_not_allowed"
    status, _, headers = call(server["base"], "/v1/completions", method="OPTIONS",
                              headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    healthy_and_unchanged(server, before)


def test_oversized_requests_are_refused_and_the_server_lives(server):
    before = ok(server, "/v1/completions", GREEDY)["choices"][0]["text"]
    huge = json.dumps({"prompt": "1+" * (5 * 2**20)}).encode()  # 10 MB
    status, out, _ = call(server["base"], "/v1/completions", raw=huge)
    assert status == 413 and "(--max-body-mb)" in out["error"]["message"]
    status, out, _ = call(server["base"], "/v1/completions", {"prompt": "3+4", "n": 10**6})
    assert status == 400 and out["error"]["param"] == "n" and "(--max-n)" in out["error"]["message"]
    status, out, _ = call(server["base"], "/v1/completions", {"prompt": [[5, 6]] * 5000, "max_tokens": 101})
    assert status == 400 and out["error"]["param"] == "max_tokens"
    status, out, _ = call(server["base"], "/v1/chat/completions",
                          {"messages": [{"role": "user", "content": "3+4"}], "ponder": {"strategy": "majority",
                                                                                        "n": 65}})
    assert status == 400 and out["error"]["param"] == "ponder.n"
    healthy_and_unchanged(server, before)


def test_256_parallel_clients_are_all_answered(server):
    clients = 256
    barrier = threading.Barrier(clients)

    def one(i):
        barrier.wait()
        status, out, _ = call(server["base"], "/v1/completions", {"prompt": f"{i}+1", "max_tokens": 2, "seed": i},
                              timeout=300)
        return status, len(out["choices"]) if status == 200 else out

    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(clients)))
    assert results == [(200, 1)] * clients


def stats(server):
    return ok(server, "/ponder/stats", method="GET")


def test_a_client_that_hangs_up_frees_its_rows(server):
    """4000 prompts x 100 tokens keep the engine busy for about a minute; the client leaves
    after a second: its rows leave the batch, and the engine is free at once."""
    base = ok(server, "/ponder/stats", method="GET")
    body = json.dumps({"prompt": [[5, 6, 7]] * 4000, "max_tokens": 100, "temperature": 1.0}).encode()
    host, port = server["base"].removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    deadline = time.monotonic() + 30
    while stats(server)["generated_tokens"] == base["generated_tokens"]:  # decoding has started
        assert time.monotonic() < deadline, "the long request never started"
        time.sleep(0.05)
    time.sleep(0.5)
    sock.close()
    first = settled_after_hang_up(lambda: stats(server), base)
    done = first["generated_tokens"] - base["generated_tokens"]
    assert done < 4000 * 100 / 4, f"{done} tokens generated: the request ran on"
    start = time.monotonic()
    ok(server, "/v1/completions", GREEDY)
    assert time.monotonic() - start < 10  # against about a minute had the rows stayed
    assert "client hung up" in open(server["log"]).read()


def test_a_search_takes_turns_with_plain_requests(server):
    """A beam search of ~100 engine calls and a plain request sent while it runs: the plain
    one is answered between two of the search's calls, before the search ends."""
    ext = {"strategy": "beam", "n": 64, "beam_width": 4, "scorer": "verifier", "answer": "11",
           "question": "3+4*2", "max_step_tokens": 1, "max_steps": 100, "max_tokens": 110, "seed": 0}
    ended = {}

    def run_search():
        ended["search"] = (call(server["base"], "/v1/completions",
                                {"prompt": "3+4*2\n", "max_tokens": 110, "ponder": ext}), time.monotonic())

    thread = threading.Thread(target=run_search)
    # Requests answered, not engine calls: the search's steps may all join one running call.
    before = stats(server)["generate_requests"]
    thread.start()
    deadline = time.monotonic() + 30
    while stats(server)["generate_requests"] < before + 3:  # the search is under way
        assert time.monotonic() < deadline and thread.is_alive()
        time.sleep(0.01)
    status, out, _ = call(server["base"], "/v1/completions", {"prompt": "3+", "max_tokens": 3, "temperature": 0})
    plain_done = time.monotonic()
    thread.join(120)
    (status_s, out_s, _), search_done = ended["search"]
    assert status == 200 and status_s == 200, out_s
    assert out_s["ponder"]["generate_calls"] > 20
    assert plain_done < search_done, "the plain request waited for the whole search"


def test_search_with_the_prm_the_server_started_with(server):
    ext = {"strategy": "best_of_n", "n": 4, "scorer": "prm", "seed": 0}
    out = ok(server, "/v1/chat/completions", {"messages": [{"role": "user", "content": "3+4*2\n"}],
                                               "max_tokens": 16, "ponder": ext})
    info, usage = out["ponder"], out["usage"]
    assert info["candidates"] == 4 and all(0 <= s <= 1 for s in info["scores"])
    assert usage["scorer_tokens"] > 0 and info["scorer_calls"] == 1 and 0 < usage["completion_tokens"] <= 64


def test_startup_rules(dirs, tmp_path):
    """Weight updates beyond loopback need a key (refused before anything loads); a server
    open beyond loopback without a key is warned about."""
    from typer.testing import CliRunner

    from ponder.cli import app

    res = CliRunner().invoke(app, ["serve", "--model", str(dirs[0]), "--host", "0.0.0.0",
                                   "--allow-weight-updates", str(tmp_path)])
    assert res.exit_code == 2 and "needs a key" in res.output and "Traceback" not in res.output
    assert startup_problems("0.0.0.0", Guard())[1][0].startswith("warning: ponder serve listens on 0.0.0.0 without")
    assert startup_problems("127.0.0.1", Guard()) == (None, [])
    assert startup_problems("0.0.0.0", Guard(api_key="k", weights_dir=str(tmp_path))) == (None, [])
    assert is_loopback("localhost") and is_loopback("::1") and not is_loopback("0.0.0.0")
