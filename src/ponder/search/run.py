"""`ponder search`: run one strategy over a problem set and report accuracy and compute.

Also the set-up shared with `ponder scale`: load the policy, the task, its problems and the
scorer from a command's config.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ponder.search.base import Compute, SearchConfig, SearchContext, get_strategy, search, search_config
from ponder.tasks.base import Problem


@dataclass
class SearchArgs(SearchConfig):
    """`ponder search`: a strategy, its SearchConfig knobs, and what to run it on."""

    model: str = "runs/demo/sft/model"
    """policy: a model dir, a .gguf, smollm2, or a run name under runs/ (with a server engine:
    the served model's name)"""
    engine: str = "torch"
    """engine of the policy: torch, vllm, or an OpenAI-compatible server URL (http://host:port/v1)"""
    task: str = "arith"
    """task name or dataset path"""
    task_args: dict = field(default_factory=dict)
    """knobs passed to the task, e.g. {instruction: false, num_ops: [4, 4]}"""
    strategy: str = "beam"
    """search strategy (greedy, majority, best_of_n, beam, dvts, lookahead, mcts, budget_forcing, self_refine)"""
    scorer: str = "verifier"
    """'verifier' (the task's exact checks, needs gold answers), a PRM directory, or 'none'"""
    n_problems: int = 20
    """problems drawn from the split"""
    split: str = "test"
    """task split"""


def setup(model: str, task_name: str, task_args: dict, scorer: str, n_problems: int, split: str, seed: int,
          resolve: Callable[[str], str] = lambda s: s, engine: str = "torch") -> tuple[SearchContext, list[Problem]]:
    """The search context (policy, task, scorer) and the problems of a command."""
    from ponder.generation import is_url, make_engine
    from ponder.search.scorers import load_scorer
    from ponder.tasks import get_task

    task = get_task(task_name, **task_args)
    problems = task.problems(split, n=n_problems, seed=seed)
    sc = load_scorer(scorer, task, problems)
    generator = make_engine(engine, model if is_url(engine) else resolve(model), seed=seed)
    return SearchContext(generator, task, sc), problems


def run_search(ctx: SearchContext, problems: list[Problem], args: SearchArgs,
               on_result: Callable[[], None] | None = None) -> dict:
    """Accuracy and total compute of `args.strategy` over `problems`, with per-problem records."""
    get_strategy(args.strategy)  # fail on a bad name before any work
    cfg = search_config(args)
    total, records = Compute(), []
    for p in problems:
        r = search(args.strategy, ctx, p, cfg)
        total = total + r.compute
        records.append({"id": p.id, "gold": p.answer, "answer": r.answer,
                        "correct": bool(r.text is not None and ctx.task.is_correct(p, r.text)),
                        "text": r.text, "compute": r.compute.__dict__,
                        "candidates": [c.__dict__ for c in r.candidates]})
        if on_result:
            on_result()
    n = max(len(problems), 1)
    summary = {"strategy": args.strategy, "n": args.n, "problems": len(problems),
               "accuracy": sum(r["correct"] for r in records) / n,
               "generated_tokens": total.generated_tokens, "prefill_tokens": total.prefill_tokens,
               "scorer_tokens": total.scorer_tokens, "generated_tokens_per_problem": total.generated_tokens / n,
               "prefill_per_generated": total.prefill_per_generated(), "wall_s": round(total.wall_s, 2)}
    return {"summary": summary, "records": records}
