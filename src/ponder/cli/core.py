"""`ponder tasks`, `sft`, `eval`, `generate`, `demo`."""
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
    _print_summary,
    _resolve_run_model,
    _task_args,
    app,
    console,
)


def _open_engine(engine: str | None, model: str, **kw):
    """The engine of a command: `model` is resolved as a run name for the in-process engines
    and is the served model's name for a server."""
    from ponder.generation import is_url, make_engine

    spec = engine or "torch"
    return make_engine(spec, model if is_url(spec) else _resolve_run_model(model), **kw)


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
    model: str = typer.Option(..., help="model dir, .gguf, smollm2, or a run name under runs/ (with a server "
                                        "engine: the served model's name)"),
    config: Optional[Path] = ConfigOpt,
    engine: Optional[str] = EngineOpt,
    api_key: Optional[str] = ApiKeyOpt,
    max_concurrency: Optional[int] = ConcurrencyOpt,
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
    from ponder.tasks import get_task

    cfg = _config(EvalConfig, config, n=n, k=k, temperature=temperature, max_tokens=max_tokens, split=split, seed=seed)
    _engine_env(api_key, max_concurrency)
    try:
        t = get_task(task, **_task_args(task_arg))
        problems = t.problems(cfg.split, n=cfg.n, seed=cfg.seed)
        gen = _open_engine(engine, model, progress=True)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    with gen:
        out = evaluate(gen, t, problems, cfg)
    _print_summary(f"eval: {task} ({len(problems)} problems)", out, output)


@app.command()
def generate(
    model: str = typer.Option(..., help="model dir, .gguf, smollm2, or a run name under runs/ (with a server "
                                        "engine: the served model's name)"),
    engine: Optional[str] = EngineOpt,
    api_key: Optional[str] = ApiKeyOpt,
    max_concurrency: Optional[int] = ConcurrencyOpt,
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
    from ponder.generation import SamplingParams

    problems, texts = None, list(prompt or [])
    if task:
        from ponder.tasks import get_task

        t = get_task(task)
        problems = t.problems("test", n=num_problems, seed=seed)
        texts = [t.prompt(p) for p in problems]
    if not texts:
        _fail("give --prompt or --task")
    _engine_env(api_key, max_concurrency)
    try:
        gen = _open_engine(engine, model)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
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
    force: bool = typer.Option(False, "--force", help="start the run over: delete its stage outputs and rerun all"),
    model: Optional[str] = typer.Option(None, help="tiny:<preset> or a model path"),
    sft_steps: Optional[int] = typer.Option(None, help="SFT optimiser steps"),
    eval_n: Optional[int] = typer.Option(None, help="held-out problems"),
    engine: Optional[str] = typer.Option(None, "--engine", help="engine sampling the trained models: torch or vllm"),
    runs_dir: Path = typer.Option(Path("runs"), help="parent folder of run directories"),
):
    """The main job: SFT, annotation, PRM, RL and test-time scaling on arith, with a report. Resumable."""
    from ponder.pipeline.demo import QUICK, DemoConfig, demo as run_demo

    base = dict(QUICK) if quick else {}
    flags = {**base, **{k: v for k, v in dict(model=model, sft_steps=sft_steps, eval_n=eval_n, engine=engine).items() if v is not None}}
    cfg = _config(DemoConfig, config, **flags)
    name = run + ("-quick" if quick and run == "demo" else "")
    try:
        summary = run_demo(runs_dir / name, cfg, force=force)
    except ValueError as e:
        _fail(str(e))
    console.print(f"run directory: {runs_dir / name}")
    print(json.dumps(summary["eval"]))
