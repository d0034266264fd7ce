"""`ponder search`: run one test-time search strategy over a problem set and report accuracy and the compute it spent."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from ponder.config import narrow, require
from ponder.options import DeviceField, WorkerOptions
from ponder.search.base import SearchParams


@dataclass
class Config(SearchParams, DeviceField, WorkerOptions):
    model: str = "runs/demo/sft/model"
    """policy: a model dir, a .gguf, smollm2, or a run name under runs/ (with a server engine: the served model's name)"""
    engine: str = "torch"
    """engine of the policy: torch, torch-bf16, vllm, or an OpenAI-compatible server URL (http://host:port/v1)"""
    task: str | None = None
    """task name or dataset path (default: the model's ponder training task, else arith)"""
    task_args: dict = field(default_factory=dict)
    """task knobs, e.g. instruction=false"""
    strategy: str = "beam"
    """search strategy: greedy, majority, best_of_n, beam, dvts, lookahead, mcts, budget_forcing, self_refine"""
    scorer: str = "verifier"
    """'verifier' (the task's exact checks, needs gold answers), a PRM directory or server URL, a step verifier that
    needs no labels ('rollout[:k=8:estimate=hard:early_stop=true]': the policy's rollouts from each step;
    'judge[:model=DIR:yes=..:no=..]': a model asked per step), or 'none'"""
    n_problems: int = 20
    """problems drawn from the split"""
    split: str = "test"
    """task split"""
    output: str | None = None
    """write the JSON result (summary and per-problem records) here"""
    batch: bool = True
    """search the problems together, one engine and scorer call per round (search/batch.py);
    off: one problem at a time (the same records, slower)"""


def check(cfg: SearchParams) -> None:
    """The knobs every search command shares, checked before any work."""
    from ponder.rewards.base import AGGREGATIONS

    require(cfg, positive=("n", "beam_width", "max_tokens", "max_step_tokens", "max_steps"),
            non_negative=("temperature", "c_puct", "lookahead", "think_tokens"), probability=("top_p",),
            choices={"aggregation": AGGREGATIONS})


def run(cfg: Config, progress: bool = True) -> dict:
    """Accuracy and total compute of `cfg.strategy` over the problems, with per-problem records."""
    from contextlib import nullcontext

    from ponder.commands.common import progress as progress_bar
    from ponder.commands.common import resolve_task, search_context, search_worker
    from ponder.runs import write_json
    from ponder.parallel import check_workers
    from ponder.search.base import check_width, get_strategy
    from ponder.search.driver import search_all
    from ponder.search.scale import TREE

    from ponder.commands.common import check_output, check_samples, server_default_model

    check(cfg)
    require(cfg, positive=("n_problems",))
    # batched, every problem's n candidates are in flight together
    check_samples(cfg.n * (cfg.n_problems if cfg.batch else 1), cfg.n, cfg.max_tokens)
    check_output(cfg.output)  # before the search, whose result would be lost
    server_default_model(cfg)
    get_strategy(cfg.strategy)  # a bad name fails before any work
    if cfg.strategy in TREE:
        check_width(cfg, cfg.strategy)
    check_workers(cfg.workers, cfg.ray_address)
    params = narrow(cfg, SearchParams)
    local = cfg.workers <= 1
    resolve_task(cfg, cfg.model, cfg.engine)
    ctx, problems = search_context(cfg.model, cfg.engine, cfg.task, cfg.task_args, cfg.scorer, cfg.n_problems,
                                   cfg.split, cfg.seed, open_policy=local, device=cfg.device)
    bar, tick = progress_bar(len(problems), f"{cfg.strategy} N={cfg.n}")
    with ctx.generator if local else nullcontext(), bar if progress else nullcontext():
        out = search_all(cfg.strategy, ctx, problems, params, tick, workers=cfg.workers,
                         ray_address=cfg.ray_address, setup=partial(search_worker, cfg), batch=cfg.batch)
    if cfg.output:
        write_json(cfg.output, out)
    out["title"] = f"search: {cfg.strategy} on {cfg.task} ({len(problems)} problems)"
    return out


def show(out: dict, console) -> None:
    from ponder.commands.common import print_summary

    print_summary(console, out.pop("title"), out["summary"])
