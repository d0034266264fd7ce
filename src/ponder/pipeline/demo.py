"""`ponder demo`: the main job as a pipeline of cached stages.

build (character tokenizer + tiny Llama) -> sft (reference solutions of `arith`) ->
eval (held-out greedy accuracy, pass@k, maj@k) -> report (summary.json, report.md, table).
Later stages (annotation, reward models, RL, test-time scaling) join the same list.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ponder.config import to_dict, write_yaml
from ponder.pipeline.report import write_report
from ponder.pipeline.stages import Stage, run_stages


@dataclass
class DemoConfig:
    task: str = "arith"
    """built-in task to learn"""
    task_args: dict = field(default_factory=lambda: {"instruction": False})
    """knobs passed to the task (e.g. num_ops, digits); the bare-expression prompt keeps the
    character-level model's sequences short"""
    model: str = "tiny:1m"
    """model to start from: tiny:<preset> builds one from scratch, or a local path"""
    n_train: int = 20000
    """training problems (reference solutions) for SFT"""
    sft_steps: int = 1500
    """SFT optimiser steps"""
    batch_size: int = 32
    """SFT batch size"""
    lr: float = 3e-3
    """SFT peak learning rate"""
    warmup_steps: int = 30
    """SFT warm-up steps"""
    eval_n: int = 300
    """held-out test problems"""
    eval_k: int = 8
    """samples per problem for pass@k / maj@k"""
    temperature: float = 0.7
    """sampling temperature for pass@k / maj@k"""
    max_tokens: int = 80
    """generated tokens per solution"""
    dev_n: int = 64
    """held-out problems for the periodic greedy eval during SFT"""
    seed: int = 0
    """seed for data, initialisation and sampling"""


QUICK = dict(n_train=3000, sft_steps=150, batch_size=16, eval_n=40, eval_k=4, dev_n=16)


def demo(run_dir: Path, cfg: DemoConfig, force: bool = False) -> dict:
    from ponder.tasks import get_task

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(run_dir / "config.yaml", to_dict(cfg))
    task = get_task(cfg.task, **cfg.task_args)
    t_start = time.time()

    def held_out():
        """Test-split problems: the first eval_n are the held-out set, the next dev_n the
        dev set watched during training (disjoint, and never in the train split)."""
        return task.problems("test", n=cfg.eval_n + cfg.dev_n, seed=cfg.seed)

    def build(_):
        from ponder.models import count_params, model_from_spec

        model, tokenizer = model_from_spec(cfg.model, seed=cfg.seed)
        out = run_dir / "init"
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        return {"model_dir": str(out), "params": count_params(model), "spec": cfg.model}

    def sft(results):
        from ponder.generation import TorchGenerator
        from ponder.models import load_model
        from ponder.train.loop import TrainConfig
        from ponder.train.sft import reference_rows, train_sft

        model, tokenizer = load_model(results["build"]["model_dir"])
        rows = reference_rows(task, cfg.n_train, cfg.seed)
        dev = held_out()[cfg.eval_n:]

        def dev_accuracy(m):
            from ponder.generation.base import SamplingParams

            gen = TorchGenerator(m, tokenizer)
            outs = gen.generate([task.prompt(p) for p in dev], SamplingParams(temperature=0.0, max_tokens=cfg.max_tokens))
            return {"greedy_accuracy": sum(task.is_correct(p, o[0].text) for p, o in zip(dev, outs)) / len(dev)}

        tc = TrainConfig(lr=cfg.lr, max_steps=cfg.sft_steps, warmup_steps=cfg.warmup_steps, seed=cfg.seed,
                         eval_every=max(cfg.sft_steps // 4, 1), save_every=max(cfg.sft_steps // 4, 1))
        final = train_sft(model, tokenizer, rows, run_dir / "sft", tc, batch_size=cfg.batch_size, eval_fn=dev_accuracy)
        return {"model_dir": str(run_dir / "sft" / "model"), "final": final, "train_examples": len(rows),
                "metrics": str(run_dir / "sft" / "metrics.jsonl")}

    def evaluate_stage(results):
        from ponder.eval import EvalConfig, evaluate
        from ponder.generation import TorchGenerator
        from ponder.models import load_model

        model, tokenizer = load_model(results["sft"]["model_dir"])
        ec = EvalConfig(n=cfg.eval_n, k=cfg.eval_k, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                        seed=cfg.seed + 7)
        problems = held_out()[: cfg.eval_n]
        t0 = time.time()
        out = evaluate(TorchGenerator(model, tokenizer), task, problems, ec)
        out["summary"]["eval_s"] = round(time.time() - t0, 2)
        with open(run_dir / "eval_records.jsonl", "w") as f:
            for r in out["records"]:
                f.write(json.dumps(r) + "\n")
        return {"summary": out["summary"], "records": str(run_dir / "eval_records.jsonl")}

    stages = [
        Stage("build", build, "character tokenizer + tiny Llama from scratch"),
        Stage("sft", sft, f"SFT on {cfg.task} reference solutions"),
        Stage("eval", evaluate_stage, "held-out accuracy, pass@k, maj@k"),
    ]
    results = run_stages(run_dir, stages, force=force)
    summary = {
        "task": cfg.task,
        "task_args": cfg.task_args,
        "model": cfg.model,
        "params": results["build"]["params"],
        "sft_steps": cfg.sft_steps,
        "eval": results["eval"]["summary"],
        "wall_s": {name: r.get("wall_s") for name, r in results.items()},
        "total_wall_s_this_invocation": round(time.time() - t_start, 2),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    write_report(run_dir, summary, results)
    return summary
