"""`ponder demo`: the main job: SFT, annotation, PRM, RL and test-time scaling on countdown, with a report; resumable.

Each stage is cached in the run directory, so a rerun skips what is done and a killed run
resumes; a rerun with other options is refused (`--force` starts the run over). `--quick` runs
the same pipeline on small budgets (about a minute).
"""
from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ponder.config import ConfigError, field_values, require, to_dict
from ponder.pipeline.demo import QUICK, DemoConfig


@dataclass
class Config(DemoConfig):
    run: str = "demo"
    """run name: outputs go to <runs-dir>/<run>/ (with --quick and no --run: <runs-dir>/demo-quick/)"""
    runs_dir: str = "runs"
    """parent folder of run directories"""
    quick: bool = False
    """same pipeline on small budgets (about a minute); options given explicitly still apply"""
    force: bool = False
    """start the run over: delete its stage outputs and rerun every stage"""


def pipeline_config(cfg: Config) -> DemoConfig:
    """The demo's own options, with --quick's small budgets under any option set explicitly
    (typed or in the --config file, even when equal to the default)."""
    from ponder.config import given

    values = field_values(cfg, DemoConfig)
    if cfg.quick:
        typed = given(cfg)
        if typed is None:  # a config built in code: what differs from the default was set
            defaults = DemoConfig()
            typed = {k for k in QUICK if values[k] != getattr(defaults, k)}
        values.update({k: v for k, v in QUICK.items() if k not in typed})
    return DemoConfig(**values)


def run(cfg: Config) -> dict:
    from ponder.generation import is_url
    from ponder.pipeline import demo as stages
    from ponder.pipeline.report import write_report
    from ponder.pipeline.stages import Stage, run_stages
    from ponder.runs import start_run, write_json
    from ponder.parallel import NOT_CONFIG, check_workers

    if is_url(cfg.engine):
        raise ConfigError(f"--engine {cfg.engine}: the demo trains its own models and samples from each in turn, "
                          "which a server serving one model cannot do; use --engine torch or --engine vllm")
    require(cfg, choices={"engine": ("torch", "vllm")})
    dc = pipeline_config(cfg)
    require(dc, positive=("n_train", "sft_steps", "batch_size", "eval_n", "dev_n", "max_tokens", "annotate_n",
                          "annotate_samples", "annotate_k", "prm_steps", "prm_eval_n", "prm_eval_samples", "rl_steps",
                          "rl_prompts", "rl_group", "scale_n", "compare_budget", "lr", "rl_lr"),
            non_negative=("eval_k", "temperature"))
    require(dc, choices={"rl_estimator": ("grpo", "process_grpo")})
    if dc.rl_group < 2:
        raise ConfigError(f"--rl-group {dc.rl_group}: GRPO compares each sample with the others of its group, so it "
                          "needs at least 2 samples per prompt")
    if dc.compare_budget not in dc.scale_budgets or dc.compare_strategy not in dc.scale_strategies \
            or "majority" not in dc.scale_strategies:
        raise ConfigError(f"the fixed comparison {dc.compare_strategy}@{dc.compare_budget} vs majority@"
                          f"{dc.compare_budget} must be in the sweep: scale_strategies {dc.scale_strategies}, "
                          f"scale_budgets {dc.scale_budgets}")
    if dc.rl_estimator == "process_grpo":
        from ponder.tasks import get_task

        if not get_task(dc.task, **dc.task_args).has_step_checker:
            raise ConfigError(f"--rl-estimator process_grpo rewards steps with the task's exact step checker, and "
                              f"task {dc.task!r} has none; use --rl-estimator grpo")
    from ponder.config import given

    run_named = "run" in given(cfg) if given(cfg) is not None else cfg.run != "demo"
    run_dir = Path(cfg.runs_dir) / (cfg.run + ("-quick" if cfg.quick and not run_named else ""))
    if cfg.force:
        # Training stages resume from their checkpoints and annotation from its records, so
        # starting over means removing them, not just the stage markers.
        for sub in ("stages", "init", "sft", "annotate", "prm", "rl", "config.yaml"):
            target = run_dir / sub
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    check_workers(dc.workers, dc.ray_address)
    start_run(run_dir, to_dict(dc), "demo", start_over="add --force", ignore=("run", "runs_dir", *NOT_CONFIG))
    t_start = time.time()
    split = stages.make_split(dc)
    pipeline = [
        Stage("build", lambda r: stages.build(dc, run_dir), stages.Built, "character tokenizer + tiny Llama from scratch"),
        Stage("sft", lambda r: stages.sft(dc, split, r["build"], run_dir), stages.Trained,
              f"SFT on {dc.task} reference solutions"),
        Stage("eval_sft", lambda r: stages.evaluate_policy(dc, split, r["sft"], run_dir / "eval_sft_records.jsonl"),
              stages.Evaluated, "SFT policy: held-out accuracy"),
        Stage("annotate", lambda r: stages.annotate(dc, split, r["sft"], run_dir), stages.Annotated,
              "sample solutions; outcome + Math-Shepherd + OmegaPRM labels"),
        Stage("prm", lambda r: stages.prm(dc, split, r["sft"], r["annotate"], run_dir), stages.PRMResult,
              "PRM on OmegaPRM labels; F1 and best-of-N on held-out samples"),
        Stage("rl", lambda r: stages.rl(dc, split, r["sft"], run_dir), stages.Trained,
              "GRPO from the SFT policy, " + ("exact step rewards" if dc.rl_estimator == "process_grpo"
                                              else "outcome reward")),
        Stage("eval_rl", lambda r: stages.evaluate_policy(dc, split, r["rl"], run_dir / "eval_rl_records.jsonl"),
              stages.Evaluated, "RL policy: held-out accuracy"),
        Stage("scale", lambda r: stages.scale(dc, split, {"sft": r["sft"], "rl": r["rl"]}, r["prm"], run_dir),
              stages.Scaled, "test-time scaling sweep with the PRM, SFT and RL policies"),
    ]
    results, wall = run_stages(run_dir, pipeline)
    summary = stages.build_summary(dc, results, wall, time.time() - t_start)
    write_json(run_dir / "summary.json", summary)
    write_report(run_dir, summary, results)
    return {"run_dir": str(run_dir), "eval": summary["eval"]}


def show(out: dict, console) -> None:
    import json

    console.print(f"run directory: {out['run_dir']}")
    print(json.dumps(out["eval"]))
