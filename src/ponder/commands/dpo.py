"""`ponder dpo`: DPO on preference pairs, or Step-DPO on pairs built with the task's step checker; resumable.

With `--data`, a TRL preference file (prompt, chosen, rejected) is learned as it is. Without
it, Step-DPO pairs are built from the policy's own samples: at the first wrong step of a
sampled solution, the chosen continuation is a correct next step and the rejected one is the
wrong step (Lai et al. 2024). A rerun with other options is refused.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ponder.commands.common import train_device
from ponder.config import require, to_dict
from ponder.models.device import DeviceOptions
from ponder.train.lora import LoraOptions


@dataclass
class Config(DeviceOptions, LoraOptions):
    run: str = "dpo"
    """run name: outputs go to <runs-dir>/<run>/ (a rerun with the same options resumes)"""
    runs_dir: str = "runs"
    """parent folder of run directories"""
    model: str = "runs/sft/model"
    """policy to start from (also the frozen reference), or a run name"""
    data: str | None = None
    """TRL preference file (prompt, chosen, rejected: texts or messages); without it, Step-DPO pairs are built from the task"""
    step: bool = False
    """Step-DPO: pairs are single steps (no EOS appended); implied when pairs are built from the task"""
    task: str | None = None
    """task for held-out evaluation and Step-DPO pairs (default: the model's ponder training task, else arith)"""
    task_args: dict = field(default_factory=dict)
    """task knobs, e.g. instruction=false"""
    n_problems: int = 500
    """training problems sampled to build Step-DPO pairs"""
    samples: int = 4
    """solutions sampled per problem to build Step-DPO pairs"""
    temperature: float = 1.0
    """sampling temperature for building pairs"""
    max_tokens: int = 128
    """generated tokens per solution, at most (pair building and evaluation)"""
    beta: float = 0.1
    """DPO beta: strength of the implicit KL to the reference"""
    steps: int = 100
    """optimiser steps"""
    batch_size: int = 16
    """pairs per micro-batch"""
    grad_accum: int = 1
    """micro-batches per optimiser step (under torchrun each process takes whole micro-batches:
    use a multiple of the number of processes)"""
    lr: float = 1e-4
    """peak learning rate"""
    warmup_steps: int = 10
    """linear warm-up steps"""
    max_len: int = 512
    """tokens per prompt + completion, at most"""
    n_eval: int = 200
    """held-out problems for greedy accuracy before and after (0 = none)"""
    engine: str = "torch"
    """engine that samples the policy (pairs, evaluation): torch, torch-bf16, vllm, or a server URL that takes weights"""
    seed: int = 0
    """seed of problem choice, sampling and data order"""


def run(cfg: Config, progress: bool = True) -> dict:
    from ponder.commands.common import input_file, resolve_model, resolve_task
    from ponder.eval.evaluate import greedy_accuracy
    from ponder.models import model_from_spec
    from ponder.runs import start_run, write_json, write_jsonl
    from ponder.tasks import get_task
    from ponder.train import distributed
    from ponder.train.dpo import read_preferences, train_dpo
    from ponder.train.loop import TrainConfig
    from ponder.train.policy_engine import policy_engine
    from ponder.train.step_dpo import step_dpo_pairs

    require(cfg, positive=("n_problems", "samples", "max_tokens", "steps", "batch_size", "grad_accum", "max_len", "lr"),
            non_negative=("temperature", "beta", "warmup_steps", "n_eval"))
    resolve_task(cfg, cfg.model, cfg.engine)
    task = get_task(cfg.task, **cfg.task_args)
    rows = read_preferences(input_file(cfg.data, "--data")) if cfg.data else None
    model, tokenizer = model_from_spec(resolve_model(cfg.model), seed=cfg.seed)
    run_dir = Path(cfg.runs_dir) / cfg.run
    distributed.init()  # under torchrun: rank 0 writes the run directory, the others wait for it
    distributed.on_main(lambda: start_run(run_dir, to_dict(cfg), "dpo"))
    gen = policy_engine(cfg.engine, model, tokenizer, run_dir, seed=cfg.seed)
    step = cfg.step or rows is None
    if rows is None:
        cache = run_dir / "pairs.jsonl"

        def build_pairs():  # on rank 0 alone under torchrun; the others get its pairs
            if cache.exists():  # a resumed run trains on the pairs it built the first time
                return read_preferences(cache)
            problems = task.problems("train", n=cfg.n_problems, seed=cfg.seed)
            built = step_dpo_pairs(task, problems, gen, cfg.samples, cfg.temperature, cfg.max_tokens, cfg.seed)
            if not built:
                raise ValueError("the model made no step errors on the sampled problems: no Step-DPO pairs to learn from")
            write_jsonl(cache, built)
            return built

        rows = distributed.on_main(build_pairs)
    held_out = task.problems("test", n=cfg.n_eval, seed=cfg.seed) if cfg.n_eval else []
    eval_fn = (lambda m: {"accuracy": greedy_accuracy(gen, task, held_out, cfg.max_tokens, m)}) if held_out else None
    initial_path = run_dir / "initial_eval.json"

    def initial_eval():  # on rank 0 alone; kept, so a resumed run still reports where it started
        if eval_fn and not initial_path.exists():
            write_json(initial_path, {"accuracy": eval_fn(model)["accuracy"]})

    distributed.on_main(initial_eval)
    tc = TrainConfig(lr=cfg.lr, max_steps=cfg.steps, warmup_steps=cfg.warmup_steps, grad_accum=cfg.grad_accum,
                     seed=cfg.seed, eval_every=0, save_every=max(cfg.steps // 5, 1), log_every=max(1, cfg.steps // 50),
                     **train_device(cfg))
    final = train_dpo(model, tokenizer, rows, run_dir, tc, beta=cfg.beta, batch_size=cfg.batch_size,
                      lora=cfg.lora(), lora_merge=cfg.lora_merge,
                      max_len=cfg.max_len, append_eos=not step, eval_fn=eval_fn, progress=progress)
    summary = {"run_dir": str(run_dir), "model_dir": str(run_dir / "model"), "step_dpo": step, "pairs": len(rows),
               **final}
    if initial_path.exists():
        summary["initial_eval/accuracy"] = json.loads(initial_path.read_text())["accuracy"]
    if distributed.is_main():
        write_json(run_dir / "summary.json", summary)
    return summary
