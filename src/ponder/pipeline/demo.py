"""The demo pipeline: the whole reasoning-model pipeline as cached stages, each a named function.

build -> sft -> eval_sft -> annotate -> prm -> rl -> eval_rl -> scale -> report

1. a character tokenizer and a tiny Llama, SFT on reference solutions (`countdown` by default:
   one reference equation per problem, among the many that are right);
2. solutions sampled from the SFT policy, labelled by outcome and by Math-Shepherd MC and
   OmegaPRM (scored against the exact step checker); a PRM trained on the OmegaPRM labels
   (no ground truth) and evaluated on held-out samples (ProcessBench F1, best-of-N);
3. GRPO from the SFT policy: process GRPO by default (each line rewarded by the exact step
   checker, whose answer-line label is the outcome check), or the outcome verifier alone
   (`rl_estimator: grpo`);
4. a test-time scaling sweep (greedy, majority, best-of-N and beam search with the PRM) on
   held-out problems for the SFT and the RL policy;
5. report.md, report.html (plots embedded), summary.json and a terminal table.

Each stage function takes the config, the problem split and the earlier stages' typed results,
and returns its own typed result; `run_stages` caches each as stages/<name>.json, so a rerun
skips finished stages and a stage killed mid-way resumes from its own checkpoint (training) or
records (annotation). The held-out set (first `eval_n` of a test draw) is never trained or
selected on; the dev set (the next `dev_n`) is what training watches.

The claims the report makes are fixed before the run: RL vs SFT greedy accuracy on the
held-out set (and, on a task with a step checker, the share right with every line valid), and
one search-vs-majority pair (`compare_strategy` at `compare_budget` against
majority vote at the same N), each with the standard error of the paired per-problem difference.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ponder.config import to_dict
from ponder.runs import write_jsonl
from ponder.seeds import derive
from ponder.tasks.base import Problem, Task


@dataclass
class DemoConfig:
    task: str = "countdown"
    """built-in task to learn (countdown: many right equations per problem, so sampled solutions
    differ and RL has something to choose between; on arith, with one reference path, it did not)"""
    task_args: dict = field(default_factory=dict)
    """knobs passed to the task (e.g. count, max_number); none given: the demo's own for that task
    (DEMO_TASK_ARGS: 3 numbers up to 30 for countdown; the bare-question prompt, which keeps the
    character-level model's sequences short)"""
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
    """sampling temperature for pass@k / maj@k and the scaling sweep"""
    max_tokens: int = 80
    """generated tokens per solution"""
    dev_n: int = 64
    """held-out problems watched during training (disjoint from the eval_n)"""
    annotate_n: int = 96
    """training problems whose sampled solutions are annotated"""
    annotate_samples: int = 4
    """solutions sampled per annotated problem"""
    annotate_k: int = 8
    """rollouts per prefix for Math-Shepherd and OmegaPRM"""
    prm_steps: int = 300
    """PRM optimiser steps"""
    prm_eval_n: int = 60
    """held-out problems for the PRM's F1 and best-of-N"""
    prm_eval_samples: int = 8
    """samples per problem for the PRM evaluation"""
    rl_steps: int = 200
    """GRPO steps (one rollout batch each)"""
    rl_prompts: int = 16
    """prompts per GRPO step"""
    rl_group: int = 8
    """samples per prompt (G)"""
    rl_lr: float = 1e-4
    """GRPO learning rate (constant, no KL)"""
    rl_estimator: str = "process_grpo"
    """grpo: the outcome verifier is the only reward; process_grpo: each step is rewarded by the
    task's exact step checker instead (DeepSeekMath's process supervision; needs a task with one)"""
    scale_n: int = 40
    """held-out problems in the test-time scaling sweep"""
    scale_budgets: list[int] = field(default_factory=lambda: [1, 4, 16])
    """budgets N of the sweep"""
    scale_strategies: list[str] = field(default_factory=lambda: ["greedy", "majority", "best_of_n", "beam"])
    """strategies of the sweep (best_of_n and beam use the PRM)"""
    compare_strategy: str = "beam"
    """the PRM-guided strategy the report compares with majority vote (fixed before the run)"""
    compare_budget: int = 16
    """the budget N of that comparison (both sides spend N samples or beams)"""
    engine: str = "torch"
    """engine that samples from the trained models (evaluation, annotation, RL rollouts,
    scaling sweep): torch or vllm. A server URL does not fit: the demo trains its own models"""
    seed: int = 0
    """seed for data, initialisation and sampling"""
    workers: int = 1
    """Ray workers for the evaluation, annotation and scaling stages, each with its own engine
    (1: this process; see ponder.parallel). Training stays in this process"""
    ray_address: str | None = None
    """Ray cluster to join (default: $RAY_ADDRESS, else a local Ray started here)"""

    def __post_init__(self):
        if not self.task_args:
            self.task_args = dict(DEMO_TASK_ARGS.get(self.task, {}))


DEMO_TASK_ARGS = {"countdown": {"count": 3, "max_number": 30, "max_target": 100, "instruction": False},
                  "arith": {"instruction": False}}
"""The demo's task knobs when none are given: problems the 866k model learns within the demo's
SFT budget, asked without the instruction sentence."""


QUICK = dict(n_train=3000, sft_steps=150, batch_size=16, eval_n=24, eval_k=4, dev_n=12, annotate_n=8,
             annotate_samples=2, annotate_k=2, prm_steps=10, prm_eval_n=8, prm_eval_samples=4, rl_steps=3,
             rl_prompts=4, rl_group=4, scale_n=6, scale_budgets=[1, 4], compare_budget=4)


# ----------------------------------------------------------------------------- results
@dataclass
class Split:
    """The problems of a demo run: disjoint slices of one test draw, never in the train split."""
    task: Task
    held_out: list[Problem]
    dev: list[Problem]


@dataclass
class Built:
    model_dir: str
    params: int
    spec: str


@dataclass
class Trained:
    model_dir: str
    final: dict
    metrics: str
    """the run's metrics.jsonl"""
    train_examples: int = 0


@dataclass
class Evaluated:
    summary: dict
    records: str
    """per-problem records (JSONL)"""


@dataclass
class Annotated:
    summary: dict
    dir: str


@dataclass
class PRMResult:
    model_dir: str
    train_examples: int
    final_loss: float
    metrics: str
    best_of_n: dict
    weighted_best_of_n: dict
    majority: dict
    oracle: dict
    processbench: dict | None = None


@dataclass
class Scaled:
    rows: dict
    """policy name -> the sweep's summary rows"""
    records: dict
    """policy name -> per-(problem, strategy, budget) records (JSONL)"""


# ----------------------------------------------------------------------------- stages
def make_split(cfg: DemoConfig) -> Split:
    from ponder.tasks import get_task

    task = get_task(cfg.task, **cfg.task_args)
    problems = task.problems("test", n=cfg.eval_n + cfg.dev_n, seed=cfg.seed)
    return Split(task, problems[:cfg.eval_n], problems[cfg.eval_n:])


def build(cfg: DemoConfig, run_dir: Path) -> Built:
    from ponder.models import count_params, model_from_spec

    model, tokenizer = model_from_spec(cfg.model, seed=cfg.seed)
    out = run_dir / "init"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return Built(str(out), count_params(model), cfg.model)


def sft(cfg: DemoConfig, split: Split, init: Built, run_dir: Path) -> Trained:
    from ponder.eval.evaluate import greedy_accuracy
    from ponder.generation import make_engine
    from ponder.models import load_model
    from ponder.train.sft import SFTConfig, SFTTrainer, reference_rows

    model, tokenizer = load_model(init.model_dir)
    rows = reference_rows(split.task, cfg.n_train, cfg.seed)
    dev_engine = make_engine("torch", model, tokenizer=tokenizer)  # shares the weights in training

    def dev_accuracy(m):
        return {"greedy_accuracy": greedy_accuracy(dev_engine, split.task, split.dev, cfg.max_tokens)}

    sc = SFTConfig(lr=cfg.lr, steps=cfg.sft_steps, warmup_steps=cfg.warmup_steps, batch_size=cfg.batch_size,
                   seed=cfg.seed, eval_every=max(cfg.sft_steps // 4, 1), save_every=max(cfg.sft_steps // 4, 1))
    final = SFTTrainer(model, tokenizer, rows, sc, run_dir / "sft", eval_fn=dev_accuracy).train()
    return Trained(str(run_dir / "sft" / "model"), final, str(run_dir / "sft" / "metrics.jsonl"), len(rows))


def evaluate_policy(cfg: DemoConfig, split: Split, policy: Trained, out: Path) -> Evaluated:
    from ponder.eval import EvalConfig, evaluate
    from ponder.generation import make_engine

    ec = EvalConfig(n=cfg.eval_n, k=cfg.eval_k, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                    seed=derive(cfg.seed, "demo-eval"))
    if cfg.workers > 1:
        setup = partial(_worker_engine_and_task, cfg, policy.model_dir)
        result = evaluate(None, split.task, split.held_out, ec, cfg.workers, cfg.ray_address, setup)
    else:
        with make_engine(cfg.engine, policy.model_dir) as engine:
            result = evaluate(engine, split.task, split.held_out, ec)
    write_jsonl(out, result["records"])
    return Evaluated(result["summary"], str(out))


def annotate(cfg: DemoConfig, split: Split, policy: Trained, run_dir: Path) -> Annotated:
    from ponder.annotate.annotator import AnnotateConfig, annotate as annotate_problems, open_annotator

    methods = ["math_shepherd", "omega_prm"] + (["truth"] if split.task.has_step_checker else [])
    ac = AnnotateConfig(task=cfg.task, task_args=cfg.task_args, n_problems=cfg.annotate_n, policy=policy.model_dir,
                        engine=cfg.engine, samples=cfg.annotate_samples, k=cfg.annotate_k, temperature=1.0,
                        max_tokens=cfg.max_tokens, methods=methods, chunk=32, seed=cfg.seed)
    problems = split.task.problems(ac.split, n=ac.n_problems, seed=ac.seed)
    annotator = open_annotator(ac) if cfg.workers <= 1 else None
    out = run_dir / "annotate"
    out.mkdir(parents=True, exist_ok=True)
    return Annotated(annotate_problems(ac, problems, out, annotator, cfg.workers, cfg.ray_address), str(out))


def prm(cfg: DemoConfig, split: Split, policy: Trained, labels: Annotated, run_dir: Path) -> PRMResult:
    from ponder.eval.rm import evaluate_reward_model, sample_solutions, vote_and_oracle
    from ponder.generation import make_engine
    from ponder.rewards.model import load_prm, new_reward_model
    from ponder.train.rm import RewardModelConfig, RewardModelTrainer, read_stepwise

    rows = read_stepwise(Path(labels.dir) / "stepwise_omega_prm.jsonl")
    rm = new_reward_model(policy.model_dir, "prm")
    final = RewardModelTrainer(rm, rows, RewardModelConfig(steps=cfg.prm_steps, seed=cfg.seed), run_dir / "prm").train()
    trained = {"model_dir": str(run_dir / "prm" / "model"), "examples": len(rows), "loss": final["loss"]}
    model = load_prm(trained["model_dir"])
    held_out = split.held_out[:cfg.prm_eval_n]
    with make_engine(cfg.engine, policy.model_dir) as gen:
        samples = sample_solutions(gen, split.task, held_out, cfg.prm_eval_samples, 1.0, cfg.max_tokens,
                                   derive(cfg.seed, "demo-prm-eval"))
    quality = evaluate_reward_model(model, samples, model.aggregation)
    maj, oracle = vote_and_oracle(samples, list(quality["best_of_n"]))
    return PRMResult(trained["model_dir"], trained["examples"], trained["loss"], str(run_dir / "prm" / "metrics.jsonl"),
                     quality["best_of_n"], quality["weighted_best_of_n"], maj, oracle, quality.get("processbench"))


def rl(cfg: DemoConfig, split: Split, policy: Trained, run_dir: Path) -> Trained:
    from ponder.models import load_model
    from ponder.rewards.functions import reward_functions
    from ponder.train.rl import RLConfig, RLTrainer

    model, tokenizer = load_model(policy.model_dir)
    rc = RLConfig(estimator=cfg.rl_estimator, steps=cfg.rl_steps, prompts_per_step=cfg.rl_prompts,
                  group_size=cfg.rl_group, max_tokens=cfg.max_tokens, lr=cfg.rl_lr,
                  eval_every=max(cfg.rl_steps // 4, 1), save_every=max(cfg.rl_steps // 4, 1), seed=cfg.seed)
    rewards = reward_functions(["outcome"], split.task, cfg.max_tokens)
    train = split.task.problems("train", n=max(cfg.rl_steps * cfg.rl_prompts, cfg.rl_prompts), seed=cfg.seed + 1)
    scorer = None
    if cfg.rl_estimator == "process_grpo":
        from ponder.rewards.base import VerifierScorer

        scorer = VerifierScorer(split.task, train)
    trainer = RLTrainer(model, tokenizer, split.task, train, split.dev, rewards, rc, run_dir / "rl", engine=cfg.engine,
                        process_scorer=scorer)
    final = trainer.train()
    return Trained(str(run_dir / "rl" / "model"), final, str(run_dir / "rl" / "metrics.jsonl"), len(train))


def scale(cfg: DemoConfig, split: Split, policies: dict[str, Trained], reward_model: PRMResult,
          run_dir: Path) -> Scaled:
    from ponder.generation import make_engine
    from ponder.rewards.model import load_prm
    from ponder.search import SearchContext
    from ponder.search.scale import ScaleConfig, run_scale

    problems = split.held_out[:cfg.scale_n]
    scorer = load_prm(reward_model.model_dir)
    sc = ScaleConfig(strategies=tuple(cfg.scale_strategies), budgets=tuple(cfg.scale_budgets), weighted=True,
                     temperature=cfg.temperature, max_tokens=cfg.max_tokens, max_step_tokens=cfg.max_tokens,
                     beam_width=4, seed=cfg.seed, workers=cfg.workers, ray_address=cfg.ray_address)
    rows, records = {}, {}
    for name, policy in policies.items():
        if cfg.workers > 1:
            setup = partial(_worker_search_context, cfg, policy.model_dir, reward_model.model_dir)
            res = run_scale(SearchContext(None, split.task, scorer), problems, sc, setup=setup)
        else:
            with make_engine(cfg.engine, policy.model_dir) as engine:
                res = run_scale(SearchContext(engine, split.task, scorer), problems, sc)
        path = run_dir / f"scale_{name}_records.jsonl"
        write_jsonl(path, res["records"])
        rows[name], records[name] = res["rows"], str(path)
    return Scaled(rows, records)


def _worker_engine_and_task(cfg: DemoConfig, model_dir: str):
    """A Ray worker's own engine on `model_dir`, and the demo's task."""
    from ponder.generation import make_engine
    from ponder.tasks import get_task

    return make_engine(cfg.engine, model_dir), get_task(cfg.task, **cfg.task_args)


def _worker_search_context(cfg: DemoConfig, model_dir: str, prm_dir: str):
    from ponder.rewards.model import load_prm
    from ponder.search import SearchContext

    engine, task = _worker_engine_and_task(cfg, model_dir)
    return SearchContext(engine, task, load_prm(prm_dir))


# ----------------------------------------------------------------------------- claims
def paired_difference(a: list[bool], b: list[bool]) -> dict:
    """Mean of a_i - b_i over paired problems and its standard error (sample std / sqrt(n)):
    the interval a claim "a beats b" is read against."""
    n = len(a)
    d = [float(x) - float(y) for x, y in zip(a, b)]
    mean = sum(d) / n if n else 0.0
    var = sum((x - mean) ** 2 for x in d) / (n - 1) if n > 1 else 0.0
    se = math.sqrt(var / n) if n else 0.0
    return {"difference": mean, "se": se, "n": n, "beyond_2se": abs(mean) > 2 * se}


def _read_jsonl(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def comparisons(cfg: DemoConfig, sft_eval: Evaluated, rl_eval: Evaluated, scaled: Scaled) -> dict:
    """The claims fixed before the run: RL vs SFT held-out greedy accuracy, and
    `compare_strategy`@`compare_budget` vs majority@`compare_budget` for each policy."""
    a = {r["id"]: r["greedy_correct"] for r in _read_jsonl(rl_eval.records)}
    b = {r["id"]: r["greedy_correct"] for r in _read_jsonl(sft_eval.records)}
    ids = sorted(set(a) & set(b))
    rl_vs_sft = paired_difference([a[i] for i in ids], [b[i] for i in ids])
    out = {"rl_minus_sft_greedy": rl_eval.summary["greedy_accuracy"] - sft_eval.summary["greedy_accuracy"],
           "rl_minus_sft_greedy_se": rl_vs_sft["se"], "rl_vs_sft": rl_vs_sft, "search_vs_majority": {}}
    if "greedy_valid_accuracy" in rl_eval.summary and "greedy_valid_accuracy" in sft_eval.summary:
        # right AND every line valid under the exact step checker: whether RL's gain is reasoning
        a = {r["id"]: r["greedy_valid"] for r in _read_jsonl(rl_eval.records)}
        b = {r["id"]: r["greedy_valid"] for r in _read_jsonl(sft_eval.records)}
        out["rl_vs_sft_valid"] = paired_difference([a[i] for i in ids], [b[i] for i in ids])
    for name, path in scaled.records.items():
        recs = _read_jsonl(path)

        def correct(strategy):
            return {r["problem"]: r["correct"] for r in recs
                    if r["strategy"] == strategy and r["budget"] == cfg.compare_budget}

        s, m = correct(cfg.compare_strategy), correct("majority")
        ids = sorted(set(s) & set(m))
        if not ids:
            continue
        tokens = {r["strategy"]: r["generated_tokens"] for r in scaled.rows[name] if r["budget"] == cfg.compare_budget}
        out["search_vs_majority"][name] = {
            "strategy": cfg.compare_strategy, "budget": cfg.compare_budget,
            "accuracy": sum(s[i] for i in ids) / len(ids), "majority_accuracy": sum(m[i] for i in ids) / len(ids),
            "tokens": tokens.get(cfg.compare_strategy), "majority_tokens": tokens.get("majority"),
            **paired_difference([s[i] for i in ids], [m[i] for i in ids])}
    return out


def build_summary(cfg: DemoConfig, results: dict, wall_s: dict, wall_this_run: float) -> dict:
    """The numbers the report shows, each taken from a stage's output."""
    ann, reward_model = results["annotate"].summary, results["prm"]
    return {
        "task": cfg.task, "task_args": cfg.task_args, "model": cfg.model, "params": results["build"].params,
        "command": " ".join(["ponder"] + sys.argv[1:]) if sys.argv and sys.argv[0].endswith("ponder") else "ponder demo",
        "config": to_dict(cfg),
        "eval": {"sft": results["eval_sft"].summary, "rl": results["eval_rl"].summary},
        "annotation": {"samples": ann["samples"], "sample_accuracy": ann["sample_accuracy"], "methods": ann["methods"]},
        "prm": {"processbench": reward_model.processbench, "best_of_n": reward_model.best_of_n,
                "weighted_best_of_n": reward_model.weighted_best_of_n, "majority": reward_model.majority,
                "oracle": reward_model.oracle, "train_examples": reward_model.train_examples},
        "scale": results["scale"].rows,
        "comparisons": comparisons(cfg, results["eval_sft"], results["eval_rl"], results["scale"]),
        "wall_s": wall_s,
        "wall_s_this_invocation": round(wall_this_run, 2),
    }
