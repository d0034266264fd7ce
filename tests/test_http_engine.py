"""The HTTP engine against a real `ponder serve` subprocess on a loopback port: the same
samples, ids, logprobs and usage as the in-process torch engine; clear errors; retries; RL
weight sync through the server; `ponder eval --engine URL`."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from ponder.generation import EngineError, SamplingParams, make_engine
from ponder.models import build_char_tokenizer, build_tiny_model

PROMPTS = ["3+4*2", "(8-3)*2", "9-2-1"]
NAME = "tiny-policy"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir, port: int, name: str = NAME, *args: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "ponder", "serve", "--model", str(model_dir), "--port", str(port),
                             "--served-model-name", name, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env, text=True)
    deadline = time.time() + 120
    for line in proc.stdout:  # the server prints one line once it accepts connections
        if "serving" in line:
            return proc
        if time.time() > deadline:
            break
    proc.kill()
    raise RuntimeError(f"ponder serve did not start (exit {proc.poll()})")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(url, model dir, in-process torch engine on the same weights)."""
    torch.set_num_threads(1)  # the server has the cores while the test waits on it
    folder = tmp_path_factory.mktemp("policy")
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, "1m", seed=0).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    port = free_port()
    proc = start_server(folder, port)
    local = make_engine("torch", str(folder))
    yield f"http://127.0.0.1:{port}/v1", folder, local
    stop(proc)


def test_generate_matches_the_torch_engine(served):
    url, _, local = served
    with make_engine(url) as remote:  # no name: the server's only model
        assert remote.model == NAME and not remote.chat  # the char tokenizer has no chat template
        greedy = SamplingParams(temperature=0.0, max_tokens=16)
        before = local.usage.copy()
        ours, theirs = local.generate(PROMPTS, greedy), remote.generate(PROMPTS, greedy)
        assert [s[0].token_ids for s in theirs] == [s[0].token_ids for s in ours]
        assert [s[0].text for s in theirs] == [s[0].text for s in ours]
        for a, b in zip(ours, theirs):
            assert b[0].finish_reason == a[0].finish_reason and b[0].num_tokens == a[0].num_tokens
            assert b[0].logprobs == pytest.approx(a[0].logprobs, abs=1e-4)
        used = local.usage - before
        assert (remote.usage.prefill_tokens, remote.usage.generated_tokens) == (used.prefill_tokens, used.generated_tokens)


def test_token_id_continuation_and_stops(served):
    url, _, local = served
    with make_engine(url, NAME) as remote:
        ids = remote.prompt_ids(PROMPTS)
        assert ids == local.prompt_ids(PROMPTS)
        assert remote.tokenize(["12\n"]) == local.tokenize(["12\n"])
        step = SamplingParams(temperature=0.0, max_tokens=16, stop=["\n"], include_stop_str_in_output=True)
        [[a]], [[b]] = local.generate([ids[0]], step), remote.generate([ids[0]], step)
        assert (b.token_ids, b.text, b.stop_reason) == (a.token_ids, a.text, a.stop_reason)
        # continuing from prompt ids + the generated ids
        [[c]], [[d]] = local.generate([ids[0] + a.token_ids], step), remote.generate([ids[0] + b.token_ids], step)
        assert d.token_ids == c.token_ids


def test_seeds_and_n(served):
    url, _, _ = served
    with make_engine(url, NAME, max_concurrency=2) as remote:
        hot = SamplingParams(n=4, temperature=1.0, max_tokens=12, seed=7)
        first, again = remote.generate(PROMPTS, hot), remote.generate(PROMPTS, hot)
        assert all(len(g) == 4 for g in first)
        assert [[s.token_ids for s in g] for g in first] == [[s.token_ids for s in g] for g in again]
        other = remote.generate(PROMPTS, SamplingParams(n=4, temperature=1.0, max_tokens=12, seed=8))
        assert [[s.token_ids for s in g] for g in other] != [[s.token_ids for s in g] for g in first]
        # seeds[i]: prompt i sampled as if alone in a call with that seed, as on the torch engine
        alone = remote.generate(PROMPTS[1:2], hot)
        mixed = remote.generate(PROMPTS[:2], hot, seeds=[3, 7])
        assert [s.token_ids for s in mixed[1]] == [s.token_ids for s in alone[0]]


def test_teacher_forced_logprobs_match(served):
    url, _, local = served
    with make_engine(url, NAME) as remote:
        comps = ["11\nAnswer: 11", [5, 6, 7], ""]
        for t in (1.0, 0.7):
            ours, theirs = local.logprobs(PROMPTS, comps, temperature=t), remote.logprobs(PROMPTS, comps, temperature=t)
            assert [len(x) for x in theirs] == [len(x) for x in ours] == [13, 3, 0]
            for a, b in zip(ours, theirs):
                assert b == pytest.approx(a, abs=1e-4)


def test_errors_name_the_url(served):
    url, _, _ = served
    with pytest.raises(EngineError, match=rf"does not serve model 'nope'; it serves: {NAME}"):
        make_engine(url, "nope")
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(EngineError, match=r"127\.0\.0\.1.*unreachable.*is it running"):
        make_engine(dead, retries=1)
    with make_engine(url, NAME) as remote:
        with pytest.raises(EngineError, match=r"refused the request \(400\)"):
            remote.generate([[1, 2]], SamplingParams(max_tokens=10**9))


class Flaky(BaseHTTPRequestHandler):
    """A server that is overloaded for its first two requests (503, then 429), then serves a
    model list: the retry path of the HTTP engine, over real sockets."""

    hits = 0

    def do_GET(self):
        Flaky.hits += 1
        code = {1: 503, 2: 429}.get(Flaky.hits, 200)
        body = json.dumps({"data": [{"id": "m", "owned_by": "x"}]} if code == 200 else {"error": {"message": "busy"}})
        self.send_response(code)
        if code == 429:
            self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


def test_transient_failures_are_retried_then_reported():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        assert make_engine(url, retries=2).model == "m" and Flaky.hits == 3
        Flaky.hits = 0
        with pytest.raises(EngineError, match=r"failed 2 times \(503 Service Unavailable, 429 Too Many Requests\): busy"):
            make_engine(url, retries=1)
    finally:
        server.shutdown()


def test_rl_pushes_weights_into_the_server(served, tmp_path, monkeypatch):
    """After RL steps through a server engine, the server samples from the trainer's weights:
    its logprobs of a batch equal the trainer's recomputed ones (importance ratio 1), and
    differ from the initial policy's, so the sync is what made them agree."""
    from ponder.rewards.functions import RewardFunction
    from ponder.tasks import get_task
    from ponder.train.rl import RLConfig, RLTrainer
    from ponder.train.rl_batch import response_logprobs

    url, folder, local = served
    port = free_port()
    weights = tmp_path / "weights"  # the one folder the server loads weights from
    weights.mkdir()
    monkeypatch.setenv("PONDER_WEIGHTS_DIR", str(weights))
    # A server of its own: this test changes its weights.
    proc = start_server(folder, port, "rl", "--allow-weight-updates", str(weights))
    try:
        task = get_task("arith", instruction=False)
        tok = build_char_tokenizer()
        policy = build_tiny_model(tok, "1m", seed=0)
        cfg = RLConfig(steps=2, prompts_per_step=2, group_size=4, max_tokens=12, lr=3e-3, save_every=0, eval_every=0)
        ones = RewardFunction("ones", lambda prompts, completions, **_: [c.count("1") / (len(c) + 1) for c in completions])
        trainer = RLTrainer(policy, tok, task, task.problems("train", n=8, seed=0), [], [ones], cfg, tmp_path,
                            progress=False, engine=f"http://127.0.0.1:{port}/v1")
        trainer.train()
        trainer._sync_weights()  # the final optimiser step is pushed before the next sampling
        ids = [tok(p)["input_ids"] for p in PROMPTS]
        samples = trainer.generator.generate(ids, SamplingParams(n=2, temperature=1.0, max_tokens=10, seed=5))
        rows = [{"prompt_ids": p, "sample": s} for p, group in zip(ids, samples) for s in group]
        batch = trainer._tensorize(rows)
        mask = batch["mask"].bool()
        with torch.no_grad():
            trainer_lp = response_logprobs(trainer.policy, batch, 1.0)[0][mask]
        sampler_lp = torch.tensor([v for x in rows for v in x["sample"].logprobs])
        assert (sampler_lp - trainer_lp).abs().max() < 1e-4  # ratio exp(0) = 1
        initial = torch.tensor([v for x in rows for v in local.logprobs([x["prompt_ids"]], [x["sample"].token_ids])[0]])
        assert (initial - trainer_lp).abs().max() > 1e-2  # without the sync they would not agree
        assert trainer.timing["sync_s"] > 0
    finally:
        stop(proc)


def test_cli_eval_through_the_server_equals_in_process(served, tmp_path):
    url, folder, _ = served
    args = ["--task", "arith", "--task-arg", "instruction=false", "--n", "6", "--k", "0", "--max-tokens", "24"]
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def summary(*extra):
        out = subprocess.run([sys.executable, "-m", "ponder", "eval", *args, *extra], capture_output=True, text=True,
                             env=env, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    remote, local = summary("--engine", url, "--model", NAME), summary("--model", str(folder))
    assert remote["greedy_accuracy"] == local["greedy_accuracy"]
    assert remote["mean_tokens"] == local["mean_tokens"]
    bad = subprocess.run([sys.executable, "-m", "ponder", "eval", *args, "--engine", url, "--model", "nope"],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "does not serve model 'nope'" in bad.stdout and "Traceback" not in bad.stderr


def test_same_greedy_answers_through_the_server(arith_policy):
    """Greedy eval of a trained arith policy on 64 held-out problems: the in-process engine
    and `ponder serve` give the same accuracy; any completion that differs is reported with
    the position and the logprob margin there (a near-tie), and there must be none that is
    not a near-tie."""
    from ponder.eval.compare import greedy_differences
    from ponder.eval import EvalConfig, evaluate
    from ponder.tasks import get_task

    task = get_task("arith", instruction=False)
    problems = task.problems("test", n=64, seed=0)
    cfg = EvalConfig(n=64, k=0, max_tokens=80)
    port = free_port()
    proc = start_server(arith_policy, port, "policy")
    try:
        local = make_engine("torch", arith_policy)
        with make_engine(f"http://127.0.0.1:{port}/v1", "policy") as remote:
            ours, theirs = evaluate(local, task, problems, cfg), evaluate(remote, task, problems, cfg)
            ids = local.prompt_ids([task.prompt(p) for p in problems])
            diffs = greedy_differences(local, ids, local.tokenize([r["greedy"] for r in ours["records"]]),
                                       local.tokenize([r["greedy"] for r in theirs["records"]]))
    finally:
        stop(proc)
    print(f"greedy accuracy torch {ours['summary']['greedy_accuracy']:.3f}, "
          f"ponder serve {theirs['summary']['greedy_accuracy']:.3f}; differing completions: {diffs}")
    assert 0 < ours["summary"]["greedy_accuracy"] < 1  # a policy that is right on some, wrong on others
    assert not [d for d in diffs if d["why"] == "MISMATCH"]
    assert theirs["summary"]["greedy_accuracy"] == ours["summary"]["greedy_accuracy"]
