"""`ponder iterate`: expert iteration (STaR / ReST-EM): sample, keep verified solutions, fine-tune; held-out accuracy per round; resumable.

Each round samples `samples` solutions per training problem from the current model, keeps
those the task's verifier accepts (the E-step, `ponder.train.iterate.verified_rows`), and
fine-tunes on them with the SFT loss (the M-step). Rounds draw fresh problems. With
`from_base` each round starts again from the first model (ReST-EM); otherwise from the
previous round's. A rerun skips finished rounds; a rerun with other options is refused.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ponder.commands.common import train_device
from ponder.config import ConfigError, require, to_dict
from ponder.models.device import DeviceOptions
from ponder.seeds import derive
from ponder.train.lora import LoraOptions


@dataclass
class Config(DeviceOptions, LoraOptions):
    run: str = "iterate"
    """run name: outputs go to <runs-dir>/<run>/ (a rerun with the same options resumes)"""
    runs_dir: str = "runs"
    """parent folder of run directories"""
    model: str = "runs/sft/model"
    """model to start from, or a run name"""
    task: str | None = None
    """task with a verifier (default: the model's ponder training task, else arith)"""
    task_args: dict = field(default_factory=dict)
    """task knobs, e.g. instruction=false"""
    rounds: int = 3
    """sample -> filter -> SFT rounds"""
    n_problems: int = 500
    """training problems per round"""
    samples: int = 4
    """solutions sampled per problem"""
    temperature: float = 1.0
    """sampling temperature"""
    max_tokens: int = 128
    """generated tokens per solution, at most"""
    sft_steps: int = 100
    """SFT optimiser steps per round"""
    batch_size: int = 32
    """SFT batch size"""
    lr: float = 1e-3
    """SFT peak learning rate"""
    from_base: bool = False
    """fine-tune the starting model each round (ReST-EM) instead of the previous round's"""
    n_eval: int = 200
    """held-out problems for greedy accuracy per round"""
    engine: str = "torch"
    """engine that samples the policy: torch, torch-bf16, vllm, or a server URL that takes weights"""
    seed: int = 0
    """seed of problem choice, sampling and training"""


def run(cfg: Config, progress: bool = True) -> dict:
    from ponder.commands.common import resolve_model, resolve_task
    from ponder.eval.evaluate import greedy_accuracy
    from ponder.generation.base import SamplingParams
    from ponder.models import load_model, model_from_spec
    from ponder.runs import start_run, write_json, write_jsonl
    from ponder.tasks import get_task
    from ponder.train.iterate import verified_rows
    from ponder.train.loop import TrainConfig
    from ponder.train.policy_engine import policy_engine
    from ponder.train.sft import train_sft

    require(cfg, positive=("rounds", "n_problems", "samples", "max_tokens", "sft_steps", "batch_size", "n_eval", "lr"),
            non_negative=("temperature",))
    if cfg.lora_r and not cfg.lora_merge:
        raise ConfigError("--no-lora-merge: expert iteration merges the adapters after every round (the next "
                          "round samples from the improved model); drop the flag")
    resolve_task(cfg, cfg.model, cfg.engine)
    task = get_task(cfg.task, **cfg.task_args)
    train = task.problems("train", n=cfg.n_problems * cfg.rounds, seed=cfg.seed)
    held_out = task.problems("test", n=cfg.n_eval, seed=cfg.seed)
    start = resolve_model(cfg.model)
    model, tokenizer = model_from_spec(start, seed=cfg.seed)
    run_dir = Path(cfg.runs_dir) / cfg.run
    start_run(run_dir, to_dict(cfg), "iterate", extendable=("rounds",))
    log = run_dir / "rounds.jsonl"
    done = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
    gen = policy_engine(cfg.engine, model, tokenizer, run_dir, seed=cfg.seed)
    if not done:
        done = [{"round": 0, "accuracy": greedy_accuracy(gen, task, held_out, cfg.max_tokens, model)}]
        write_jsonl(log, done)
    for r in range(1, cfg.rounds + 1):
        round_dir = run_dir / f"round_{r}"
        if any(rec["round"] == r for rec in done):
            model, tokenizer = load_model(str(round_dir / "model"))
            continue
        if cfg.from_base and r > 1:
            model, tokenizer = model_from_spec(start, seed=cfg.seed)
        gen.update_weights(model.named_parameters())  # this round's starting policy
        problems = train[(r - 1) * cfg.n_problems: r * cfg.n_problems]
        data = round_dir / "data.jsonl"
        round_dir.mkdir(exist_ok=True)
        if data.exists():
            rows = [json.loads(line) for line in data.read_text().splitlines()]
            sampled = len(problems) * cfg.samples
        else:
            sp = SamplingParams(n=cfg.samples, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                                seed=derive(cfg.seed, "iterate-samples", r))
            rows, sampled = verified_rows(task, problems, gen.generate([task.prompt(p) for p in problems], sp))
            write_jsonl(data, rows)
        if not rows:
            raise ValueError(f"round {r}: no sample was verified correct; nothing to fine-tune on "
                             "(raise samples or temperature, or start from a stronger model)")
        tc = TrainConfig(lr=cfg.lr, max_steps=cfg.sft_steps, warmup_steps=min(10, cfg.sft_steps), eval_every=0,
                         save_every=max(cfg.sft_steps // 2, 1), seed=cfg.seed + r,
                         **train_device(cfg))
        # LoRA adapters are merged after every round: the next round adapts the improved model
        train_sft(model, tokenizer, rows, round_dir, tc, batch_size=cfg.batch_size, progress=progress, lora=cfg.lora())
        model.eval()
        acc = greedy_accuracy(gen, task, held_out, cfg.max_tokens, model)
        done.append({"round": r, "kept": len(rows), "sampled": sampled, "kept_fraction": len(rows) / max(sampled, 1),
                     "accuracy": acc})
        write_jsonl(log, done)
    summary = {"run_dir": str(run_dir), "model_dir": str(run_dir / f"round_{cfg.rounds}" / "model"), "task": cfg.task,
               "rounds": done}
    write_json(run_dir / "summary.json", summary)
    return summary


def show(out: dict, console) -> None:
    from rich.table import Table

    table = Table(title=f"expert iteration: {out['task']}")
    for col in ("round", "kept / sampled", "held-out greedy accuracy"):
        table.add_column(col)
    for rec in out["rounds"]:
        table.add_row(str(rec["round"]), f"{rec.get('kept', '-')} / {rec.get('sampled', '-')}", f"{rec['accuracy']:.3f}")
    console.print(table)
    print(json.dumps(out))
