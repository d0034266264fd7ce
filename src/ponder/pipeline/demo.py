"""`ponder demo`: the whole reasoning-model pipeline as one resumable run of cached stages.

build -> sft -> eval_sft -> annotate -> prm -> rl -> eval_rl -> scale -> report

1. a character tokenizer and a tiny Llama, SFT on `arith` reference solutions;
2. solutions sampled from the SFT policy, labelled by outcome and by Math-Shepherd MC and
   OmegaPRM (scored against the exact step checker); a PRM trained on the OmegaPRM labels
   (no ground truth) and evaluated on held-out samples (ProcessBench F1, best-of-N);
3. GRPO from the SFT policy with the outcome verifier as reward;
4. a test-time scaling sweep (greedy, majority, best-of-N and beam search with the PRM) on
   held-out problems for the SFT and the RL policy;
5. report.md, report.html (plots embedded), summary.json and a terminal table.

Each stage writes stages/<name>.json when it finishes; a rerun skips finished stages and a
stage killed mid-way resumes from its own checkpoint (training) or records (annotation).
The held-out set (first `eval_n` of a test draw) is never trained or selected on; the dev
set (the next `dev_n`) is what training watches.
"""
from __future__ import annotations

import json
import shutil
import sys
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
    sft_steps: int = 1000
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
    rl_steps: int = 60
    """GRPO steps (one rollout batch each)"""
    rl_prompts: int = 16
    """prompts per GRPO step"""
    rl_group: int = 8
    """samples per prompt (G)"""
    rl_lr: float = 3e-5
    """GRPO learning rate (1e-4 and above lowered held-out greedy accuracy on this model)"""
    scale_n: int = 40
    """held-out problems in the test-time scaling sweep"""
    scale_budgets: list = field(default_factory=lambda: [1, 4, 16])
    """budgets N of the sweep"""
    scale_strategies: list = field(default_factory=lambda: ["greedy", "majority", "best_of_n", "beam"])
    """strategies of the sweep (best_of_n and beam use the PRM)"""
    engine: str = "torch"
    """engine that samples from the trained models (evaluation, annotation, RL rollouts,
    scaling sweep): torch or vllm. A server URL does not fit: the demo trains its own models"""
    seed: int = 0
    """seed for data, initialisation and sampling"""


QUICK = dict(n_train=3000, sft_steps=150, batch_size=16, eval_n=24, eval_k=4, dev_n=12, annotate_n=8,
             annotate_samples=2, annotate_k=2, prm_steps=10, prm_eval_n=8, prm_eval_samples=4, rl_steps=3,
             rl_prompts=4, rl_group=4, scale_n=6, scale_budgets=[1, 4])


def demo(run_dir: Path, cfg: DemoConfig, force: bool = False) -> dict:
    from ponder.generation import is_url, make_engine
    from ponder.tasks import get_task

    if is_url(cfg.engine):
        raise ValueError(f"engine {cfg.engine}: the demo trains its own models and samples from each in turn, "
                         "which a server serving one model cannot do; use --engine torch or --engine vllm")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / "config.yaml"
    if force:
        # Training stages resume from their checkpoints and annotation from its records, so
        # starting over means removing them, not just the stage markers.
        for sub in ("stages", "init", "sft", "annotate", "prm", "rl"):
            shutil.rmtree(run_dir / sub, ignore_errors=True)
    elif saved.exists():
        import yaml

        if yaml.safe_load(saved.read_text()) != json.loads(json.dumps(to_dict(cfg))):
            raise ValueError(f"{run_dir} holds a demo run with a different config ({saved}): its cached stages "
                             "would not match; use another --run name, or --force to start it over")
    write_yaml(saved, to_dict(cfg))
    task = get_task(cfg.task, **cfg.task_args)
    t_start = time.time()

    def split():
        """(held-out, dev): disjoint slices of one test draw, never in the train split."""
        problems = task.problems("test", n=cfg.eval_n + cfg.dev_n, seed=cfg.seed)
        return problems[:cfg.eval_n], problems[cfg.eval_n:]

    def build(_):
        from ponder.models import count_params, model_from_spec

        model, tokenizer = model_from_spec(cfg.model, seed=cfg.seed)
        out = run_dir / "init"
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        return {"model_dir": str(out), "params": count_params(model), "spec": cfg.model}

    def sft(results):
        from ponder.generation.base import SamplingParams
        from ponder.models import load_model
        from ponder.train.loop import TrainConfig
        from ponder.train.sft import reference_rows, train_sft

        model, tokenizer = load_model(results["build"]["model_dir"])
        rows = reference_rows(task, cfg.n_train, cfg.seed)
        dev = split()[1]

        def dev_accuracy(m):
            gen = make_engine("torch", m, tokenizer=tokenizer)  # the model in training
            outs = gen.generate([task.prompt(p) for p in dev], SamplingParams(temperature=0.0, max_tokens=cfg.max_tokens))
            return {"greedy_accuracy": sum(task.is_correct(p, o[0].text) for p, o in zip(dev, outs)) / len(dev)}

        tc = TrainConfig(lr=cfg.lr, max_steps=cfg.sft_steps, warmup_steps=cfg.warmup_steps, seed=cfg.seed,
                         eval_every=max(cfg.sft_steps // 4, 1), save_every=max(cfg.sft_steps // 4, 1))
        final = train_sft(model, tokenizer, rows, run_dir / "sft", tc, batch_size=cfg.batch_size, eval_fn=dev_accuracy)
        return {"model_dir": str(run_dir / "sft" / "model"), "final": final, "train_examples": len(rows),
                "metrics": str(run_dir / "sft" / "metrics.jsonl")}

    def evaluate_policy(name: str, model_dir: str) -> dict:
        from ponder.eval import EvalConfig, evaluate

        ec = EvalConfig(n=cfg.eval_n, k=cfg.eval_k, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                        seed=cfg.seed + 7)
        with make_engine(cfg.engine, model_dir) as engine:
            out = evaluate(engine, task, split()[0], ec)
        path = run_dir / f"eval_{name}_records.jsonl"
        with open(path, "w") as f:
            for r in out["records"]:
                f.write(json.dumps(r) + "\n")
        return {"summary": out["summary"], "records": str(path)}

    def annotate_stage(results):
        from ponder.annotate import AnnotateConfig, annotate

        methods = ["math_shepherd", "omega_prm"] + (["truth"] if task.has_step_checker else [])
        ac = AnnotateConfig(run="annotate", runs_dir=str(run_dir), task=cfg.task, task_args=cfg.task_args,
                            n_problems=cfg.annotate_n, policy=results["sft"]["model_dir"], engine=cfg.engine,
                            samples=cfg.annotate_samples, k=cfg.annotate_k, temperature=1.0,
                            max_tokens=cfg.max_tokens, methods=methods, chunk=32, seed=cfg.seed)
        summary = annotate(ac)
        return {"summary": summary, "dir": str(run_dir / "annotate")}

    def prm_stage(results):
        from ponder.eval.rm import evaluate_reward_model, sample_solutions, vote_and_oracle
        from ponder.rewards.model import load_prm
        from ponder.train.rm import RMArgs, run_train_rm

        data = Path(results["annotate"]["dir"]) / "stepwise_omega_prm.jsonl"
        trained = run_train_rm(RMArgs(run="prm", runs_dir=str(run_dir), kind="prm", data=str(data),
                                      model=results["sft"]["model_dir"], steps=cfg.prm_steps, seed=cfg.seed))
        prm = load_prm(trained["model_dir"])
        held_out = split()[0][:cfg.prm_eval_n]
        with make_engine(cfg.engine, results["sft"]["model_dir"]) as gen:
            samples = sample_solutions(gen, task, held_out, cfg.prm_eval_samples, 1.0, cfg.max_tokens, cfg.seed + 11)
        quality = evaluate_reward_model(prm, samples, prm.aggregation)
        maj, oracle = vote_and_oracle(samples, list(quality["best_of_n"]))
        return {"model_dir": trained["model_dir"], "train_examples": trained["examples"], "final_loss": trained["loss"],
                "metrics": str(run_dir / "prm" / "metrics.jsonl"), **quality, "majority": maj, "oracle": oracle}

    def rl_stage(results):
        from ponder.models import load_model
        from ponder.train.rl import RLConfig, RLTrainer
        from ponder.train.rl_cli import RLArgs, build_rewards

        model, tokenizer = load_model(results["sft"]["model_dir"])
        rc = RLConfig(estimator="grpo", steps=cfg.rl_steps, prompts_per_step=cfg.rl_prompts, group_size=cfg.rl_group,
                      max_tokens=cfg.max_tokens, lr=cfg.rl_lr, eval_every=max(cfg.rl_steps // 4, 1),
                      save_every=max(cfg.rl_steps // 4, 1), seed=cfg.seed)
        rewards, _ = build_rewards(RLArgs(rewards=["outcome"], max_tokens=cfg.max_tokens), task)
        train = task.problems("train", n=max(cfg.rl_steps * cfg.rl_prompts, cfg.rl_prompts), seed=cfg.seed + 1)
        trainer = RLTrainer(model, tokenizer, task, train, split()[1], rewards, rc, run_dir / "rl",
                            engine=cfg.engine)
        final = trainer.train()
        return {"model_dir": str(run_dir / "rl" / "model"), "final": final, "metrics": str(run_dir / "rl" / "metrics.jsonl")}

    def scale_stage(results):
        from ponder.rewards.model import load_prm
        from ponder.search import SearchContext
        from ponder.search.scale import ScaleConfig, run_scale

        problems = split()[0][:cfg.scale_n]
        prm = load_prm(results["prm"]["model_dir"])
        sc = ScaleConfig(strategies=tuple(cfg.scale_strategies), budgets=tuple(cfg.scale_budgets), weighted=True,
                         temperature=cfg.temperature, max_tokens=cfg.max_tokens, max_step_tokens=cfg.max_tokens, beam_width=4,
                         seed=cfg.seed)
        out = {}
        for name in ("sft", "rl"):
            with make_engine(cfg.engine, results[name]["model_dir"]) as engine:
                res = run_scale(SearchContext(engine, task, prm), problems, sc)
            path = run_dir / f"scale_{name}_records.jsonl"
            with open(path, "w") as f:
                for r in res["records"]:
                    f.write(json.dumps(r) + "\n")
            out[name] = {"rows": res["rows"], "records": str(path)}
        return out

    stages = [
        Stage("build", build, "character tokenizer + tiny Llama from scratch"),
        Stage("sft", sft, f"SFT on {cfg.task} reference solutions"),
        Stage("eval_sft", lambda r: evaluate_policy("sft", r["sft"]["model_dir"]), "SFT policy: held-out accuracy"),
        Stage("annotate", annotate_stage, "sample solutions; outcome + Math-Shepherd + OmegaPRM labels"),
        Stage("prm", prm_stage, "PRM on OmegaPRM labels; F1 and best-of-N on held-out samples"),
        Stage("rl", rl_stage, "GRPO from the SFT policy, outcome reward"),
        Stage("eval_rl", lambda r: evaluate_policy("rl", r["rl"]["model_dir"]), "RL policy: held-out accuracy"),
        Stage("scale", scale_stage, "test-time scaling sweep with the PRM, SFT and RL policies"),
    ]
    results = run_stages(run_dir, stages, force=force)
    summary = build_summary(cfg, results, time.time() - t_start)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    write_report(run_dir, summary, results)
    return summary


def build_summary(cfg: DemoConfig, results: dict, wall_this_run: float) -> dict:
    """The numbers the report shows, each taken from a stage's output."""
    ann = results["annotate"]["summary"]
    prm = results["prm"]
    scale = {name: results["scale"][name]["rows"] for name in ("sft", "rl")}
    return {
        "task": cfg.task, "task_args": cfg.task_args, "model": cfg.model, "params": results["build"]["params"],
        "command": " ".join(["ponder"] + sys.argv[1:]) if sys.argv and sys.argv[0].endswith("ponder") else "ponder demo",
        "config": to_dict(cfg),
        "eval": {"sft": results["eval_sft"]["summary"], "rl": results["eval_rl"]["summary"]},
        "annotation": {"samples": ann["samples"], "sample_accuracy": ann["sample_accuracy"], "methods": ann["methods"]},
        "prm": {k: prm[k] for k in ("processbench", "best_of_n", "weighted_best_of_n", "majority", "oracle",
                                    "train_examples") if k in prm},
        "scale": scale,
        "comparisons": comparisons(results, scale),
        "wall_s": {name: r.get("wall_s") for name, r in results.items()},
        "wall_s_this_invocation": round(wall_this_run, 2),
    }


def comparisons(results: dict, scale: dict) -> dict:
    """The two claims the demo checks: RL vs SFT greedy accuracy on the held-out set, and
    PRM-guided search vs majority vote at (about) equal generated tokens."""
    sft, rl = results["eval_sft"]["summary"], results["eval_rl"]["summary"]
    out = {"rl_minus_sft_greedy": rl["greedy_accuracy"] - sft["greedy_accuracy"]}
    for name, rows in scale.items():
        maj = {r["budget"]: r for r in rows if r["strategy"] == "majority"}
        best = None
        for r in rows:
            if r["strategy"] in ("best_of_n", "beam") and r["budget"] in maj and r["budget"] > 1:
                gap = r["accuracy"] - maj[r["budget"]]["accuracy"]
                if best is None or gap > best["gap"]:
                    best = {"strategy": r["strategy"], "budget": r["budget"], "gap": gap, "accuracy": r["accuracy"],
                            "tokens": r["generated_tokens"], "majority_accuracy": maj[r["budget"]]["accuracy"],
                            "majority_tokens": maj[r["budget"]]["generated_tokens"]}
        out[f"prm_search_vs_majority_{name}"] = best
    return out
