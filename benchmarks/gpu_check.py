"""The GPU check: ponder's device paths on a real GPU, printed as one table (`make gpu-check`).

    .venv/bin/python benchmarks/gpu_check.py                   # on cuda, about 5 minutes on one GPU
    .venv/bin/python benchmarks/gpu_check.py --device cpu --quick   # the script itself, smoke-run on a CPU

Rows:

1. `tests/test_devices.py` with PONDER_TEST_DEVICE set to the device: SFT (through the CLI),
   a PRM and DPO, RL (GRPO, PPO with a critic, process GRPO, LoRA with a KL reward), the torch
   engine's generate / logprobs / prefix cache and a beam search, each against the same run
   on the CPU (losses and weights within GPU float tolerance; what depends on random draws
   only for running, since CUDA's generators draw other streams than the CPU's); plus bf16
   autocast and gradient checkpointing. One row per test: passed or the failure's last line.
2. SmolLM2-135M-Instruct, GRPO for `--rl-steps` steps on `add_words` (8 prompts x 8 samples,
   at most 128 tokens, the outcome verifier as reward), the policy, the rollout engine and the
   optimiser on the device: seconds per step, the reward, the loss, peak GPU memory.
3. SmolLM2 generation on the device: 64 chat prompts, greedy, at most 128 tokens, one batch:
   tokens/s of ponder's torch engine and of `model.generate` (the same prompts, left-padded),
   their ratio, and how many greedy answers agree token for token.

A run's table, with the card's name and the date, goes to benchmarks/results/ (one H100:
gpu_check_h100.md) and is linked from docs/your-model-your-gpu.md.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def device_tests(device: str, quick: bool) -> list[tuple[str, str, str]]:
    """(check, result, detail) per test of tests/test_devices.py run on `device`."""
    env = dict(os.environ, PONDER_TEST_DEVICE=device if device != "cpu" else "lazy", PONDER_LAZY_DEVICE="1")
    args = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "test_devices.py"), "-rA", "-q", "-W", "ignore",
            "-p", "no:cacheprovider"]
    if quick:
        args += ["-k", "bad_devices or mixed"]
    out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env).stdout
    rows = []
    for line in out.splitlines():
        m = re.match(r"^(PASSED|FAILED|ERROR|SKIPPED) tests/test_devices.py::(\S+)(?: - (.*))?", line)
        if m:
            rows.append((f"test_devices {m.group(2)}", m.group(1).lower(), (m.group(3) or "")[:80]))
    if not rows:
        rows.append(("test_devices", "error", out.strip().splitlines()[-1][:80] if out.strip() else "no output"))
    return rows


def smollm2_grpo(device: str, steps: int, prompts: int, group: int, max_tokens: int, runs: Path) -> tuple:
    import json

    import torch

    from ponder.models import load_model
    from ponder.rewards.functions import reward_functions
    from ponder.tasks import get_task
    from ponder.train.rl import RLConfig, RLTrainer

    task = get_task("add_words")
    model, tokenizer = load_model("smollm2")
    cfg = RLConfig(steps=steps, prompts_per_step=prompts, group_size=group, max_tokens=max_tokens, lr=1e-5,
                   eval_every=0, save_every=0, device=device, seed=0)
    run_dir = runs / "gpu-check-grpo"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    trainer = RLTrainer(model, tokenizer, task, task.problems("train", n=steps * prompts, seed=0), [],
                        reward_functions(["outcome"], task, max_tokens), cfg, run_dir, progress=False)
    t0 = time.perf_counter()
    trainer.train()
    per_step = (time.perf_counter() - t0) / steps
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in records if "loss" in r]
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else float("nan")
    finite = all(r["loss"] == r["loss"] for r in records)
    return per_step, [round(r["reward"], 3) for r in records], finite, peak


def smollm2_generation(device: str, prompts: int, max_tokens: int) -> tuple:
    """(ponder tokens/s, model.generate tokens/s, answers equal, answers)."""
    import torch

    from ponder.generation import SamplingParams, make_engine
    from ponder.models import load_model
    from ponder.tasks import get_task

    model, tokenizer = load_model("smollm2", device=device)
    task = get_task("add_words")
    texts = [task.prompt(p) for p in task.problems("test", n=prompts, seed=0)]
    engine = make_engine("torch", model, tokenizer=tokenizer, batch_size=prompts)
    ids = engine.prompt_ids(texts)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    engine.generate(ids[:2], SamplingParams(temperature=0, max_tokens=4))  # warm-up
    sync()
    t0 = time.perf_counter()
    ours = engine.generate(ids, SamplingParams(temperature=0, max_tokens=max_tokens))
    sync()
    ours_s = time.perf_counter() - t0
    ours_tokens = sum(s.num_tokens for [s] in ours)

    width = max(len(p) for p in ids)
    pad = tokenizer.pad_token_id
    batch = torch.tensor([[pad] * (width - len(p)) + p for p in ids], device=model.device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in ids], device=model.device)
    with torch.inference_mode():
        model.generate(input_ids=batch[:2], attention_mask=mask[:2], max_new_tokens=4, do_sample=False)
        sync()
        t0 = time.perf_counter()
        out = model.generate(input_ids=batch, attention_mask=mask, max_new_tokens=max_tokens, do_sample=False,
                             pad_token_id=pad)
        sync()
    theirs_s = time.perf_counter() - t0
    eos = engine.eos_ids
    theirs, theirs_tokens = [], 0
    for row in out[:, width:].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        theirs.append(row[:cut])
        theirs_tokens += cut
    equal = sum(s.token_ids == t for [s], t in zip(ours, theirs))
    return ours_tokens / ours_s, theirs_tokens / theirs_s, equal, len(ids)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N (or cpu to smoke-run the script)")
    parser.add_argument("--quick", action="store_true", help="a short run: two device tests, 1 RL step, 8 prompts")
    parser.add_argument("--rl-steps", type=int, default=5)
    parser.add_argument("--runs-dir", default=str(ROOT / "runs"))
    parser.add_argument("--no-device-tests", action="store_true",
                        help="skip row 1 (tests/test_devices.py), e.g. when it ran on its own already")
    args = parser.parse_args()
    import torch

    card = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    rows = [] if args.no_device_tests else device_tests(args.device, args.quick)
    for row in rows:
        print(" | ".join(row), flush=True)
    steps = 1 if args.quick else args.rl_steps
    prompts = 2 if args.quick else 8
    check = f"SmolLM2 GRPO, {steps} steps x {prompts} prompts"
    try:  # a failing row is a row of the table, not the end of the check
        per_step, rewards, finite, peak = smollm2_grpo(args.device, steps, prompts, 4 if args.quick else 8,
                                                       32 if args.quick else 128, Path(args.runs_dir))
        rows.append((check, "passed" if finite else "FAILED",
                     f"{per_step:.1f} s/step, rewards {rewards}, peak {peak:.2f} GiB"))
    except Exception as e:  # noqa: BLE001
        rows.append((check, "error", f"{type(e).__name__}: {e}"[:120]))
    print(" | ".join(rows[-1]), flush=True)
    n = 8 if args.quick else 64
    check = f"SmolLM2 generation, {n} prompts greedy"
    try:
        ours, theirs, equal, n = smollm2_generation(args.device, n, 32 if args.quick else 128)
        rows.append((check, "passed" if equal >= 0.9 * n else "CHECK",
                     f"ponder {ours:.0f} tok/s, model.generate {theirs:.0f} tok/s ({ours / theirs:.2f}x); "
                     f"{equal}/{n} answers equal"))
    except Exception as e:  # noqa: BLE001
        rows.append((check, "error", f"{type(e).__name__}: {e}"[:120]))
    print(f"\nponder GPU check on {args.device} ({card}), torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}\n")
    width = max(len(r[0]) for r in rows)
    print(f"| {'check'.ljust(width)} | result | detail |\n|{'-' * (width + 2)}|--------|--------|")
    for check, result, detail in rows:
        print(f"| {check.ljust(width)} | {result} | {detail} |")
    failed = [r for r in rows if r[1] in ("failed", "error", "FAILED", "CHECK")]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
