"""What several commands share: resolving a model name, opening an engine, a progress bar,
checking an input file, and printing a metric table."""
from __future__ import annotations

import json
from pathlib import Path

from ponder.config import ConfigError, given
from ponder.generation import is_url, make_engine
from ponder.models import resolve_model_path
from ponder.models.device import place, resolve_device
from ponder.runs import write_json
from ponder.search.base import SearchContext
from ponder.search.scorers import load_scorer
from ponder.tasks import get_task


def train_device(cfg) -> dict:
    """The TrainConfig fields of a command's DeviceOptions, checked: a bad device is one line."""
    try:
        return cfg.device_options()
    except ValueError as e:
        raise ConfigError(str(e)) from None


def resolve_model(name: str, engine: str = "torch") -> str:
    """A run name resolves to its trained model folder (runs/<name>/model, or the sft model of
    a demo run); with a server engine the name is the served model's and stays as it is."""
    if is_url(engine or ""):
        return name
    p = Path(name)
    for cand in (p / "model", p / "sft" / "model", Path("runs") / name / "sft" / "model", Path("runs") / name / "model"):
        if (cand / "config.json").exists():
            return str(cand)
    return name


DEFAULT_TASK = "arith"


def model_task(model: str, engine: str = "torch") -> tuple[str, dict, Path] | None:
    """(task, knobs, config file) of the ponder run that wrote `model`: the nearest readable
    `config.yaml` holding a task, in the model folder or the two folders above it (runs/<name>/model
    of sft or rl, runs/<name>/sft/model of the demo). None for a served model, a file, an alias, or
    a folder no ponder run wrote."""
    import yaml


    if is_url(engine or ""):
        return None
    folder = Path(resolve_model(model, engine))
    if not folder.is_dir():
        return None
    for d in (folder, folder.parent, folder.parent.parent):
        f = d / "config.yaml"
        if not f.is_file():
            continue
        try:
            saved = yaml.safe_load(f.read_text())
        except (yaml.YAMLError, OSError):
            continue
        if isinstance(saved, dict) and isinstance(saved.get("task"), str) and saved["task"]:
            args = saved.get("task_args")
            return saved["task"], dict(args) if isinstance(args, dict) else {}, f
    return None


def resolve_task(cfg, model: str, engine: str = "torch") -> None:
    """Fill in `cfg.task` when none was given: the task (and knobs, under any given here) the
    model was trained on, so that a model trained on countdown is not asked arith questions;
    otherwise arith. Says so on stderr when it takes the model's."""
    import sys

    if cfg.task:
        return
    found = model_task(model, engine) if model else None
    if found is None:
        cfg.task = DEFAULT_TASK
        return
    cfg.task, knobs, where = found
    cfg.task_args = {**knobs, **(cfg.task_args or {})}
    shown = ", ".join(f"{k}={v}" for k, v in cfg.task_args.items())
    print(f"task: {cfg.task}{f' ({shown})' if shown else ''}, as the model was trained (from {where})",
          file=sys.stderr)


def open_engine(engine: str, model: str, device: str | None = None, **kw):
    """The engine of a command, a run name resolved to its model folder: `device` places a
    torch engine's model (a server or vLLM engine decides its own)."""
    return make_engine(engine, resolve_model(model, engine), device=device, **kw)


def server_default_model(cfg) -> None:
    """With a server engine and no --model typed, the server's only model is meant, not the
    command's default local path (which a server would not know)."""
    typed = given(cfg)
    if is_url(cfg.engine or "") and typed is not None and "model" not in typed:
        cfg.model = ""


MAX_SAMPLES = 65536
"""samples one command asks for per prompt, at most"""
MAX_GENERATED = 1 << 25
"""tokens one command's sampling may hold (rows x max_tokens), at most: ~32M, several GB of ids and logprobs"""


def check_samples(rows: int, n: int, max_tokens: int, option: str = "--n") -> None:
    """Refuse a sampling request that cannot fit in memory (the engine would be killed for it
    after minutes): n per prompt, and rows (prompts x n) x max_tokens tokens in all."""
    if n > MAX_SAMPLES:
        raise ConfigError(f"{option} {n}: at most {MAX_SAMPLES} samples per prompt in one command")
    if rows * max_tokens > MAX_GENERATED:
        raise ConfigError(f"{option} {n} x --max-tokens {max_tokens} over {rows // max(n, 1)} prompt(s) may generate "
                          f"{rows * max_tokens} tokens, more than one command holds in memory ({MAX_GENERATED}); "
                          "lower --n or --max-tokens")


def check_context(gen, prompts, max_tokens: int) -> None:
    """Refuse prompts that, with `max_tokens` more, do not fit the model's context, naming its
    length (an in-process engine; a server checks its own)."""
    config = getattr(getattr(gen, "model", None), "config", None)
    context = getattr(config, "max_position_embeddings", None)
    if not isinstance(context, int) or not prompts:
        return
    if max_tokens >= context:
        raise ConfigError(f"--max-tokens {max_tokens}: the model's context is {context} tokens, prompt included; "
                          f"ask for fewer")
    longest = max(len(ids) for ids in gen.encode(list(prompts)))
    if longest + max_tokens > context:
        raise ConfigError(f"a prompt of {longest} tokens plus --max-tokens {max_tokens} exceeds the model's context "
                          f"of {context} tokens; shorten the prompt or lower --max-tokens")


def check_output(path: str | None, option: str = "--output") -> None:
    """Check before any work that the result file `option` names can be written: its folder
    exists and is writable, and the path is not a folder (else the result is lost at the end)."""
    import os

    if not path:
        return
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{option} {p} is a directory; expected a file name such as {p / 'result.json'}")
    folder = p.parent
    if not folder.is_dir():
        raise ConfigError(f"{option} {p}: the folder {folder} does not exist; create it or write elsewhere")
    if not os.access(folder, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise ConfigError(f"{option} {p}: permission denied; write the result somewhere writable")


def check_model(model: str, engine: str = "torch") -> None:
    """Fail now, in one line, on a model that does not exist (before workers load it)."""
    if not is_url(engine or ""):
        resolve_model_path(resolve_model(model, engine))


def input_file(path: str | None, option: str) -> Path:
    """An input file named by `option`, checked before any work starts."""
    if not path:
        raise ConfigError(f"{option} is required")
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{option} {p}: no such file")
    if p.is_dir():
        raise ConfigError(f"{option} {p} is a directory; expected a file")
    return p


def progress(total: int, label: str):
    """A rich progress bar over `total` items, and the callback that advances it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    task_id = bar.add_task(label, total=total)
    return bar, lambda: bar.advance(task_id)


def print_summary(console, title: str, summary: dict, output: str | None = None, full: dict | None = None) -> None:
    """A metric/value table of `summary`, the whole result written to `output` if given, and
    the summary as one JSON line on stdout (for scripts)."""
    from rich.table import Table


    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, v in summary.items():
        table.add_row(key, f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(table)
    if output:
        write_json(output, full if full is not None else summary)
    print(json.dumps(summary))


def search_context(model: str, engine: str, task_name: str, task_args: dict, scorer: str, n_problems: int,
                   split: str, seed: int, open_policy: bool = True, device: str | None = None):
    """The search context (policy engine, task, scorer) and the problems of a search command,
    the torch policy and a PRM on `device`. With `open_policy=False` the context has no engine
    yet (the model is only checked): Ray workers open their own (`search_worker`)."""
    task = get_task(task_name, **task_args)
    problems = task.problems(split, n=n_problems, seed=seed)
    sc = load_scorer(scorer, task, problems, policy=lambda: open_engine(engine, model, seed=seed, device=device),
                     seed=seed)
    if not open_policy:
        check_model(model, engine)
        return SearchContext(None, task, sc), problems
    if device is not None and hasattr(sc, "to"):  # a reward model: on the policy's device

        place(sc, resolve_device(device))
    generator = open_engine(engine, model, seed=seed, device=device)
    return SearchContext(generator, task, sc), problems


def search_worker(cfg):
    """A Ray worker's search context, built from a search or scale command's config."""
    ctx, _ = search_context(cfg.model, cfg.engine, cfg.task, cfg.task_args, cfg.scorer, cfg.n_problems,
                            cfg.split, cfg.seed, device=cfg.device)
    return ctx
