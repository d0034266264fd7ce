"""`ponder rl`, `dpo`, `iterate`: learning from rewards and preferences."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ponder.cli import (
    ApiKeyOpt,
    ConcurrencyOpt,
    ConfigOpt,
    EngineOpt,
    RunOpt,
    _config,
    _engine_env,
    _fail,
    _task_args,
    app,
    console,
)


@app.command()
def rl(
    config: Optional[Path] = ConfigOpt,
    run: Optional[str] = RunOpt,
    model: Optional[str] = typer.Option(None, help="policy to start from: a model dir, .gguf, smollm2 or tiny:<preset>"),
    task: Optional[str] = typer.Option(None, help="task name or dataset path"),
    estimator: Optional[str] = typer.Option(None, help="grpo, dr_grpo, rloo, reinforce_pp, gae, process_grpo"),
    steps: Optional[int] = typer.Option(None, help="RL steps (rollouts)"),
    prompts_per_step: Optional[int] = typer.Option(None, help="prompts per rollout"),
    group_size: Optional[int] = typer.Option(None, help="samples per prompt"),
    max_tokens: Optional[int] = typer.Option(None, help="generated tokens per sample, at most"),
    lr: Optional[float] = typer.Option(None, help="learning rate"),
    beta: Optional[float] = typer.Option(None, help="KL coefficient to the initial policy (0 = off)"),
    reward: Optional[list[str]] = typer.Option(None, help="outcome, format, overlong or file.py:function (repeatable)"),
    prm: Optional[str] = typer.Option(None, help="process reward model dir (process_grpo step scores, else a reward)"),
    lora_r: Optional[int] = typer.Option(None, help="LoRA rank (0 = full fine-tuning; needs peft)"),
    n_eval: Optional[int] = typer.Option(None, help="held-out problems for greedy evaluation"),
    task_arg: Optional[list[str]] = typer.Option(None, help="task knob key=value (repeatable)"),
    engine: Optional[str] = EngineOpt,
    api_key: Optional[str] = ApiKeyOpt,
    max_concurrency: Optional[int] = ConcurrencyOpt,
    seed: Optional[int] = typer.Option(None, help="seed"),
    runs_dir: Optional[str] = typer.Option(None, help="parent folder of run directories"),
):
    """Online RL (GRPO, Dr. GRPO, RLOO, REINFORCE++, PPO, process-supervised GRPO); resumable."""
    from ponder.rewards.functions import RewardError
    from ponder.train.rl_cli import RLArgs, run_rl

    args = _config(RLArgs, config, run=run, model=model, task=task, estimator=estimator, steps=steps,
                   prompts_per_step=prompts_per_step, group_size=group_size, max_tokens=max_tokens, lr=lr, beta=beta,
                   rewards=list(reward) if reward else None, prm=prm, lora_r=lora_r, n_eval=n_eval, seed=seed, engine=engine,
                   runs_dir=runs_dir, task_args=_task_args(task_arg) or None)
    _engine_env(api_key, max_concurrency)
    try:
        out = run_rl(args)
    except (FileNotFoundError, ValueError, ImportError, RewardError, FloatingPointError) as e:
        _fail(str(e))
    console.print_json(json.dumps(out))


@app.command()
def dpo(
    config: Optional[Path] = ConfigOpt,
    run: Optional[str] = RunOpt,
    model: Optional[str] = typer.Option(None, help="policy to start from (also the frozen reference)"),
    data: Optional[Path] = typer.Option(None, help="TRL preference JSONL; without it, Step-DPO pairs are built from the task"),
    step: Optional[bool] = typer.Option(None, "--step/--no-step", help="Step-DPO: pairs are single steps (no EOS)"),
    task: Optional[str] = typer.Option(None, help="task for evaluation and for building Step-DPO pairs"),
    beta: Optional[float] = typer.Option(None, help="DPO beta"),
    steps: Optional[int] = typer.Option(None, help="optimiser steps"),
    batch_size: Optional[int] = typer.Option(None, help="pairs per step"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate"),
    n_eval: Optional[int] = typer.Option(None, help="held-out problems for greedy accuracy"),
    task_arg: Optional[list[str]] = typer.Option(None, help="task knob key=value (repeatable)"),
    engine: Optional[str] = EngineOpt,
    api_key: Optional[str] = ApiKeyOpt,
    max_concurrency: Optional[int] = ConcurrencyOpt,
    seed: Optional[int] = typer.Option(None, help="seed"),
    runs_dir: Optional[str] = typer.Option(None, help="parent folder of run directories"),
):
    """DPO on preference pairs, or Step-DPO on pairs built from the task's step checker; resumable."""
    from ponder.train.dpo import DPOArgs, run_dpo

    args = _config(DPOArgs, config, run=run, model=model, data=str(data) if data else None, step=step, task=task,
                   beta=beta, steps=steps, batch_size=batch_size, lr=lr, n_eval=n_eval, seed=seed, engine=engine, runs_dir=runs_dir,
                   task_args=_task_args(task_arg) or None)
    _engine_env(api_key, max_concurrency)
    try:
        out = run_dpo(args)
    except (FileNotFoundError, ValueError, FloatingPointError) as e:
        _fail(str(e))
    console.print_json(json.dumps(out))


@app.command()
def iterate(
    config: Optional[Path] = ConfigOpt,
    run: Optional[str] = RunOpt,
    model: Optional[str] = typer.Option(None, help="model to start from"),
    task: Optional[str] = typer.Option(None, help="task with a verifier"),
    rounds: Optional[int] = typer.Option(None, help="sample -> filter -> SFT rounds"),
    n_problems: Optional[int] = typer.Option(None, help="training problems per round"),
    samples: Optional[int] = typer.Option(None, help="solutions sampled per problem"),
    sft_steps: Optional[int] = typer.Option(None, help="SFT steps per round"),
    n_eval: Optional[int] = typer.Option(None, help="held-out problems for greedy accuracy"),
    task_arg: Optional[list[str]] = typer.Option(None, help="task knob key=value (repeatable)"),
    engine: Optional[str] = EngineOpt,
    api_key: Optional[str] = ApiKeyOpt,
    max_concurrency: Optional[int] = ConcurrencyOpt,
    seed: Optional[int] = typer.Option(None, help="seed"),
    runs_dir: Optional[str] = typer.Option(None, help="parent folder of run directories"),
):
    """Expert iteration (STaR / ReST-EM): sample, keep verified solutions, SFT; accuracy per round."""
    from ponder.train.iterate import IterateArgs, run_iterate

    args = _config(IterateArgs, config, run=run, model=model, task=task, rounds=rounds, n_problems=n_problems,
                   samples=samples, sft_steps=sft_steps, n_eval=n_eval, seed=seed, engine=engine, runs_dir=runs_dir,
                   task_args=_task_args(task_arg) or None)
    _engine_env(api_key, max_concurrency)
    try:
        out = run_iterate(args)
    except (FileNotFoundError, ValueError, FloatingPointError) as e:
        _fail(str(e))
    table = Table(title=f"expert iteration: {args.task}")
    for col in ("round", "kept / sampled", "held-out greedy accuracy"):
        table.add_column(col)
    for rec in out["rounds"]:
        table.add_row(str(rec["round"]), f"{rec.get('kept', '-')} / {rec.get('sampled', '-')}", f"{rec['accuracy']:.3f}")
    console.print(table)
    print(json.dumps(out))
