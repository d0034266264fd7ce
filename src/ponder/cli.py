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


@app.command()
def annotate(
    config: Optional[Path] = ConfigOpt,
    run: Optional[str] = RunOpt,
    task: Optional[str] = typer.Option(None, help="task name or dataset path (GSM8K-format JSONL works)"),
    policy: Optional[str] = typer.Option(None, help="policy model dir, .gguf, smollm2, or a run name"),
    n_problems: Optional[int] = typer.Option(None, help="problems to annotate"),
    samples: Optional[int] = typer.Option(None, help="solutions sampled per problem"),
    method: Optional[list[str]] = typer.Option(None, help="math_shepherd, omega_prm, judge, truth (repeatable)"),
    k: Optional[int] = typer.Option(None, help="rollouts per prefix"),
    max_tokens: Optional[int] = typer.Option(None, help="tokens per solution or rollout"),
    judge_model: Optional[str] = typer.Option(None, help="model used as LLM judge"),
    task_arg: Optional[list[str]] = typer.Option(None, help="task knob key=value (repeatable)"),
    seed: Optional[int] = typer.Option(None, help="seed"),
    runs_dir: Optional[str] = typer.Option(None, help="parent folder of run directories"),
):
    """Sample solutions and label outcomes and steps (Math-Shepherd, OmegaPRM, judge); resumable."""
    from ponder.annotate import AnnotateConfig, annotate as run_annotate

    cfg = _config(AnnotateConfig, config, run=run, task=task, policy=_resolve_run_model(policy) if policy else None,
                  n_problems=n_problems, samples=samples, methods=method or None, k=k, max_tokens=max_tokens,
                  judge_model=judge_model, task_args=_task_args(task_arg) or None, seed=seed, runs_dir=runs_dir)
    try:
        summary = run_annotate(cfg)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    table = Table(title=f"annotation: {summary['samples']} samples of {summary['problems']} problems "
                        f"(accuracy {summary['sample_accuracy']:.3f})")
    cols = ["method", "labelled", "first_error_acc", "step_agreement", "rollouts_per_solution", "tokens_per_solution"]
    for c in ("method", "labelled", "first-error acc", "step agreement", "rollouts/sol", "tokens/sol"):
        table.add_column(c, justify="left" if c == "method" else "right", no_wrap=True)
    for name, row in summary["methods"].items():
        table.add_row(name, *[f"{row[c]:.3f}" if isinstance(row.get(c), float) else str(row.get(c, "-"))
                              for c in cols[1:]])
    console.print(table)
    console.print(f"files: {summary['files']}  in {summary['run_dir']}")


@app.command("train-rm")
def train_rm(
    config: Optional[Path] = ConfigOpt,
    run: Optional[str] = RunOpt,
    kind: Optional[str] = typer.Option(None, help="prm or orm"),
    data: Optional[Path] = typer.Option(None, help="stepwise JSONL (prm) or prompt/completion/label JSONL (orm)"),
    model: Optional[str] = typer.Option(None, help="causal LM to initialise from (usually the policy)"),
    hard: Optional[bool] = typer.Option(None, "--hard/--soft", help="hard (label > 0) or soft labels"),
    aggregation: Optional[str] = typer.Option(None, help="PRM step aggregation: last, min, prod, mean"),
    steps: Optional[int] = typer.Option(None, help="optimiser steps"),
    batch_size: Optional[int] = typer.Option(None, help="batch size"),
    lr: Optional[float] = typer.Option(None, help="peak learning rate"),
    seed: Optional[int] = typer.Option(None, help="seed"),
    runs_dir: Optional[str] = typer.Option(None, help="parent folder of run directories"),
):
    """Train a process (PRM) or outcome (ORM) reward model; resumable."""
    from ponder.train.rm import RMArgs, run_train_rm

    args = _config(RMArgs, config, run=run, kind=kind, data=str(data) if data else None,
                   model=_resolve_run_model(model) if model else None, hard=hard, aggregation=aggregation,
                   steps=steps, batch_size=batch_size, lr=lr, seed=seed, runs_dir=runs_dir)
    try:
        out = run_train_rm(args)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    console.print_json(json.dumps(out))


@app.command("eval-rm")
def eval_rm(
    rm: list[str] = typer.Option(..., help="reward model dir (PRM or ORM) or 'verifier' (repeatable)"),
    config: Optional[Path] = ConfigOpt,
    policy: Optional[str] = typer.Option(None, help="policy that samples the solutions"),
    task: Optional[str] = typer.Option(None, help="task name or dataset path"),
    n: Optional[int] = typer.Option(None, help="problems"),
    samples: Optional[int] = typer.Option(None, help="solutions per problem (largest best-of-N)"),
    max_tokens: Optional[int] = typer.Option(None, help="tokens per solution"),
    aggregation: Optional[str] = typer.Option(None, help="PRM step aggregation: last, min, prod, mean"),
    threshold: Optional[float] = typer.Option(None, help="step score below this = predicted error"),
    task_arg: Optional[list[str]] = typer.Option(None, help="task knob key=value (repeatable)"),
    seed: Optional[int] = typer.Option(None, help="seed"),
    output: Optional[Path] = typer.Option(None, help="write the JSON result here"),
):
    """ProcessBench-style F1 and best-of-N accuracy of reward models, beside majority vote."""
    from ponder.eval.rm import EvalRMConfig, run_eval_rm

    cfg = _config(EvalRMConfig, config, policy=_resolve_run_model(policy) if policy else None, task=task, n=n,
                  samples=samples, max_tokens=max_tokens, aggregation=aggregation, threshold=threshold,
                  task_args=_task_args(task_arg) or None, seed=seed)
    try:
        out = run_eval_rm(rm, cfg)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    ns = list(out["majority"])
    table = Table(title=f"reward models: {out['problems']} problems x {out['samples']} samples "
                        f"(sample accuracy {out['sample_accuracy']:.3f})")
    for c in ["selector", "F1", *[f"@{n}" for n in ns]]:
        table.add_column(c, justify="left" if c == "selector" else "right")
    for name, res in out["models"].items():
        f1 = res.get("processbench", {}).get("f1")
        table.add_row(f"{name} ({res['kind']}, {res['aggregation']})", f"{f1:.3f}" if f1 is not None else "-",
                      *[f"{res['best_of_n'][n]:.3f}" for n in ns])
        table.add_row("  weighted (scores summed per answer)", "",
                      *[f"{res['weighted_best_of_n'][n]:.3f}" for n in ns])
    table.add_row("majority vote", "-", *[f"{out['majority'][n]:.3f}" for n in ns])
    table.add_row("oracle (pass@N)", "-", *[f"{out['oracle'][n]:.3f}" for n in ns])
    console.print(table)
    if output:
        output.write_text(json.dumps(out, indent=2))


def _resolve_run_model(name: str) -> str:
    """A run name (runs/<name>) resolves to its trained model folder."""
    p = Path(name)
    for cand in (p / "model", p / "sft" / "model", Path("runs") / name / "sft" / "model", Path("runs") / name / "model"):
        if (cand / "config.json").exists():
            return str(cand)
    return name


def _progress(total: int, label: str):
    """A rich progress bar over `total` search runs, and the callback that advances it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)
    task_id = bar.add_task(label, total=total)
    return bar, lambda: bar.advance(task_id)


def _csv(text: str | None, cast=str):
    return None if text is None else tuple(cast(x.strip()) for x in text.split(",") if x.strip())


@app.command("search")
def search_cmd(
    config: Optional[Path] = ConfigOpt,
    model: Optional[str] = typer.Option(None, help="policy: model dir, .gguf, smollm2, or a run name under runs/"),
    task: Optional[str] = typer.Option(None, help="task name or dataset path"),
    task_arg: Optional[list[str]] = typer.Option(None, help="task knob key=value (repeatable)"),
    strategy: Optional[str] = typer.Option(None, help="greedy, majority, best_of_n, beam, dvts, lookahead, mcts, "
                                                      "budget_forcing, self_refine"),
    n: Optional[int] = typer.Option(None, help="budget N: samples, beams, simulations, rounds or extensions"),
    beam_width: Optional[int] = typer.Option(None, help="M: beam keeps N/M and expands each M times"),
    scorer: Optional[str] = typer.Option(None, help="'verifier', a PRM directory, or 'none'"),
    aggregation: Optional[str] = typer.Option(None, help="PRM step-score aggregation: last, min, prod, mean"),
    weighted: Optional[bool] = typer.Option(None, "--weighted/--naive", help="weighted vote or best single score"),
    share_prefix: Optional[bool] = typer.Option(None, "--share-prefix/--no-share-prefix",
                                                help="tree search: prefill a node once for its M children"),
    n_problems: Optional[int] = typer.Option(None, help="number of problems"),
    temperature: Optional[float] = typer.Option(None, help="sampling temperature"),
    max_tokens: Optional[int] = typer.Option(None, help="generated tokens per solution, at most"),
    seed: Optional[int] = typer.Option(None, help="seed"),
    output: Optional[Path] = typer.Option(None, help="write the JSON result (summary and records) here"),
):
    """Run one test-time search strategy over a problem set: accuracy and compute spent."""
    from ponder.search.run import SearchArgs, run_search, setup

    args = _config(SearchArgs, config, model=model, task=task, strategy=strategy, n=n, beam_width=beam_width,
                   scorer=scorer, aggregation=aggregation, weighted=weighted, share_prefix=share_prefix,
                   n_problems=n_problems,
                   temperature=temperature, max_tokens=max_tokens, seed=seed, task_args=_task_args(task_arg) or None)
    try:
        ctx, problems = setup(args.model, args.task, args.task_args, args.scorer, args.n_problems, args.split,
                              args.seed, _resolve_run_model)
        bar, tick = _progress(len(problems), f"{args.strategy} N={args.n}")
        with bar:
            out = run_search(ctx, problems, args, tick)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    table = Table(title=f"search: {args.strategy} on {args.task} ({len(problems)} problems)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, v in out["summary"].items():
        table.add_row(key, f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(table)
    if output:
        output.write_text(json.dumps(out, indent=2))
    print(json.dumps(out["summary"]))


@app.command()
def scale(
    config: Optional[Path] = ConfigOpt,
    run: str = typer.Option("scale", help="run name: outputs go to <runs-dir>/<name>/"),
    runs_dir: Path = typer.Option(Path("runs"), help="parent folder of run directories"),
    model: Optional[str] = typer.Option(None, help="policy: model dir, .gguf, smollm2, or a run name under runs/"),
    task: Optional[str] = typer.Option(None, help="task name or dataset path"),
    task_arg: Optional[list[str]] = typer.Option(None, help="task knob key=value (repeatable)"),
    strategies: Optional[str] = typer.Option(None, help="comma-separated strategies, e.g. majority,best_of_n,beam"),
    budgets: Optional[str] = typer.Option(None, help="comma-separated budgets N, e.g. 1,2,4,8,16"),
    scorer: Optional[str] = typer.Option(None, help="'verifier', a PRM directory, or 'none'"),
    n_problems: Optional[int] = typer.Option(None, help="number of problems"),
    beam_width: Optional[int] = typer.Option(None, help="M for the tree strategies (min(M, N) at small N)"),
    temperature: Optional[float] = typer.Option(None, help="sampling temperature"),
    max_tokens: Optional[int] = typer.Option(None, help="generated tokens per solution, at most"),
    difficulty: Optional[str] = typer.Option(None, help="difficulty bins from 'pass_rate' (gold) or 'score'"),
    bins: Optional[int] = typer.Option(None, help="difficulty bins for compute-optimal selection"),
    seed: Optional[int] = typer.Option(None, help="seed"),
):
    """Sweep strategies x budgets: scaling table, JSON, plot, and compute-optimal selection."""
    from ponder.config import to_dict, write_yaml
    from ponder.search.base import get_strategy
    from ponder.search.run import setup
    from ponder.search.scale import ScaleConfig, plot_scaling, run_scale, table_markdown

    try:
        cfg = _config(ScaleConfig, config, model=model, task=task, strategies=_csv(strategies),
                      budgets=_csv(budgets, int), scorer=scorer, n_problems=n_problems, beam_width=beam_width,
                      temperature=temperature, max_tokens=max_tokens, difficulty=difficulty, bins=bins, seed=seed,
                      task_args=_task_args(task_arg) or None)
        for s in cfg.strategies:
            get_strategy(s)
        if not cfg.budgets or any(b < 1 for b in cfg.budgets):
            raise ValueError(f"budgets must be positive integers, got {cfg.budgets}")
        ctx, problems = setup(cfg.model, cfg.task, cfg.task_args, cfg.scorer, cfg.n_problems, cfg.split, cfg.seed,
                              _resolve_run_model)
        runs = sum(1 if s == "greedy" else len(cfg.budgets) for s in cfg.strategies) * len(problems)
        bar, tick = _progress(runs, "scale")
        with bar:
            out = run_scale(ctx, problems, cfg, tick)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    run_dir = runs_dir / run
    run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(run_dir / "config.yaml", to_dict(cfg))
    (run_dir / "scale.json").write_text(json.dumps(out, indent=2))
    table = table_markdown(out["rows"])
    (run_dir / "scale.md").write_text(table + "\n")
    plot_scaling(out["rows"], run_dir / "scale.png", title=f"{cfg.task} {cfg.task_args or ''} ({len(problems)} problems)")
    console.print(table, markup=False)
    if "compute_optimal" in out:
        console.print_json(json.dumps(out["compute_optimal"]["choices"]))
    console.print(f"run directory: {run_dir}")


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
