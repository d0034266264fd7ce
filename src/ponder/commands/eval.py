"""`ponder eval`: greedy accuracy, unbiased pass@k, maj@k and mean tokens per solution of a model on held-out problems."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from ponder.config import ConfigError, require
from ponder.eval.evaluate import EvalConfig
from ponder.options import DeviceField, WorkerOptions


@dataclass
class Config(EvalConfig, DeviceField, WorkerOptions):
    model: str = ""
    """model dir, .gguf, smollm2, or a run name under runs/ (with a server engine: the served model's name)"""
    engine: str = "torch"
    """generation engine: torch (in this process; torch-bf16: its Linear layers in bf16), vllm, or an OpenAI-compatible server URL http(s)://host:port/v1"""
    task: str | None = None
    """task name or dataset path (default: the model's ponder training task, else arith)"""
    task_args: dict = field(default_factory=dict)
    """task knobs, e.g. num_ops=3"""
    output: str | None = None
    """write the JSON result (summary and per-problem records) here"""


def run(cfg: Config, progress: bool = True) -> dict:
    from ponder.commands.common import (check_context, check_model, check_output, check_samples, open_engine,
                                        resolve_task)
    from ponder.eval.evaluate import evaluate
    from ponder.generation import is_url
    from ponder.parallel import check_workers
    from ponder.tasks import get_task

    if not cfg.model and not is_url(cfg.engine):  # a server serving one model needs no name
        raise ConfigError("--model is required: a model dir, .gguf, smollm2, or a run name")
    require(cfg, positive=("n", "max_tokens", "chunk"), non_negative=("k", "temperature"), probability=("top_p",))
    check_samples(min(cfg.n, cfg.chunk) * max(cfg.k, 1), max(cfg.k, 1), cfg.max_tokens, "--k")  # one chunk at a time
    check_output(cfg.output)  # before the evaluation, whose result would be lost
    check_workers(cfg.workers, cfg.ray_address)
    resolve_task(cfg, cfg.model, cfg.engine)
    task = get_task(cfg.task, **cfg.task_args)
    check_model(cfg.model, cfg.engine)
    problems = task.problems(cfg.split, n=cfg.n, seed=cfg.seed)
    setup = partial(_evaluator, cfg)
    if cfg.workers > 1:
        out = evaluate(None, task, problems, cfg, workers=cfg.workers, ray_address=cfg.ray_address, setup=setup)
    else:
        with open_engine(cfg.engine, cfg.model, progress=progress, device=cfg.device) as gen:
            check_context(gen, [task.prompt(p) for p in problems], cfg.max_tokens)
            out = evaluate(gen, task, problems, cfg)
    out["title"] = f"eval: {cfg.task} ({len(problems)} problems)"
    out["output"] = cfg.output
    return out


def _evaluator(cfg: Config):
    """A Ray worker's state: its own engine, and the task."""
    from ponder.commands.common import open_engine
    from ponder.tasks import get_task

    return open_engine(cfg.engine, cfg.model, device=cfg.device), get_task(cfg.task, **cfg.task_args)


def show(out: dict, console) -> None:
    from ponder.commands.common import print_summary

    print_summary(console, out.pop("title"), out["summary"], out.pop("output"), full=out)
