"""Engine tests that need vLLM: the vLLM engine (offline `vllm.LLM`) and the HTTP engine
against a real vLLM OpenAI server. vLLM lives in its own venv with its own pins, so these
tests run there, apart from `make test`:

    make test-engines        # builds .venv-vllm once, then: .venv-vllm/bin/pytest tests/engines

Without vLLM every test here skips and says so. The tiny model is a char-level Llama built
here and saved with a small chat template, so user texts go through a template on every
engine, as they do for an instruct model.
"""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager

import pytest

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
NO_VLLM = "vLLM is not installed in this venv: `make test-engines` builds .venv-vllm and runs these tests there"

# vLLM's CPU settings when pytest is run by hand rather than by `make test-engines` (the
# Makefile explains them). Set here, before anything imports torch: OpenMP reads
# GOMP_CPU_AFFINITY when it loads.
CPUS = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
for key, value in {
    "VLLM_CPU_OMP_THREADS_BIND": CPUS,
    "GOMP_CPU_AFFINITY": CPUS,
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ.setdefault(key, value)

# One user turn, then the answer cue: "Q: <text>\nA:".
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}Q: {{ m['content'] }}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}A:{% endif %}"
)


@pytest.fixture(scope="session", autouse=True)
def _needs_vllm():
    if not HAVE_VLLM:
        pytest.skip(NO_VLLM)


def save_tiny(folder, seed: int):
    """A 1M-parameter char-level Llama (random weights, `seed`) with its tokenizer and chat
    template, saved as a Hugging Face folder; returns (model, tokenizer)."""
    from ponder.models import build_char_tokenizer, build_tiny_model

    tokenizer = build_char_tokenizer()
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    model = build_tiny_model(tokenizer, "1m", seed=seed).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """(folder, model, tokenizer) of the tiny model, seed 0."""
    folder = tmp_path_factory.mktemp("tiny0")
    model, tokenizer = save_tiny(folder, seed=0)
    return folder, model, tokenizer


@pytest.fixture(scope="session")
def tiny_other(tmp_path_factory):
    """(folder, model, tokenizer) of a second tiny model, seed 1: same shapes, other weights."""
    folder = tmp_path_factory.mktemp("tiny1")
    model, tokenizer = save_tiny(folder, seed=1)
    return folder, model, tokenizer


STARTUP_S = 600


@contextmanager
def vllm_server(model_dir, name: str, log_path, *args: str):
    """A real vLLM OpenAI server for `model_dir` on a free loopback port, as `python -m
    vllm.entrypoints.openai.api_server` (the `vllm` console script fails on vllm-cpu: its
    distribution is named `vllm-cpu`), fp32 and eager (compiling would add ~1.5 min to the
    start); yields the server's root URL and stops it on exit. Its output goes to
    `log_path`, quoted when it fails to start."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # A server runs its engine core in a child process, as vLLM does by default.
    env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
           "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--served-model-name", name,
           "--enable-prompt-tokens-details", "--enforce-eager", *args]
    root = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the vLLM server exited with {proc.returncode}:\n{open(log_path).read()[-3000:]}")
            if time.perf_counter() - start > STARTUP_S:
                pytest.fail(f"the vLLM server did not answer within {STARTUP_S} s:\n{open(log_path).read()[-3000:]}")
            try:
                urllib.request.urlopen(f"{root}/v1/models", timeout=2).close()
                break
            except OSError:
                time.sleep(1)
        print(f"vLLM server answered after {time.perf_counter() - start:.0f} s")
        yield root
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
