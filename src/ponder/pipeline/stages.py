"""The demo's stages: each a function of the config, the problem split and the earlier
stages' typed results, returning its own typed result (cached by `cache.run_stages`)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from ponder.annotate.annotator import AnnotateConfig, annotate as annotate_problems, open_annotator
from ponder.eval import EvalConfig, evaluate
from ponder.eval.evaluate import greedy_accuracy
from ponder.eval.rm import evaluate_reward_model, sample_solutions, vote_and_oracle
from ponder.generation import make_engine
from ponder.models import count_params, load_model, model_from_spec
from ponder.pipeline.config import DemoConfig
from ponder.rewards.base import VerifierScorer
from ponder.rewards.functions import reward_functions
from ponder.rewards.model import load_prm, new_reward_model
from ponder.runs import read_jsonl, write_jsonl
from ponder.search import SearchContext, SearchParams
from ponder.search.driver import search_all
from ponder.search.scale import ScaleConfig, run_scale, total_tokens
from ponder.search.scorers import load_scorer
from ponder.seeds import derive
from ponder.tasks import get_task
from ponder.tasks.base import Problem, Task
from ponder.train.rl import RLConfig, RLTrainer
from ponder.train.rm import RewardModelConfig, RewardModelTrainer, read_stepwise
from ponder.train.sft import SFTConfig, SFTTrainer, reference_rows


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


@dataclass
class EqualCompute:
    majority_tokens: dict
    """policy name -> mean total tokens per problem of majority@compare_budget in the sweep"""
    rows: dict
    """policy name -> per N tried: accuracy and mean tokens of best_of_n guided by the verifier"""
    records: dict
    """policy name -> per-(problem, N) records of those searches (JSONL)"""


# ----------------------------------------------------------------------------- stages
def make_split(cfg: DemoConfig) -> Split:
    task = get_task(cfg.task, **cfg.task_args)
    problems = task.problems("test", n=cfg.eval_n + cfg.dev_n, seed=cfg.seed)
    return Split(task, problems[:cfg.eval_n], problems[cfg.eval_n:])


def build(cfg: DemoConfig, run_dir: Path) -> Built:
    model, tokenizer = model_from_spec(cfg.model, seed=cfg.seed)
    out = run_dir / "init"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return Built(str(out), count_params(model), cfg.model)


def sft(cfg: DemoConfig, split: Split, init: Built, run_dir: Path) -> Trained:
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
    model, tokenizer = load_model(policy.model_dir)
    rc = RLConfig(estimator=cfg.rl_estimator, steps=cfg.rl_steps, prompts_per_step=cfg.rl_prompts,
                  group_size=cfg.rl_group, max_tokens=cfg.max_tokens, lr=cfg.rl_lr,
                  eval_every=max(cfg.rl_steps // 4, 1), save_every=max(cfg.rl_steps // 4, 1), seed=cfg.seed)
    rewards = reward_functions(["outcome"], split.task, cfg.max_tokens)
    train = split.task.problems("train", n=max(cfg.rl_steps * cfg.rl_prompts, cfg.rl_prompts), seed=cfg.seed + 1)
    scorer = None
    if cfg.rl_estimator == "process_grpo":
        scorer = VerifierScorer(split.task, train)
    trainer = RLTrainer(model, tokenizer, split.task, train, split.dev, rewards, rc, run_dir / "rl", engine=cfg.engine,
                        process_scorer=scorer)
    final = trainer.train()
    return Trained(str(run_dir / "rl" / "model"), final, str(run_dir / "rl" / "metrics.jsonl"), len(train))


def scale(cfg: DemoConfig, split: Split, policies: dict[str, Trained], reward_model: PRMResult,
          run_dir: Path) -> Scaled:

    problems = split.held_out[:cfg.scale_n]
    scorer = load_prm(reward_model.model_dir)
    sc = ScaleConfig(strategies=tuple(cfg.scale_strategies), budgets=tuple(cfg.scale_budgets), weighted=True,
                     compute="total",
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


def equal_compute(cfg: DemoConfig, split: Split, policies: dict[str, Trained], scaled: Scaled,
                  run_dir: Path) -> EqualCompute:
    """best_of_n guided by the label-free rollout verifier (`equal_compute_scorer`) on the
    sweep's problems, at N = `equal_compute_budgets` in turn until its mean total tokens
    (generated + prefill + scorer: the rollouts are charged) pass those majority@`compare_budget`
    spent there. Its samples are majority's first N (the same seeds): a paired comparison.
    The verifier rolls out on a torch engine of its own, so the policy's count stays its own."""
    problems = split.held_out[:cfg.scale_n]
    params = SearchParams(temperature=cfg.temperature, max_tokens=cfg.max_tokens, max_step_tokens=cfg.max_tokens,
                          seed=cfg.seed)
    spent, rows, records = {}, {}, {}
    for name, policy in policies.items():
        majority = [r for r in read_jsonl(scaled.records[name])
                    if r["strategy"] == "majority" and r["budget"] == cfg.compare_budget]
        spent[name] = sum(map(total_tokens, majority)) / len(majority)
        scorer = load_scorer(cfg.equal_compute_scorer, split.task, problems,
                             policy=partial(make_engine, "torch", policy.model_dir), seed=derive(cfg.seed, "verifier"))
        rows[name], recs = [], []
        with make_engine(cfg.engine, policy.model_dir) as engine:
            for n in cfg.equal_compute_budgets:
                res = search_all("best_of_n", SearchContext(engine, split.task, scorer), problems, replace(params, n=n))
                cell = [{"problem": p.id, "strategy": "best_of_n", "budget": n, "correct": r["correct"],
                         "answer": r["answer"], **{k: r["compute"][k] for k in
                                                   ("generated_tokens", "prefill_tokens", "scorer_tokens")}}
                        for p, r in zip(problems, res["records"])]
                recs += cell
                rows[name].append({"budget": n, "accuracy": sum(r["correct"] for r in cell) / len(cell),
                                   "total_tokens": sum(map(total_tokens, cell)) / len(cell),
                                   "scorer_tokens": sum(r["scorer_tokens"] for r in cell) / len(cell)})
                if rows[name][-1]["total_tokens"] > spent[name]:
                    break
        path = run_dir / f"equal_compute_{name}_records.jsonl"
        write_jsonl(path, recs)
        records[name] = str(path)
    return EqualCompute(spent, rows, records)


def _worker_engine_and_task(cfg: DemoConfig, model_dir: str):
    """A Ray worker's own engine on `model_dir`, and the demo's task."""
    return make_engine(cfg.engine, model_dir), get_task(cfg.task, **cfg.task_args)


def _worker_search_context(cfg: DemoConfig, model_dir: str, prm_dir: str):
    engine, task = _worker_engine_and_task(cfg, model_dir)
    return SearchContext(engine, task, load_prm(prm_dir))
