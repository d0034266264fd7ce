"""`ponder eval`: greedy accuracy, unbiased pass@k, maj@k and mean tokens per solution of a model on held-out problems."""
from __future__ import annotations

from dataclasses import dataclass, field

from ponder.config import ConfigError, require
from ponder.eval.evaluate import EvalConfig


@dataclass
class Config(EvalConfig):
    model: str = ""
    """model dir, .gguf, smollm2, or a run name under runs/ (with a server engine: the served model's name)"""
    engine: str = "torch"
    """generation engine: torch (in this process), vllm, or an OpenAI-compatible server URL http(s)://host:port/v1"""
    task: str = "arith"
    """task name or dataset path"""
    task_args: dict = field(default_factory=dict)
    """task knobs, e.g. num_ops=3"""
    output: str | None = None
    """write the JSON result (summary and per-problem records) here"""


def run(cfg: Config, progress: bool = True) -> dict:
    from ponder.commands.common import open_engine
    from ponder.eval import evaluate
    from ponder.tasks import get_task

    if not cfg.model:
        raise ConfigError("--model is required: a model dir, .gguf, smollm2, or a run name")
    require(cfg, positive=("n", "max_tokens"), non_negative=("k", "temperature"), probability=("top_p",))
    task = get_task(cfg.task, **cfg.task_args)
    problems = task.problems(cfg.split, n=cfg.n, seed=cfg.seed)
    with open_engine(cfg.engine, cfg.model, progress=progress) as gen:
        out = evaluate(gen, task, problems, cfg)
    out["title"] = f"eval: {cfg.task} ({len(problems)} problems)"
    out["output"] = cfg.output
    return out


def show(out: dict, console) -> None:
    from ponder.commands.common import print_summary

    print_summary(console, out.pop("title"), out["summary"], out.pop("output"), full=out)
