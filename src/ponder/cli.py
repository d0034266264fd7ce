"""The `ponder` command line. Every command takes `--config file.yaml`; flags override it."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="ponder: build reasoning models — data, training, test-time scaling.")
console = Console()
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML file of options; flags given here override it.")
RunOpt = typer.Option(None, "--run", help="run name: outputs go to runs/<name>/")


def _fail(msg: str) -> None:
    console.print(f"[bold red]error:[/bold red] {msg}")
    raise typer.Exit(2)


def _config(cls, path, **flags):
    from ponder.config import ConfigError, load_config

    try:
        return load_config(cls, path, flags)
    except ConfigError as e:
        _fail(str(e))


def _task_args(pairs: list[str] | None) -> dict:
    """`--task-arg num_ops=3 --task-arg parens=false` -> {"num_ops": 3, "parens": False}."""
    import yaml

    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            _fail(f"--task-arg {pair!r}: expected key=value")
        k, v = pair.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


@app.command()
def tasks():
    """List the registered tasks with an example problem."""
    from ponder.tasks import TASKS, get_task

    table = Table(title="tasks")
    for col in ("name", "exact step checker", "example prompt", "answer"):
        table.add_column(col)
    for name in sorted(TASKS):
        try:
            task = get_task(name)
            p = task.problems("test", n=1, seed=0)[0]
            table.add_row(name, "yes" if task.has_step_checker else "no", task.prompt(p).strip(), p.answer)
        except Exception as e:  # tasks that need a path or an extra say so
            table.add_row(name, "-", f"[dim]{type(e).__name__}: {e}[/dim]", "")
    console.print(table)
    console.print("File datasets: pass a .jsonl/.parquet path as --task (GSM8K, MATH-style, or generic).")


@app.command()
def sft(
    config: Optional[Path] = ConfigOpt,
    run: Optional[str] = RunOpt,
    task: Optional[str] = typer.Option(None, help="task name or dataset path whose reference solutions to learn"),
    data: Optional[Path] = typer.Option(None, help="prompt-completion JSONL to train on instead of a task"),
    model: Optional[str] = typer.Option(None, help="tiny:<1m|4m|20m> (from scratch), a model dir, a .gguf, or smollm2"),
    steps: Optional[int] = typer.Option(None, help="optimiser steps"),
    batch_size: Optional[int] = typer.Option(None, help="batch size"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate"),
    n_train: Optional[int] = typer.Option(None, help="training problems drawn from the task"),
    task_arg: Optional[list[str]] = typer.Option(None, help="task knob key=value (repeatable)"),
    seed: Optional[int] = typer.Option(None, help="seed"),
):
    """Supervised fine-tuning on reference solutions (or a prompt-completion file); resumable."""
    from ponder.train.sft_cli import SFTArgs, run_sft

    args = _config(SFTArgs, config, run=run, task=task, data=str(data) if data else None, model=model, steps=steps,
                   batch_size=batch_size, lr=lr, n_train=n_train, seed=seed,
                   task_args=_task_args(task_arg) or None)
    try:
        out = run_sft(args)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    console.print_json(json.dumps(out))


@app.command("eval")
def eval_cmd(
    model: str = typer.Option(..., help="model dir, .gguf, smollm2, or a run name under runs/"),
    config: Optional[Path] = ConfigOpt,
    task: str = typer.Option("arith", help="task name or dataset path"),
    n: Optional[int] = typer.Option(None, help="number of problems"),
    k: Optional[int] = typer.Option(None, help="samples per problem for pass@k / maj@k (0 = greedy only)"),
    temperature: Optional[float] = typer.Option(None, help="sampling temperature"),
    max_tokens: Optional[int] = typer.Option(None, help="max generated tokens"),
    split: Optional[str] = typer.Option(None, help="split"),
    seed: Optional[int] = typer.Option(None, help="seed"),
    task_arg: Optional[list[str]] = typer.Option(None, help="task knob key=value (repeatable)"),
    output: Optional[Path] = typer.Option(None, help="write the JSON result here"),
):
    """Greedy accuracy, unbiased pass@k, maj@k and mean tokens per solution."""
    from ponder.eval import EvalConfig, evaluate
    from ponder.generation import TorchGenerator
    from ponder.models import load_model
    from ponder.tasks import get_task

    cfg = _config(EvalConfig, config, n=n, k=k, temperature=temperature, max_tokens=max_tokens, split=split, seed=seed)
    try:
        model_path = _resolve_run_model(model)
        t = get_task(task, **_task_args(task_arg))
        problems = t.problems(cfg.split, n=cfg.n, seed=cfg.seed)
        m, tok = load_model(model_path)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    out = evaluate(TorchGenerator(m, tok, progress=True), t, problems, cfg)
    table = Table(title=f"eval: {task} ({len(problems)} problems)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, v in out["summary"].items():
        table.add_row(key, f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(table)
    if output:
        output.write_text(json.dumps(out, indent=2))
    print(json.dumps(out["summary"]))


@app.command()
def generate(
    model: str = typer.Option(..., help="model dir, .gguf, smollm2, or a run name under runs/"),
    prompt: Optional[list[str]] = typer.Option(None, help="prompt text (repeatable)"),
    task: Optional[str] = typer.Option(None, help="take prompts from this task's test split"),
    num_problems: int = typer.Option(3, help="problems to take from --task"),
    n: int = typer.Option(1, help="samples per prompt"),
    temperature: float = typer.Option(0.0, help="0 = greedy"),
    top_p: float = typer.Option(1.0),
    top_k: int = typer.Option(0),
    max_tokens: int = typer.Option(128),
    stop: Optional[list[str]] = typer.Option(None, help="stop string (repeatable); \\n is a newline"),
    seed: int = typer.Option(0),
):
    """Sample completions from a model and show them with their token counts."""
    from ponder.generation import SamplingParams, TorchGenerator
    from ponder.models import load_model

    problems, texts = None, list(prompt or [])
    if task:
        from ponder.tasks import get_task

        t = get_task(task)
        problems = t.problems("test", n=num_problems, seed=seed)
        texts = [t.prompt(p) for p in problems]
    if not texts:
        _fail("give --prompt or --task")
    try:
        m, tok = load_model(_resolve_run_model(model))
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    gen = TorchGenerator(m, tok)
    stops = [s.encode().decode("unicode_escape") for s in (stop or [])]
    sp = SamplingParams(n=n, temperature=temperature, top_p=top_p, top_k=top_k, max_tokens=max_tokens, stop=stops,
                        seed=seed)
    outs = gen.generate(texts, sp)
    for i, (text, samples) in enumerate(zip(texts, outs)):
        console.rule(f"prompt {i}")
        console.print(text, markup=False)
        for s in samples:
            verdict = ""
            if problems is not None:
                verdict = "correct" if t.is_correct(problems[i], s.text) else f"wrong (gold {problems[i].answer})"
            console.print(f"[cyan]--- {s.num_tokens} tokens, {s.finish_reason} {verdict}[/cyan]")
            console.print(s.text, markup=False)
    console.print(f"prefill tokens {gen.usage.prefill_tokens}, generated tokens {gen.usage.generated_tokens}")


@app.command()
def demo(
    config: Optional[Path] = ConfigOpt,
    run: str = typer.Option("demo", help="run name: outputs go to runs/<name>/"),
    quick: bool = typer.Option(False, "--quick", help="same pipeline on small budgets (about a minute)"),
    force: bool = typer.Option(False, "--force", help="rerun finished stages"),
    model: Optional[str] = typer.Option(None, help="tiny:<preset> or a model path"),
    sft_steps: Optional[int] = typer.Option(None, help="SFT optimiser steps"),
    eval_n: Optional[int] = typer.Option(None, help="held-out problems"),
    runs_dir: Path = typer.Option(Path("runs"), help="parent folder of run directories"),
):
    """The main job: build a tiny model, SFT it on arith, evaluate held-out, report. Resumable."""
    from ponder.pipeline.demo import QUICK, DemoConfig, demo as run_demo

    base = dict(QUICK) if quick else {}
    flags = {**base, **{k: v for k, v in dict(model=model, sft_steps=sft_steps, eval_n=eval_n).items() if v is not None}}
    cfg = _config(DemoConfig, config, **flags)
    name = run + ("-quick" if quick and run == "demo" else "")
    summary = run_demo(runs_dir / name, cfg, force=force)
    console.print(f"run directory: {runs_dir / name}")
    print(json.dumps(summary["eval"]))


def _resolve_run_model(name: str) -> str:
    """A run name (runs/<name>) resolves to its trained model folder."""
    p = Path(name)
    for cand in (p / "model", p / "sft" / "model", Path("runs") / name / "sft" / "model", Path("runs") / name / "model"):
        if (cand / "config.json").exists():
            return str(cand)
    return name


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
    seed: Optional[int] = typer.Option(None, help="seed"),
    runs_dir: Optional[str] = typer.Option(None, help="parent folder of run directories"),
):
    """Online RL (GRPO, Dr. GRPO, RLOO, REINFORCE++, PPO, process-supervised GRPO); resumable."""
    from ponder.rewards.functions import RewardError
    from ponder.train.rl_cli import RLArgs, run_rl

    args = _config(RLArgs, config, run=run, model=model, task=task, estimator=estimator, steps=steps,
                   prompts_per_step=prompts_per_step, group_size=group_size, max_tokens=max_tokens, lr=lr, beta=beta,
                   rewards=list(reward) if reward else None, prm=prm, lora_r=lora_r, n_eval=n_eval, seed=seed,
                   runs_dir=runs_dir, task_args=_task_args(task_arg) or None)
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
    seed: Optional[int] = typer.Option(None, help="seed"),
    runs_dir: Optional[str] = typer.Option(None, help="parent folder of run directories"),
):
    """DPO on preference pairs, or Step-DPO on pairs built from the task's step checker; resumable."""
    from ponder.train.dpo import DPOArgs, run_dpo

    args = _config(DPOArgs, config, run=run, model=model, data=str(data) if data else None, step=step, task=task,
                   beta=beta, steps=steps, batch_size=batch_size, lr=lr, n_eval=n_eval, seed=seed, runs_dir=runs_dir,
                   task_args=_task_args(task_arg) or None)
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
    seed: Optional[int] = typer.Option(None, help="seed"),
    runs_dir: Optional[str] = typer.Option(None, help="parent folder of run directories"),
):
    """Expert iteration (STaR / ReST-EM): sample, keep verified solutions, SFT; accuracy per round."""
    from ponder.train.iterate import IterateArgs, run_iterate

    args = _config(IterateArgs, config, run=run, model=model, task=task, rounds=rounds, n_problems=n_problems,
                   samples=samples, sft_steps=sft_steps, n_eval=n_eval, seed=seed, runs_dir=runs_dir,
                   task_args=_task_args(task_arg) or None)
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


def main():
    app()


if __name__ == "__main__":
    sys.exit(main())
