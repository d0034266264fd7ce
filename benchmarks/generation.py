"""Throughput of TorchGenerator, both decode schedules, against Hugging Face `model.generate`, one process.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/generation.py              # tiny + smollm2, batch 64
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/generation.py --models tiny --max-tokens 64
    .venv/bin/python benchmarks/generation.py --headline    # SmolLM2: generate, ponder, vLLM; fp32 and bf16

`--headline`: the SmolLM2-135M-Instruct workload of the engine comparison (64 chat prompts,
greedy, at most 128 tokens, one batch) through `model.generate`, ponder's torch engine and,
when the vLLM venv exists (`make setup-engines`), offline vLLM - each in fp32 and in bf16 (`model.generate` and vLLM
on a bf16 copy of the model, ponder as `torch-bf16`: Linear layers in bf16 from prepacked
weights, the rest fp32). Per row: tokens/s and its ratio to fp32 `model.generate`, the share
of the compute bound it reaches (2 x the Linear layers' parameters per token, at the
GFLOP/s a large matmul of that dtype reaches here, measured in the same run), the memory
the engine adds when built and warmed up and the peak it adds during a run (resident set size), and how
many greedy answers equal fp32 `model.generate`'s token for token. Then the bf16 effect on
answers that are checked: greedy accuracy on `--accuracy-n` held-out `add_words` problems,
fp32 against bf16, per engine. The torch rows are timed interleaved in this process; the
vLLM rows after them, in a child process of the vLLM venv (vLLM pins the OpenMP threads of
the process it runs in). To leave a core to other work, run it under `taskset -c 1`: every
row then gets that one core.

Three runners get the same tokenized prompts (arithmetic word questions of varied length,
through the chat template when the tokenizer has one), the same batch and the same
`max_tokens`: `model.generate` (over chunks of `--batch` prompts, longest first), ponder
chunked (`continuous=False`: a chunk's prompts join only an empty batch) and ponder
continuous (waiting prompts join as rows free up). tokens/s counts the tokens each produced
(up to and including EOS, or up to the stop string), so padding that `generate` computes for
finished rows is not counted as output. Before timing, each ponder schedule's greedy outputs
are compared with `model.generate`'s token for token; timed runs are interleaved, in an
order that rotates each round, and the median counts.

Workloads:
- one-batch: `--batch` prompts, one batch (no prompt waits, so both schedules decode alike).
- varied: `--varied` prompts (256) through a batch of `--batch`, answers of widely varying
  length - where a chunk thins out as its rows finish and continuous batching refills it.

Settings per model:
- smollm2 (SmolLM2-135M-Instruct): greedy, EOS ends a row; answer lengths vary naturally.
- tiny (random-init '4m' Llama, char tokenizer): random weights make greedy text loop and
  EOS rare, so the timed runs sample at temperature 1 with stop strings, which end rows at
  varied points (one-batch: ".", "?" or newline, up to max_tokens; varied: "." only, up to
  2 x max_tokens, lengths 3 to 256); both runners use the same stop strings
  (`generate(stop_strings=...)`), and the two schedules' seeded samples are compared. The
  greedy check uses the same prompts and stop strings at temperature 0.
"""
from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import threading
import time
from pathlib import Path

import torch

from ponder.generation import SamplingParams, make_engine
from ponder.generation.torch_engine import TorchGenerator  # type of the engine measured

TINY_STOPS = [".", "?", "\n"]
# The varied workload: many prompts whose sampled answers end anywhere from 3 to 2 * max_tokens
# tokens (the random tiny model emits a "." rarely), where rows of a fixed chunk finish at
# very different steps.
VARIED_STOPS = ["."]
SCHEDULES = {"ponder chunked": False, "ponder continuous": True}


def questions(n: int, seed: int = 0) -> list[str]:
    """`n` arithmetic word questions of varied length and difficulty."""
    rng = random.Random(seed)
    names = ["Ana", "Bo", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana"]
    things = ["apples", "marbles", "stickers", "books", "coins", "pencils"]
    templates = [
        "What is {a} + {b}?",
        "Compute {a} * {b}. Answer with the number only.",
        "{x} has {a} {t} and gives away {b}. How many {t} does {x} have left?",
        "{x} buys {a} bags with {b} {t} in each bag, then loses {c} {t}. How many {t} are left? Explain step by step.",
        "A shop sells {t} at {a} dollars each. {x} buys {b} of them and pays with a {c}0 dollar note. "
        "How much change does {x} get? Show your reasoning.",
        "Is {a} a prime number? Answer yes or no.",
        "What is the remainder when {a}{b} is divided by {c}?",
        "{x} reads {a} pages on Monday, {b} pages on Tuesday and twice as many on Wednesday as on Monday. "
        "How many pages did {x} read in total?",
    ]
    out = []
    for i in range(n):
        t = templates[i % len(templates)]
        out.append(
            t.format(
                a=rng.randint(2, 99), b=rng.randint(2, 99), c=rng.randint(2, 9), x=rng.choice(names), t=rng.choice(things)
            )
        )
    return out


def run_hf(model, tokenizer, engine: TorchGenerator, prompts, params: SamplingParams):
    """`model.generate` on the same left-padded token ids as the engine; returns the
    produced token ids per prompt (cut after EOS / the stop string) and seconds."""
    start = time.perf_counter()
    ids = engine.encode(prompts)
    batch = tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
    kwargs = dict(max_new_tokens=params.max_tokens, pad_token_id=engine.pad_id)
    if params.temperature == 0:
        kwargs.update(do_sample=False)
    else:
        kwargs.update(do_sample=True, temperature=params.temperature, top_k=0, top_p=1.0)
    if params.stop:
        kwargs.update(stop_strings=params.stop, tokenizer=tokenizer)
    with torch.inference_mode():
        out = model.generate(**batch, **kwargs)
    seconds = time.perf_counter() - start
    new = out[:, batch["input_ids"].shape[1] :].tolist()
    return [_cut(row, engine, params.stop) for row in new], seconds


def _cut(row: list[int], engine: TorchGenerator, stops: list[str]) -> list[int]:
    """A `generate` row up to and including its first EOS or first completed stop string."""
    for k, tok in enumerate(row):
        if tok in engine.eos_ids:
            return row[: k + 1]
        if stops and any(s in engine.tokenizer.decode(row[: k + 1]) for s in stops):
            return row[: k + 1]
    return row


def run_engine(engine: TorchGenerator, prompts, params: SamplingParams):
    start = time.perf_counter()
    samples = engine.generate(prompts, params)
    seconds = time.perf_counter() - start
    return [s[0].token_ids for s in samples], seconds


def run_hf_chunks(model, tokenizer, engine: TorchGenerator, prompts, params: SamplingParams, batch: int):
    """`model.generate` over `prompts` in chunks of `batch`, longest prompts first (as the
    engine orders them, so both pad alike); returns token ids per prompt and seconds."""
    order = sorted(range(len(prompts)), key=lambda i: -len(engine.encode([prompts[i]])[0]))
    out: list[list[int]] = [[] for _ in prompts]
    seconds = 0.0
    for k in range(0, len(order), batch):
        chunk = order[k : k + batch]
        ids, t = run_hf(model, tokenizer, engine, [prompts[i] for i in chunk], params)
        seconds += t
        for i, row in zip(chunk, ids):
            out[i] = row
    return out, seconds


def bench(name: str, workload: str, model, tokenizer, prompts, timed: SamplingParams, args) -> list[tuple]:
    """One workload: the greedy check of each ponder schedule against `model.generate`, then
    timed runs of all three, interleaved (the order rotates each round, so a shared machine's
    load falls on all alike); the median run of each counts."""
    engines = {label: make_engine("torch", model, tokenizer=tokenizer, batch_size=args.batch, continuous=c)
               for label, c in SCHEDULES.items()}
    for engine in engines.values():
        engine.generate(prompts[:2], SamplingParams(temperature=0, max_tokens=2))  # warm-up
    hf_engine = engines["ponder chunked"]
    greedy = SamplingParams(temperature=0, max_tokens=args.max_tokens, stop=timed.stop, logprobs=False)
    theirs, _ = run_hf_chunks(model, tokenizer, hf_engine, prompts, greedy, args.batch)
    check = {"model.generate": "-"}
    for label, engine in engines.items():
        ours, _ = run_engine(engine, prompts, greedy)
        same = sum(a == b for a, b in zip(ours, theirs))
        check[label] = f"{same}/{len(prompts)}"
    runners = {
        "model.generate": lambda: run_hf_chunks(model, tokenizer, hf_engine, prompts, timed, args.batch),
        **{label: (lambda e=engine: run_engine(e, prompts, timed)) for label, engine in engines.items()},
    }
    runs: dict[str, list[tuple[int, float]]] = {label: [] for label in runners}
    outputs: dict[str, list[list[int]]] = {}
    labels = list(runners)
    for r in range(args.repeats):
        for label in labels[r % len(labels):] + labels[: r % len(labels)]:
            ids, seconds = runners[label]()
            runs[label].append((sum(map(len, ids)), seconds))
            outputs[label] = ids
    if timed.temperature > 0:  # seeded samples must not depend on the schedule
        same = sum(a == b for a, b in zip(outputs["ponder chunked"], outputs["ponder continuous"]))
        print(f"[{name} {workload}] seeded samples identical, chunked vs continuous: {same}/{len(prompts)}")
    lengths = sorted(len(a) for a in outputs["ponder continuous"])
    print(f"[{name} {workload}] output lengths min/median/max {lengths[0]}/{lengths[len(lengths) // 2]}/{lengths[-1]}",
          flush=True)
    mode = "greedy" if timed.temperature == 0 else f"T=1, stop={timed.stop!r}"
    table = []
    for label, measured in runs.items():
        rate = statistics.median(tokens / seconds for tokens, seconds in measured)
        tokens, seconds = sorted(measured, key=lambda m: m[0] / m[1])[len(measured) // 2]
        table.append((label, name, workload, len(prompts), mode, tokens, seconds, rate, check[label]))
    return table


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """The largest resident set size seen (sampled every 5 ms) while the block runs."""

    def __enter__(self):
        self.start = self.peak = rss_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_mib())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())


def matmul_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """What a large square matmul of `dtype` reaches on this machine's threads (the best of
    `repeats`): the compute bound a decode step's matmuls could at most reach."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def headline(args) -> None:
    """The SmolLM2 engine comparison (see the module docstring)."""
    from ponder.models import load_model

    model, tokenizer = load_model("smollm2")
    model.eval()
    flops_per_token = 2 * sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    peak = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    print(f"compute bound: fp32 matmul {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s; "
          f"{flops_per_token / 1e6:.0f} MFLOP per token (2 x Linear parameters) -> "
          f"{peak['fp32'] * 1e9 / flops_per_token:.0f} / {peak['bf16'] * 1e9 / flops_per_token:.0f} tokens/s")
    prompts = questions(args.batch)
    greedy = SamplingParams(temperature=0, max_tokens=args.max_tokens, logprobs=False)
    base = make_engine("torch", model, tokenizer=tokenizer, batch_size=args.batch)  # tokenizes for generate
    reference, _ = run_hf(model, tokenizer, base, prompts, greedy)

    runners: dict[tuple, tuple] = {}  # (label, dtype) -> (dtype, run function, engine build MiB)

    def add(label: str, dtype: str, build):
        """Build a runner and warm it up (compilation, caches, weight copies): what that
        leaves resident is the engine's memory."""
        before = rss_mib()
        run = build()
        run()
        runners[(label, dtype)] = (dtype, run, rss_mib() - before)

    def hf(m):
        return lambda: run_hf(m, tokenizer, base, prompts, greedy)

    def ponder(spec, m, **kw):
        engine = make_engine(spec, m, tokenizer=tokenizer, batch_size=args.batch, **kw)
        return lambda: run_engine(engine, prompts, greedy)

    bf16: list = []  # the bf16 copy of the model, made inside its runner's memory count
    add("model.generate", "fp32", lambda: hf(model))
    add("ponder torch", "fp32", lambda: ponder("torch", model))
    add("model.generate", "bf16", lambda: hf(bf16.append(copy.deepcopy(model).to(torch.bfloat16)) or bf16[0]))
    add("ponder torch-bf16", "bf16", lambda: ponder("torch-bf16", model))
    runs: dict[tuple, list] = {key: [] for key in runners}
    keys = list(runners)
    for r in range(args.repeats):
        for key in keys[r % len(keys):] + keys[: r % len(keys)]:
            with PeakRSS() as mem:
                ids, seconds = runners[key][1]()
            runs[key].append((sum(map(len, ids)), seconds, mem.peak - mem.start, ids))
    vllm_python = Path(args.vllm_python) if args.vllm_python else None
    if vllm_python is not None and vllm_python.exists():
        for dtype, row in vllm_rows(vllm_python, args).items():
            runners[("vllm (offline)", dtype)] = (dtype, None, row["engine_mib"])
            runs[("vllm (offline)", dtype)] = [tuple(r) for r in row["runs"]]
    else:
        print(f"no vLLM rows: {args.vllm_python or 'no --vllm-python'} not found (`make setup-engines` builds it)")
    keys = list(runners)
    gen_rate = statistics.median(t / s for t, s, _, _ in runs[("model.generate", "fp32")])
    print(f"\nSmolLM2-135M-Instruct, {len(prompts)} chat prompts, greedy, <= {args.max_tokens} tokens, "
          f"{torch.get_num_threads()} threads")
    print(f"{'engine':<20} {'dtype':<5} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'vs generate fp32':>16} "
          f"{'of bound':>8} {'engine MiB':>10} {'run MiB':>8} {'greedy = fp32 generate':>22}")
    for key in keys:
        label, dtype = key
        tokens, seconds, mem, ids = sorted(runs[key], key=lambda m: m[0] / m[1])[len(runs[key]) // 2]
        rate = tokens / seconds
        same = sum(a == b for a, b in zip(ids, reference))
        print(f"{label:<20} {dtype:<5} {tokens:>7} {seconds:>8.2f} {rate:>9.1f} {rate / gen_rate:>15.2f}x "
              f"{rate * flops_per_token / (peak[dtype] * 1e9):>8.0%} {runners[key][2]:>10.0f} {mem:>8.0f} "
              f"{same:>15}/{len(prompts)}")
    if args.accuracy_n:
        accuracy(model, tokenizer, bf16[0], args)


def vllm_rows(python: Path, args) -> dict:
    """Offline vLLM's rows, fp32 and bf16, measured by a child process of the vLLM venv's
    interpreter (`--vllm-worker`), after the torch rows and never beside them: vLLM pins its
    OpenMP threads to the cores from the start, which would also pin this process's torch
    runners. Same prompts, same cores, same limits."""
    import json
    import subprocess

    from engines import VLLM_ENV

    env = {**os.environ, **VLLM_ENV, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "HF_HUB_OFFLINE": "1"}
    cmd = [str(python), __file__, "--vllm-worker", "--batch", str(args.batch), "--max-tokens", str(args.max_tokens),
           "--repeats", str(args.repeats)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"the vLLM rows failed ({' '.join(cmd)}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def vllm_worker(args) -> None:
    """The vLLM side of --headline: per dtype, load, warm up, time `--repeats` runs; one JSON
    line on stdout."""
    import json

    from ponder.models.convert import hf_folder

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    folder = str(hf_folder("smollm2"))
    prompts = questions(args.batch)
    greedy = SamplingParams(temperature=0, max_tokens=args.max_tokens, logprobs=False)
    out = {}
    for dtype, name in (("fp32", "float32"), ("bf16", "bfloat16")):
        before = rss_mib()
        engine = make_engine("vllm", folder, dtype=name)
        run_engine(engine, prompts, greedy)
        built = rss_mib() - before
        runs = []
        for _ in range(args.repeats):
            with PeakRSS() as mem:
                ids, seconds = run_engine(engine, prompts, greedy)
            runs.append((sum(map(len, ids)), seconds, mem.peak - mem.start, ids))
        out[dtype] = {"engine_mib": built, "runs": runs}
        engine.close()
    print(json.dumps(out))


def accuracy(model, tokenizer, bf16_model, args) -> None:
    """Greedy accuracy on held-out add_words problems, fp32 against bf16, per engine."""
    from ponder.tasks import get_task

    task = get_task("add_words")
    problems = task.problems("test", n=args.accuracy_n, seed=0)
    texts = [task.prompt(p) for p in problems]
    params = SamplingParams(temperature=0, max_tokens=64, logprobs=False)
    rows = []
    for label, engine in (("ponder torch fp32", make_engine("torch", model, tokenizer=tokenizer)),
                          ("ponder torch-bf16", make_engine("torch-bf16", model, tokenizer=tokenizer)),
                          ("ponder torch, bf16 model", make_engine("torch", bf16_model, tokenizer=tokenizer))):
        out = engine.generate(texts, params)
        rows.append((label, [task.is_correct(p, o[0].text) for p, o in zip(problems, out)]))
    exact = rows[0][1]
    print(f"\nadd_words, {len(problems)} held-out problems, greedy <= 64 tokens:")
    for label, correct in rows:
        diff = [float(a) - float(b) for a, b in zip(correct, exact)]
        mean = sum(diff) / len(diff)
        se = (sum((d - mean) ** 2 for d in diff) / (len(diff) - 1) / len(diff)) ** 0.5
        print(f"  {label:<26} accuracy {sum(correct) / len(correct):.3f}  vs fp32 {mean:+.3f} ± {se:.3f} (paired SE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,smollm2", help="comma-separated: tiny, smollm2")
    parser.add_argument("--workloads", default="one-batch,varied",
                        help="comma-separated: one-batch (--batch prompts), varied (--varied prompts)")
    parser.add_argument("--batch", type=int, default=64, help="rows decoded together")
    parser.add_argument("--varied", type=int, default=256, help="prompts of the varied-length workload")
    parser.add_argument("--max-tokens", type=int, default=128, help="generated tokens per prompt, at most")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per engine; the median counts")
    parser.add_argument("--headline", action="store_true",
                        help="the SmolLM2 comparison with model.generate (and vLLM when importable), fp32 and bf16")
    parser.add_argument("--vllm-python", default=str(Path(__file__).resolve().parents[1] / ".venv-vllm/bin/python"),
                        help="--headline: the interpreter of the vLLM venv that measures the vLLM rows")
    parser.add_argument("--vllm-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--accuracy-n", type=int, default=200,
                        help="--headline: held-out add_words problems for the bf16 accuracy check (0: none)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    if args.vllm_worker:
        return vllm_worker(args)
    if args.headline:
        return headline(args)

    from ponder.models import build_char_tokenizer, build_tiny_model, load_model

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, max_tokens {args.max_tokens}")
    table = []
    for name in args.models.split(","):
        if name == "tiny":
            tokenizer = build_char_tokenizer()
            model = build_tiny_model(tokenizer, "4m").eval()
        elif name == "smollm2":
            model, tokenizer = load_model("smollm2")
        else:
            raise SystemExit(f"unknown model {name!r}: expected tiny or smollm2")
        greedy = SamplingParams(temperature=0, max_tokens=args.max_tokens, stop=[], logprobs=False)
        for workload in args.workloads.split(","):
            if workload == "one-batch":
                timed = greedy if name != "tiny" else SamplingParams(
                    temperature=1.0, max_tokens=args.max_tokens, stop=TINY_STOPS, seed=0, logprobs=False)
                table += bench(name, workload, model, tokenizer, questions(args.batch), timed, args)
            elif workload == "varied":
                timed = greedy if name != "tiny" else SamplingParams(
                    temperature=1.0, max_tokens=2 * args.max_tokens, stop=VARIED_STOPS, seed=0, logprobs=False)
                table += bench(name, workload, model, tokenizer, questions(args.varied), timed, args)
            else:
                raise SystemExit(f"unknown workload {workload!r}: expected one-batch or varied")

    print(f"\n{'engine':<18} {'model':<8} {'workload':<10} {'prompts':>7} {'mode':<28} {'tokens':>7} "
          f"{'seconds':>8} {'tokens/s':>9} {'vs generate':>11} {'greedy same':>11}")
    for k, (engine, model, workload, n, mode, tokens, seconds, rate, same) in enumerate(table):
        base = table[k - k % 3][7]
        print(f"{engine:<18} {model:<8} {workload:<10} {n:>7} {mode:<28} {tokens:>7} {seconds:>8.2f} {rate:>9.1f} "
              f"{rate / base:>10.2f}x {same:>11}")
    for k in range(0, len(table), 3):
        print(f"{table[k][1]} {table[k][2]}: continuous / chunked tokens/s = {table[k + 2][7] / table[k + 1][7]:.2f}x")


if __name__ == "__main__":
    main()
