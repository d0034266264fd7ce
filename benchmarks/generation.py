"""Throughput of TorchGenerator, both decode schedules, against Hugging Face `model.generate`, one process.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/generation.py              # tiny + smollm2, batch 64
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/generation.py --models tiny --max-tokens 64

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
import os
import random
import statistics
import time

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,smollm2", help="comma-separated: tiny, smollm2")
    parser.add_argument("--workloads", default="one-batch,varied",
                        help="comma-separated: one-batch (--batch prompts), varied (--varied prompts)")
    parser.add_argument("--batch", type=int, default=64, help="rows decoded together")
    parser.add_argument("--varied", type=int, default=256, help="prompts of the varied-length workload")
    parser.add_argument("--max-tokens", type=int, default=128, help="generated tokens per prompt, at most")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per engine; the median counts")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))

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
