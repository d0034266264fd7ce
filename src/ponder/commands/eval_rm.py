"""`ponder eval-rm`: ProcessBench-style F1 and best-of-N accuracy of reward models, beside majority vote, on solutions a policy samples."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from ponder.config import ConfigError, require
from ponder.options import DeviceField, WorkerOptions


@dataclass
class Config(DeviceField, WorkerOptions):
    rm: list[str] = field(default_factory=list)
    """reward models to evaluate: PRM or ORM dirs, a PRM server's URL (http://host:port/v1), 'verifier' (the task's
    exact checks), or a step verifier that needs no labels: 'rollout[:k=8:...]' (Monte Carlo value from the policy's
    rollouts) or 'judge[:model=DIR:...]' (a model asked per step)"""
    policy: str = "runs/demo/sft/model"
    """policy that samples the solutions to judge, or a run name (with a server engine: the served name)"""
    engine: str = "torch"
    """engine of the policy: torch, torch-bf16, vllm, or an OpenAI-compatible server URL"""
    task: str | None = None
    """task name or dataset path (default: the model's ponder training task, else arith)"""
    task_args: dict = field(default_factory=dict)
    """task knobs, e.g. num_ops=3"""
    split: str = "test"
    """split the problems come from (held out from annotation)"""
    n: int = 100
    """problems"""
    samples: int = 16
    """solutions per problem (best-of-N goes up to this N)"""
    temperature: float = 1.0
    """sampling temperature"""
    max_tokens: int = 256
    """tokens per solution, at most"""
    aggregation: str | None = None
    """step-score aggregation: last, min, prod, mean (default: the one saved with the PRM)"""
    threshold: float = 0.5
    """a step scored below this is predicted wrong (ProcessBench F1)"""
    seed: int = 1234
    """seed for problem choice and sampling"""
    output: str | None = None
    """write the JSON result here"""
    chunk: int = 32
    """problems per sampling call, and per shard with --workers"""


def run(cfg: Config, progress: bool = True) -> dict:
    """Evaluate each reward model on one shared sample set."""
    from ponder.commands.common import check_model, open_engine, resolve_task
    from ponder.eval.evaluate import chunks_of
    from ponder.eval.rm import evaluate_reward_model, merge_samples, vote_and_oracle
    from ponder.rewards.base import AGGREGATIONS, VerifierScorer
    from ponder.generation.factory import is_url
    from ponder.rewards.model import load_reward_model
    from ponder.rewards.remote import HTTPScorer
    from ponder.search.scorers import STEP_VERIFIERS, load_scorer
    from ponder.runs import write_json
    from ponder.parallel import check_workers, map_shards
    from ponder.tasks import get_task

    if not cfg.rm:
        raise ConfigError("--rm is required: a PRM or ORM directory, or 'verifier' (repeatable)")
    require(cfg, positive=("n", "samples", "max_tokens", "chunk"), non_negative=("temperature",),
            probability=("threshold",), choices={"aggregation": (None, *AGGREGATIONS)})
    check_workers(cfg.workers, cfg.ray_address)
    check_model(cfg.policy, cfg.engine)
    resolve_task(cfg, cfg.policy, cfg.engine)
    task = get_task(cfg.task, **cfg.task_args)
    problems = task.problems(cfg.split, n=cfg.n, seed=cfg.seed)
    scorers = {}
    for path in cfg.rm:
        if path.split(":", 1)[0] in STEP_VERIFIERS:  # rollout / judge: no labels, the policy (or a judge model)
            try:
                scorers[path] = load_scorer(path, task, problems, seed=cfg.seed, policy=lambda: open_engine(
                    cfg.engine, cfg.policy, device=cfg.device))
            except ValueError as e:
                raise ConfigError(f"--rm {path}: {e}") from None
        else:
            scorers[path] = (VerifierScorer(task, problems) if path == "verifier" else
                             HTTPScorer(path, delimiter=task.step_delimiter) if is_url(path) else load_reward_model(path))
    shards = chunks_of(problems, cfg.chunk)
    if cfg.workers > 1:
        parts = {r.index: r.value for r in map_shards(_sample_chunk, shards, setup=partial(_sampler, cfg),
                                                       workers=cfg.workers, ray_address=cfg.ray_address)}
    else:
        with open_engine(cfg.engine, cfg.policy, progress=progress, device=cfg.device) as generator:
            parts = {i: _sample_chunk((generator, task, cfg), i, ps) for i, ps in shards}
    data = merge_samples([parts[i] for i, _ in shards])
    ns = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= cfg.samples]
    maj, oracle = vote_and_oracle(data, ns)
    out = {"problems": len(problems), "samples": cfg.samples,
           "sample_accuracy": sum(map(sum, data.correct)) / max(1, sum(map(len, data.correct))),
           "majority": maj, "oracle": oracle, "models": {}}
    for name, scorer in scorers.items():
        agg = cfg.aggregation or getattr(scorer, "aggregation", "last")
        before = scorer.usage.tokens
        quality = evaluate_reward_model(scorer, data, agg, cfg.threshold, ns)
        solutions = max(1, sum(map(len, data.texts)))
        out["models"][name] = {"kind": getattr(scorer, "kind", type(scorer).__name__ if name != "verifier" else "verifier"),
                               "aggregation": agg, **quality,
                               "scorer_tokens_per_solution": (scorer.usage.tokens - before) / solutions}
    if cfg.output:
        write_json(cfg.output, out)
    return out


def _sampler(cfg: Config):
    """A Ray worker's state: its own policy engine and the task."""
    from ponder.commands.common import open_engine
    from ponder.tasks import get_task

    return open_engine(cfg.engine, cfg.policy, device=cfg.device), get_task(cfg.task, **cfg.task_args), cfg


def _sample_chunk(state, index: int, problems):
    from ponder.eval.rm import sample_solutions

    generator, task, cfg = state
    return sample_solutions(generator, task, problems, cfg.samples, cfg.temperature, cfg.max_tokens, cfg.seed)


def show(out: dict, console) -> None:
    from rich.table import Table

    ns = list(out["majority"])
    table = Table(title=f"reward models: {out['problems']} problems x {out['samples']} samples "
                        f"(sample accuracy {out['sample_accuracy']:.3f})")
    for c in ["selector", "F1", *[f"@{n}" for n in ns]]:
        table.add_column(c, justify="left" if c == "selector" else "right")
    for name, res in out["models"].items():
        f1 = res.get("processbench", {}).get("f1")
        table.add_row(f"{name} ({res['kind']}, {res['aggregation']})", f"{f1:.3f}" if f1 is not None else "-",
                      *[f"{res['best_of_n'][n]:.3f}" for n in ns])
        table.add_row("  weighted vote (scores summed per answer)", "",
                      *[f"{res['weighted_best_of_n'][n]:.3f}" for n in ns])
    table.add_row("majority vote", "-", *[f"{out['majority'][n]:.3f}" for n in ns])
    table.add_row("oracle (pass@N)", "-", *[f"{out['oracle'][n]:.3f}" for n in ns])
    console.print(table)
