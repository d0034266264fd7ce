"""The `ponder` command line, generated from the commands in `ponder.commands`.

Each command module holds a `Config` dataclass and `run(cfg)`; every field of `Config` becomes
a flag (its docstring is the help, its default is shown) and can also be set in the YAML file
given with `--config`; flags override the file. Lists take `--budgets 1,2,4` or a repeated
singular flag (`--budget 1 --budget 2`), mappings take `--task-arg key=value`, booleans take
`--flag/--no-flag`. Commands with an engine also take `--api-key` and `--max-concurrency`,
and every command `--trust-remote-code` (run a Hub model's own Python code), which never land
in a run's config.

A user's mistake (bad option, missing file, unreachable server, full disk) ends in one line
naming what to fix and exit status 2, never a traceback (`PONDER_DEBUG=1` shows it).
"""
from __future__ import annotations

import dataclasses
import errno
import inspect
import json
import os
import re
import types
import typing
from pathlib import Path
from typing import Optional

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import typer
from rich.console import Console

from ponder.config import ConfigError, element_type, field_docs

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="ponder: build reasoning models — data, training, test-time scaling.")
console = Console()


class UsageError(ValueError):
    """A command-line value that cannot be used; the message names the option."""


def fail(msg: str) -> typing.NoReturn:
    from rich.markup import escape

    # escaped: a message's own brackets (pip install 'ponder[gym]') are text, not rich markup
    console.print(f"[bold red]error:[/bold red] {escape(msg)}", highlight=False, soft_wrap=True)  # one line, whatever the path length
    raise typer.Exit(2)


def _singular(name: str) -> str:
    if name.endswith("ies"):
        return name[:-3] + "y"
    return name[:-1] if name.endswith("s") and not name.endswith("ss") else name


def _base_type(typ):
    """(type without Optional, whether None is allowed)."""
    if typing.get_origin(typ) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        return args[0], True
    return typ, False


def _kind(typ) -> str:
    base, _ = _base_type(typ)
    origin = typing.get_origin(base) or base
    if origin in (list, tuple):
        return "list"
    if origin is dict:
        return "dict"
    return "scalar"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_item(text: str, typ, option: str):
    typ, _ = _base_type(typ)
    try:
        if typ is int:
            return int(text)
        if typ is float:
            return float(text)
    except ValueError:
        raise UsageError(f"{option}: {text!r} is not {'an integer' if typ is int else 'a number'}") from None
    return text


def _parse_list(values: list[str], typ, option: str, csv: bool = True):
    item = element_type(_base_type(typ)[0])
    parts = [v for text in values for v in (text.split(",") if csv else [text])]
    # free text is kept as typed, even empty (the command says whether it can use it)
    out = [_parse_item(v.strip() if csv else v, item, option) for v in parts if v.strip() or not csv]
    return tuple(out) if typing.get_origin(_base_type(typ)[0]) is tuple else out


def _parse_dict(pairs: list[str], option: str) -> dict:
    """`key=value` pairs; values are read as YAML scalars (3 -> int, false -> bool)."""
    import yaml

    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"{option} {pair!r}: expected key=value")
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def _options(cfg_cls) -> tuple[list[inspect.Parameter], dict[str, tuple[str, str]]]:
    """One typer option per config field, and name -> (kind, flag) to turn values back."""
    from rich.markup import escape

    docs, hints = field_docs(cfg_cls), typing.get_type_hints(cfg_cls)
    params, kinds = [], {}
    for f in dataclasses.fields(cfg_cls):
        typ, kind = hints[f.name], _kind(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        shown = default if not isinstance(default, (list, tuple)) else ",".join(map(str, default)) or "none"
        # Help is rich markup (typer's default mode): brackets are escaped, or rich reads
        # "[default: x]" as a tag and drops it. Each option's own value is None, so that a typed
        # flag can be told apart from the default, which is therefore written into the help.
        help_text = escape(docs.get(f.name, ""))
        default_text = escape(f"[default: {shown}]")
        if kind == "dict":
            flag = _flag(_singular(f.name))
            names = [flag] + ([_flag(f.name)] if flag != _flag(f.name) else [])
            help_text += " (key=value, repeatable)"
            annotation, opt = Optional[list[str]], typer.Option(None, *names, help=help_text)
        elif kind == "list":
            flag = _flag(f.name)
            names = [flag] + ([_flag(_singular(f.name))] if _singular(f.name) != f.name else [])
            kind = "list" if f.metadata.get("csv", True) else "texts"  # free text keeps its commas
            help_text += f" ({'comma-separated or ' if kind == 'list' else ''}repeatable) {default_text}"
            annotation, opt = Optional[list[str]], typer.Option(None, *names, help=help_text)
        elif f.metadata.get("positional"):  # a bare word after the command (`ponder report NAME`)
            flag = f.metadata["positional"]
            annotation = Optional[_base_type(typ)[0]]
            opt = typer.Argument(None, metavar=flag, help=help_text, show_default=False)
        elif _base_type(typ)[0] is bool:
            flag = _flag(f.name)
            annotation = Optional[bool]
            opt = typer.Option(None, f"{flag}/--no-{flag[2:]}", help=f"{help_text} {default_text}")
        else:
            flag = _flag(f.name)
            annotation = Optional[_base_type(typ)[0]]
            # `--run-name` too: under `torchrun -m ponder`, torchrun's own parser takes `--run`
            # for an abbreviation of its `--run-path`.
            names = [flag, "--run-name"] if f.name == "run" else [flag]
            opt = typer.Option(None, *names, help=f"{help_text} {default_text}")
        kinds[f.name] = (kind, flag)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=annotation))
    return params, kinds


def _engine_options(cfg_cls) -> list[inspect.Parameter]:
    if not any(f.name.endswith("engine") for f in dataclasses.fields(cfg_cls)):
        return []
    kw = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter("engine_api_key", kw, annotation=Optional[str], default=typer.Option(
            None, "--api-key", help="API key of a server engine (default: $OPENAI_API_KEY); never saved")),
        inspect.Parameter("engine_max_concurrency", kw, annotation=Optional[int], default=typer.Option(
            None, "--max-concurrency", help="requests in flight to a server engine (default 16)")),
    ]


TRUST_OPTION = inspect.Parameter("trust_remote_code", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                                 default=typer.Option(False, "--trust-remote-code", help=(
                                     "let Hugging Face models run the Python code their repository ships (only "
                                     "for models you trust); never saved")))


def _worker_options(cfg_cls) -> list[inspect.Parameter]:
    if not any(f.name == "workers" for f in dataclasses.fields(cfg_cls)):
        return []
    return [inspect.Parameter("gpus_per_worker", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[float],
                              default=typer.Option(None, "--gpus-per-worker", help=(
                                  "GPUs each Ray worker asks for (default: 1 on a machine with CUDA GPUs, else 0; "
                                  "a fraction shares a GPU); never saved")))]


def _engine_env(api_key: str | None, max_concurrency: int | None) -> None:
    """Server-engine settings that are not part of a run's config (a key must never land in
    config.yaml): passed to `make_engine` through the environment it reads."""
    if api_key:
        os.environ["OPENAI_API_KEY"] = api_key
    if max_concurrency is not None:
        if max_concurrency < 1:
            raise UsageError(f"--max-concurrency must be at least 1, got {max_concurrency}")
        os.environ["PONDER_MAX_CONCURRENCY"] = str(max_concurrency)


def user_error_message(e: BaseException) -> str | None:
    """The one-line message for an error a user can fix, or None for a bug (shown in full)."""
    from ponder.generation.base import EngineError
    from ponder.rewards.functions import RewardError

    if isinstance(e, (ConfigError, UsageError, EngineError, RewardError, FloatingPointError)):
        return str(e)
    if isinstance(e, OSError):
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        if e.errno == errno.ENOSPC:
            return f"the disk is full{where}: free some space and rerun; the run resumes from its last checkpoint"
        if isinstance(e, PermissionError):
            return f"permission denied{where}: the run directory must be writable"
        if isinstance(e, (FileNotFoundError, IsADirectoryError, NotADirectoryError)):
            return str(e)
        return f"{e.strerror or e}{where}"
    if type(e).__name__ == "SafetensorError" and any(s in str(e) for s in ("StorageFull", "No space left", "code: 28")):
        # safetensors (Rust) reports a full disk as its own error type, with the OS error in the text
        return ("writing a checkpoint failed: the disk is full: free some space and rerun; "
                "the run resumes from its last complete checkpoint")
    if isinstance(e, RuntimeError) and ("unexpected pos" in str(e) or "PytorchStreamWriter" in str(e)):
        return ("writing a checkpoint failed (the disk is probably full): free some space and rerun; "
                "the run resumes from its last complete checkpoint")
    if isinstance(e, (ValueError, ImportError)):
        return str(e)
    return None


def register(module, name: str | None = None, to: typer.Typer | None = None) -> None:
    """Add `module`'s command to the app (or to the sub-app `to`): flags from `module.Config`,
    work in `module.run`, the result shown by `module.show` (else printed as JSON)."""
    cfg_cls = module.Config
    name = name or module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    params, kinds = _options(cfg_cls)
    config_param = inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path],
                                     default=typer.Option(None, "--config", "-c",
                                                          help="YAML file of options; flags given here override it"))
    params = [config_param, *params, *_engine_options(cfg_cls), *_worker_options(cfg_cls), TRUST_OPTION]

    def command(**values):
        from ponder.config import load_config
        from ponder.runs import forget_created

        forget_created()
        try:
            _engine_env(values.pop("engine_api_key", None), values.pop("engine_max_concurrency", None))
            gpus = values.pop("gpus_per_worker", None)
            if gpus is not None:
                from ponder.parallel import GPUS_ENV

                if gpus < 0:
                    raise UsageError(f"--gpus-per-worker must be >= 0, got {gpus}")
                os.environ[GPUS_ENV] = str(gpus)
            if values.pop("trust_remote_code", False):  # read by the loaders, here and in workers started from here
                from ponder.models.hub import TRUST_ENV

                os.environ[TRUST_ENV] = "1"
            path = values.pop("config")
            flags = {}
            for key, value in values.items():
                kind, flag = kinds[key]
                if value is None or (kind in ("list", "texts", "dict") and not value):
                    continue
                if kind in ("list", "texts"):
                    value = _parse_list(value, typing.get_type_hints(cfg_cls)[key], flag, csv=kind == "list")
                elif kind == "dict":
                    value = _parse_dict(value, flag)
                flags[key] = value
            cfg = load_config(cfg_cls, path, flags)
            if "run" in kinds and "runs_dir" in kinds:
                from ponder.runs import check_run_name

                if cfg.run is not None:  # None: a command that names its run otherwise (ponder report PATH)
                    check_run_name(cfg.run)
            result = module.run(cfg)
        except typer.Exit:
            raise
        except Exception as e:  # a user's mistake is one line; a bug keeps its traceback
            from ponder.runs import discard_unstarted

            discard_unstarted()  # a run that failed before writing anything must not block its corrected rerun
            msg = user_error_message(e)
            if msg is None or os.environ.get("PONDER_DEBUG"):
                raise
            fail(msg)
        if os.environ.get("RANK", "0") != "0":
            return  # one of several torchrun processes: rank 0 reports
        show = getattr(module, "show", None)
        if show is not None:
            show(result, console)
        elif result is not None:
            console.print_json(json.dumps(result, default=str))

    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = re.sub(r"^`ponder [\w -]+`:\s*", "", (module.__doc__ or "").strip().split("\n\n")[0])
    command.__name__ = name.replace("-", "_")
    (to or app).command(name)(command)


def main():
    """The console script."""
    app()


from ponder import commands  # noqa: E402

for _module in commands.ALL:
    register(_module)

export_app = typer.Typer(no_args_is_help=True, help="Export ponder's tasks, verifiers and reward models to other trainers.")
app.add_typer(export_app, name="export")
for _name, _module in commands.EXPORT.items():
    register(_module, _name, to=export_app)
