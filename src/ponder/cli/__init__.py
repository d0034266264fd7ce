"""The `ponder` command line. Every command takes `--config file.yaml`; flags override it.

This module holds the app and the helpers every command uses; the commands live in
`core` (tasks, sft, eval, generate, demo), `rewards` (annotate, train-rm, eval-rm), `search`
(search, scale) and `rl` (rl, dpo, iterate), imported at the bottom to register them."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="ponder: build reasoning models — data, training, test-time scaling.")
console = Console()
ConfigOpt = typer.Option(None, "--config", "-c", help="YAML file of options; flags given here override it.")
RunOpt = typer.Option(None, "--run", help="run name: outputs go to runs/<name>/")
EngineOpt = typer.Option(None, "--engine", help="generation engine: torch (default, in this process), vllm, or the "
                                                "URL of an OpenAI-compatible server, http(s)://host:port/v1")
ApiKeyOpt = typer.Option(None, "--api-key", help="API key of a server engine (default: $OPENAI_API_KEY)")
ConcurrencyOpt = typer.Option(None, "--max-concurrency", help="requests in flight to a server engine (default 16)")


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


def _print_summary(title: str, out: dict, output: Path | None) -> None:
    """A metric/value table of `out["summary"]`, the whole result written to `output` if
    given, and the summary as one JSON line on stdout (for scripts)."""
    import json

    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, v in out["summary"].items():
        table.add_row(key, f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(table)
    if output:
        output.write_text(json.dumps(out, indent=2))
    print(json.dumps(out["summary"]))


def _engine_env(api_key: str | None, max_concurrency: int | None) -> None:
    """Server-engine settings that are not part of a run's config (a key must never land in
    config.yaml): passed to `make_engine` through the environment it reads."""
    if api_key:
        os.environ["OPENAI_API_KEY"] = api_key
    if max_concurrency is not None:
        if max_concurrency < 1:
            _fail(f"--max-concurrency must be >= 1, got {max_concurrency}")
        os.environ["PONDER_MAX_CONCURRENCY"] = str(max_concurrency)


def _resolve_run_model(name: str) -> str:
    """A run name (runs/<name>) resolves to its trained model folder."""
    p = Path(name)
    for cand in (p / "model", p / "sft" / "model", Path("runs") / name / "sft" / "model", Path("runs") / name / "model"):
        if (cand / "config.json").exists():
            return str(cand)
    return name


def main():
    """The console script: engine failures (a server down, a missing capability) are a
    user's problem to fix, so they end in one clear line, not a traceback."""
    from ponder.generation.base import EngineError

    try:
        app()
    except EngineError as e:
        console.print(f"[bold red]error:[/bold red] {e}")
        raise SystemExit(2)


# Imported for their side effect: each module adds its commands to `app`.
from ponder.cli import core, rewards, rl, search, serve  # noqa: E402,F401  isort: skip
