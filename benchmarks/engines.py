"""Engines side by side, one process: the same workloads through torch, offline vLLM and
servers over HTTP (`vllm serve`, `ponder serve`), with ratios against the torch engine.

1. Generation (SmolLM2-135M-Instruct): 64 chat prompts greedy (n=1), then the first 16 of
   them with n=8 at T=0.8 (`--sampled-prompts`; all 64 x 8 take ~15 min through the torch
   engine on 2 cores), at most 128 tokens each; tokens/s as counted by each engine's usage.
2. Search (a tiny arith policy: an arith demo's SFT model if `runs/demo-arith/sft/model` exists, else a
   fresh tiny:1m): beam search N=16, M=4 with the exact step verifier on held-out problems,
   through torch and through servers - prefill tokens with and without vLLM's prefix cache.

Needs vLLM for the vllm rows: run it with the engines venv (`make setup-engines`):

    .venv-vllm/bin/python benchmarks/engines.py
    .venv/bin/python benchmarks/engines.py --engines torch,ponder-serve   # without vLLM
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/engines.py --engines torch,ponder-serve \
        --concurrency 16,64 --sampled-prompts 0 --skip search   # serve's throughput, 16 and 64 in flight

Servers are started here as subprocesses on free loopback ports and stopped after their
rows, so no two engines compete for the cores; a server is spoken to with `--concurrency`
requests in flight (each count its own row: 64 prompts with 64 in flight are all at the
server at once, as in the in-process call). Besides wall-clock tokens/s, each generation
row counts the CPU seconds of the process that ran the engine (this one, or the server's,
its HTTP threads included: Linux /proc), so a ratio can be read apart from what else the
machine ran meanwhile. vLLM runs fp32 on all cores
(VLLM_CPU_OMP_THREADS_BIND, VLLM_CPU_NUM_OF_RESERVED_CPU=0, a 1 GiB KV cache). Offline vLLM
runs in this process, whose OpenMP threads must be pinned from the start
(GOMP_CPU_AFFINITY): without it the script restarts itself with it set.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generation import questions  # noqa: E402  the 64 chat prompts of the generation benchmark

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CPUS = ",".join(str(c) for c in sorted(os.sched_getaffinity(0)))
VLLM_ENV = {"VLLM_CPU_OMP_THREADS_BIND": CPUS, "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "VLLM_CPU_KVCACHE_SPACE": "1",
            "GOMP_CPU_AFFINITY": CPUS}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(kind: str, model_dir: str, name: str, prefix_cache: bool = True, eager: bool = False):
    """A `ponder serve` or vLLM OpenAI server on a free loopback port; yields its process, `.url` its API base."""
    port = free_port()
    if kind == "ponder":
        cmd = [sys.executable, "-m", "ponder", "serve", "--model", model_dir, "--port", str(port),
               "--served-model-name", name]
    else:
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_dir, "--host", "127.0.0.1",
               "--port", str(port), "--dtype", "float32", "--served-model-name", name, "--enable-prompt-tokens-details",
               "--no-enable-chunked-prefill",  # a seeded request prefilled in chunks crashes vLLM 0.32 on CPU
               "--enable-prefix-caching" if prefix_cache else "--no-enable-prefix-caching"] + (["--enforce-eager"] * eager)
    log = tempfile.TemporaryFile()
    env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}  # a server's own default
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**env, **VLLM_ENV})
    url = f"http://127.0.0.1:{port}/v1"
    t0 = time.time()
    try:
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise SystemExit(f"{kind} server exited {proc.returncode}:\n{log.read().decode()[-2000:]}")
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2)
                break
            except OSError:
                time.sleep(1)
        print(f"  {kind} server up in {time.time() - t0:.0f} s", flush=True)
        proc.url = url
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of this process, or of process `pid` (Linux)."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def timed_generate(engine, prompts, params, pid: int | None = None) -> tuple[int, float, float]:
    before, cpu0 = engine.usage.copy(), cpu_seconds(pid)
    t0 = time.perf_counter()
    engine.generate(prompts, params)
    return (engine.usage - before).generated_tokens, time.perf_counter() - t0, cpu_seconds(pid) - cpu0


def generation_rows(label: str, engine, prompts, max_tokens: int, sampled: int, pid: int | None = None) -> list[tuple]:
    """(label, mode, tokens, seconds, CPU seconds of the engine's process) per workload."""
    from ponder.generation import SamplingParams

    engine.generate(prompts[:2], SamplingParams(temperature=0.0, max_tokens=8))  # warm-up (compilation, caches)
    rows = []
    for mode, params, some in (("greedy n=1", SamplingParams(temperature=0.0, max_tokens=max_tokens), prompts),
                               ("n=8 T=0.8", SamplingParams(n=8, temperature=0.8, max_tokens=max_tokens, seed=0),
                                prompts[:sampled])):
        if not some:
            continue
        tokens, seconds, cpu = timed_generate(engine, some, params, pid)
        rows.append((label, mode, tokens, seconds, cpu))
        print(f"  {label:<34} {mode:<11} {tokens:>6} tokens {seconds:>7.1f} s {tokens / seconds:>7.1f} tokens/s "
              f"{tokens / cpu:>7.1f} per CPU s (load {os.getloadavg()[0]:.2f})", flush=True)
    return rows


def search_row(label: str, engine, policy_problems, task) -> dict:
    from ponder.rewards.base import VerifierScorer
    from ponder.search import SearchContext
    from ponder.search.base import SearchParams
    from ponder.search.driver import search_all

    ctx = SearchContext(engine, task, VerifierScorer(task, policy_problems))
    params = SearchParams(n=16, beam_width=4, temperature=0.7, max_tokens=80, max_step_tokens=24, seed=0)
    before = engine.usage.copy()
    out = search_all("beam", ctx, policy_problems, params)
    used = engine.usage - before
    row = {"engine": label, "accuracy": out["summary"]["accuracy"], "generated": used.generated_tokens,
           "prefill": used.prefill_tokens, "cached": used.cached_tokens, "wall_s": out["summary"]["wall_s"]}
    print(f"  {label:<30} acc {row['accuracy']:.3f} generated {row['generated']:>6} prefill {row['prefill']:>7} "
          f"cached {row['cached']:>7} computed {row['prefill'] - row['cached']:>7} {row['wall_s']:>6.1f} s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="torch,vllm,vllm-serve,ponder-serve",
                        help="comma-separated: torch, vllm (offline), vllm-serve, ponder-serve")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--sampled-prompts", type=int, default=16, help="prompts of the n=8 workload")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--concurrency", default="16",
                        help="comma-separated: requests in flight to a server, a row each (default 16)")
    parser.add_argument("--search-problems", type=int, default=8)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: generation, search")
    parser.add_argument("--output", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    engines = args.engines.split(",")
    if "vllm" in engines and "GOMP_CPU_AFFINITY" not in os.environ:
        os.execve(sys.executable, [sys.executable, *sys.argv],
                  {**os.environ, **VLLM_ENV, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"})

    import torch

    from ponder.generation import make_engine
    from ponder.models.convert import hf_folder
    from ponder.tasks import get_task

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; engines: {', '.join(engines)}; "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results = {"generation": [], "search": []}
    if "generation" not in args.skip:
        prompts = questions(args.prompts)
        smollm2 = str(hf_folder("smollm2"))
        print(f"generation: SmolLM2-135M-Instruct, {len(prompts)} chat prompts greedy, {args.sampled_prompts} with "
              f"n=8, <= {args.max_tokens} tokens")
        for name in engines:
            if name in ("torch", "vllm"):
                with make_engine(name, smollm2, seed=0) as engine:
                    results["generation"] += generation_rows(name, engine, prompts, args.max_tokens, args.sampled_prompts)
            else:
                with server(name.split("-")[0], smollm2, "smollm2") as proc:
                    for flight in [int(c) for c in args.concurrency.split(",")]:
                        with make_engine(proc.url, "smollm2", max_concurrency=flight) as engine:
                            results["generation"] += generation_rows(f"{name} (HTTP, {flight} in flight)", engine,
                                                                     prompts, args.max_tokens, args.sampled_prompts,
                                                                     proc.pid)
        rows = results["generation"]
        base = {mode: (tokens / seconds, tokens / cpu) for label, mode, tokens, seconds, cpu in rows
                if label == "torch"}
        print(f"\n{'engine':<34} {'mode':<11} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'vs torch':>9} "
              f"{'per CPU s':>10} {'vs torch':>9}")
        for label, mode, tokens, seconds, cpu in rows:
            wall, per_cpu = (f"{tokens / seconds / base[mode][0]:.2f}x", f"{tokens / cpu / base[mode][1]:.2f}x") \
                if mode in base else ("-", "-")
            print(f"{label:<34} {mode:<11} {tokens:>7} {seconds:>8.1f} {tokens / seconds:>9.1f} {wall:>9} "
                  f"{tokens / cpu:>10.1f} {per_cpu:>9}")

    if "search" not in args.skip:
        task = get_task("arith", instruction=False)
        problems = task.problems("test", n=args.search_problems, seed=1)
        policy = "runs/demo-arith/sft/model"
        tmp = None
        if not Path(policy, "config.json").exists():
            from ponder.models import model_from_spec

            tmp = tempfile.TemporaryDirectory()
            model, tok = model_from_spec("tiny:1m")
            model.save_pretrained(tmp.name)
            tok.save_pretrained(tmp.name)
            policy = tmp.name
        print(f"\nsearch: beam N=16 M=4, verifier scorer, {len(problems)} arith problems, policy {policy}")
        for name in engines:
            if name in ("torch", "vllm"):
                with make_engine(name, policy, seed=0) as engine:
                    results["search"].append(search_row(name, engine, problems, task))
            elif name == "ponder-serve":
                with server("ponder", policy, "policy") as proc, make_engine(proc.url, "policy") as engine:
                    results["search"].append(search_row("ponder serve (HTTP)", engine, problems, task))
            else:
                for cache in (True, False):
                    label = f"vllm serve (HTTP), prefix cache {'on' if cache else 'off'}"
                    # eager: the prefill counts are what this row measures, and it starts 1.5 min sooner
                    with server("vllm", policy, "policy", cache, eager=True) as proc, \
                            make_engine(proc.url, "policy") as engine:
                        results["search"].append(search_row(label, engine, problems, task))
        print(f"\n{'engine':<40} {'accuracy':>8} {'generated':>9} {'prefill':>8} {'cached':>8} {'computed':>8} {'wall s':>7}")
        for r in results["search"]:
            print(f"{r['engine']:<40} {r['accuracy']:>8.3f} {r['generated']:>9} {r['prefill']:>8} {r['cached']:>8} "
                  f"{r['prefill'] - r['cached']:>8} {r['wall_s']:>7.1f}")
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
