"""`ponder serve` as a real subprocess on a free loopback port, for the tests that speak to it."""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

STARTUP_S = 120


@contextmanager
def ponder_serve(model_dir, log_path, *args: str):
    """Yields {"base": root URL, "proc", "log": log path} of `ponder serve --model model_dir
    --port 0 *args` (one torch thread), once it prints that it serves; stops it on exit."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    with open(log_path, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "ponder", "serve", "--model", str(model_dir), "--port", "0",
                                 *args], stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    try:
        line = ""
        deadline = time.monotonic() + STARTUP_S
        while "serving" not in line:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready or proc.poll() is not None:
                raise RuntimeError(f"ponder serve did not start:\n{open(log_path).read()[-3000:]}")
            line = proc.stdout.readline()
        assert line.startswith("serving ") and " on http://127.0.0.1:" in line and line.strip().endswith("/v1"), line
        yield {"base": line.split(" on ", 1)[1].strip().removesuffix("/v1"), "proc": proc, "log": log_path,
               "name": line.split()[1]}
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def call(base, path, body=None, method="POST", key=None, raw=None, headers=None, timeout=120):
    """(status, JSON body or None, response headers) of one request; error statuses are
    returned, not raised."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if key is not None:
        req.add_header("Authorization", f"Bearer {key}")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text else None, dict(resp.headers)
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, json.loads(text) if text else None, dict(e.headers)


def settled_after_hang_up(stats_of, base: dict) -> dict:
    """Once the server has noticed a client hang up (its cancelled jobs counter moved past
    `base`'s), check that nothing decodes for it any more and nothing is left pending; the
    stats (from `stats_of()`) at that point."""
    deadline = time.monotonic() + 30
    while stats_of()["cancelled_jobs"] == base["cancelled_jobs"]:
        assert time.monotonic() < deadline, "the hang-up was never noticed"
        time.sleep(0.05)
    time.sleep(0.3)
    first = stats_of()
    time.sleep(1.0)
    second = stats_of()
    assert second["generated_tokens"] == first["generated_tokens"], "rows of the gone client are still decoding"
    assert second["pending_requests"] == 0 and second["waiting_jobs"] == 0
    return first
