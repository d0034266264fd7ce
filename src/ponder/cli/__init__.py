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


def _resolve_run_model(name: str) -> str:
    """A run name (runs/<name>) resolves to its trained model folder."""
    p = Path(name)
    for cand in (p / "model", p / "sft" / "model", Path("runs") / name / "sft" / "model", Path("runs") / name / "model"):
        if (cand / "config.json").exists():
            return str(cand)
    return name


def main():
    app()


# Imported for their side effect: each module adds its commands to `app`.
from ponder.cli import core, rewards, rl, search  # noqa: E402,F401  isort: skip
