"""Throughput of TorchGenerator against Hugging Face `model.generate`, same settings, one process.

    .venv/bin/python benchmarks/generation.py                      # tiny + smollm2, batch 64
    .venv/bin/python benchmarks/generation.py --models tiny --max-tokens 64

Both engines get the same tokenized prompts (64 arithmetic word questions of varied length,
through the chat template when the tokenizer has one), the same batch and the same
`max_tokens`; tokens/s counts the tokens each engine actually produced (up to and including
EOS, or up to the stop string), so padding that `generate` computes for finished rows is not
counted as output. Before timing, greedy outputs of both engines are compared token for
token.

Settings per model:
- smollm2 (SmolLM2-135M-Instruct): greedy, EOS ends a row; answer lengths vary naturally.
- tiny (random-init '4m' Llama, char tokenizer): random weights make greedy text loop and
  EOS rare, so the timed run samples at temperature 1 with stop strings, which ends rows at
  varied points; both engines use the same stop strings (`generate(stop_strings=...)`).
  Its greedy check uses the same prompts at temperature 0.
"""
from __future__ import annotations

import argparse
import random
import time

import torch

from ponder.generation import SamplingParams, make_engine
from ponder.generation.torch_engine import TorchGenerator  # type of the engine measured

TINY_STOPS = [".", "?", "\n"]


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


def bench_model(name: str, model, tokenizer, args) -> list[tuple]:
    engine = make_engine("torch", model, tokenizer=tokenizer, batch_size=args.batch)
    prompts = questions(args.batch)
    greedy = SamplingParams(temperature=0, max_tokens=args.max_tokens, stop=[], logprobs=False)
    timed = greedy if name != "tiny" else SamplingParams(
        temperature=1.0, max_tokens=args.max_tokens, stop=TINY_STOPS, seed=0, logprobs=False
    )
    engine.generate(prompts[:2], SamplingParams(temperature=0, max_tokens=2))  # warm-up

    ours, t_ours = run_engine(engine, prompts, greedy)
    theirs, t_theirs = run_hf(model, tokenizer, engine, prompts, greedy)
    same = sum(a == b for a, b in zip(ours, theirs))
    lengths = sorted(len(a) for a in ours)
    print(
        f"[{name}] greedy identical to model.generate: {'yes' if same == len(prompts) else 'NO'} "
        f"({same}/{len(prompts)} prompts); lengths min/median/max {lengths[0]}/{lengths[len(lengths) // 2]}/{lengths[-1]}",
        flush=True,
    )
    # Timed runs, interleaved; the fastest run of each engine counts, since a shared
    # machine's background load only ever adds time. The greedy check is the first run
    # when the timed settings are greedy.
    runs_ours, runs_theirs = [], []
    if timed is greedy:
        runs_ours.append((sum(map(len, ours)), t_ours))
        runs_theirs.append((sum(map(len, theirs)), t_theirs))
    while len(runs_ours) < args.repeats:
        ours, t = run_engine(engine, prompts, timed)
        runs_ours.append((sum(map(len, ours)), t))
        theirs, t = run_hf(model, tokenizer, engine, prompts, timed)
        runs_theirs.append((sum(map(len, theirs)), t))
    mode = "greedy" if timed is greedy else f"T=1, stop={TINY_STOPS!r}"
    best = lambda runs: max(runs, key=lambda r: r[0] / r[1])  # noqa: E731
    return [("model.generate", name, mode, *best(runs_theirs)), ("TorchGenerator", name, mode, *best(runs_ours))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,smollm2", help="comma-separated: tiny, smollm2")
    parser.add_argument("--batch", type=int, default=64, help="prompts per batch (one batch each)")
    parser.add_argument("--max-tokens", type=int, default=128, help="generated tokens per prompt, at most")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per engine; the fastest counts")
    args = parser.parse_args()

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
        table += bench_model(name, model, tokenizer, args)

    print(f"\n{'engine':<16} {'model':<8} {'mode':<28} {'tokens':>7} {'seconds':>8} {'tokens/s':>9}")
    for engine, model, mode, tokens, seconds in table:
        print(f"{engine:<16} {model:<8} {mode:<28} {tokens:>7} {seconds:>8.2f} {tokens / seconds:>9.1f}")
    for i in range(0, len(table), 2):
        (_, model, _, n_hf, t_hf), (_, _, _, n_us, t_us) = table[i], table[i + 1]
        print(f"{model}: TorchGenerator / model.generate throughput = {(n_us / t_us) / (n_hf / t_hf):.2f}x")


if __name__ == "__main__":
    main()
