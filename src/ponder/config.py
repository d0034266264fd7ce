"""Config for entry points: a dataclass per command, filled from defaults < YAML < flags.

`load_config(cls, path, overrides)` reads a YAML mapping, rejects unknown keys with the file
and key named, checks types against the dataclass, then applies the overrides (the flags a
user actually typed). Run directories get the resolved config as `config.yaml`.

The dataclass is the one source of truth of a command: the command line is generated from its
fields (`field_docs` gives each field's docstring, which becomes the flag's help).
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import math
import textwrap
import types
import typing
from pathlib import Path

import yaml


class ConfigError(ValueError):
    pass


def _coerce(value, typ, where: str):
    """Check/convert a YAML value to the field type; error names where and what was expected."""
    origin = typing.get_origin(typ)
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is float and isinstance(value, str):
        # YAML 1.1 reads `3e-5` (no dot) as a string; a learning rate written so is still a number.
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected float, got {value!r}") from None
    if typ in (int, float, str, bool):
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {typ.__name__}, got {value!r}")
        return value
    if typ in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = element_type(typ)
        items = [_coerce(v, item, f"{where} item {i + 1}") for i, v in enumerate(value)] if item else list(value)
        return tuple(items) if (typ is tuple or origin is tuple) else items
    if typ is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of key: value, got {value!r}")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(typ)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {typ}, got {value!r}")
    return value


def load_config(cls, path: str | Path | None = None, overrides: dict | None = None, section: str | None = None):
    """Instance of dataclass `cls` from defaults, then the YAML file (optionally one top-level
    `section` of it), then `overrides` (None values are ignored)."""
    values: dict = {}
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        if path.is_dir():
            raise ConfigError(f"config file {path} is a directory; expected a YAML file of option: value lines")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML ({e})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {path} is not text; expected a YAML file of option: value lines") from None
        if section is not None:
            data = data.get(section, {}) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of option: value at the top level")
        for key, value in data.items():
            key_ = key.replace("-", "_")
            if key_ not in fields:
                raise ConfigError(f"{path}: unknown option {key!r}; expected one of {', '.join(sorted(fields))}")
            values[key_] = _coerce(value, hints[key_], f"{path}: option {key!r}")
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    cfg = cls(**values)
    # Which options the user set (file or flags): a preset such as the demo's --quick must not
    # override one of them, even when its value equals the default. Not a field: never saved.
    object.__setattr__(cfg, "_given", frozenset(values))
    return cfg


def given(cfg) -> frozenset | None:
    """The options set in the YAML file or by flags when `cfg` came from `load_config`
    (None for a config built in code, whose caller set what it meant to)."""
    return getattr(cfg, "_given", None)


def field_values(cfg, cls) -> dict:
    """The values `cfg` holds for the fields of dataclass `cls`: `cfg` is a config that extends
    `cls` (a subclass, such as a command's config of the library's) or holds its fields."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)}


def narrow(cfg, cls, **changes):
    """`cfg` as a `cls` (the library config a command's config extends), with `changes`."""
    return cls(**{**field_values(cfg, cls), **changes})


def to_dict(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def element_type(typ):
    """The item type of list[int] / tuple[int, ...] (None for a bare list)."""
    args = [a for a in typing.get_args(typ) if a is not Ellipsis]
    return args[0] if args else None


def field_docs(cls) -> dict[str, str]:
    """Field name -> the docstring written under it, for `cls` and its dataclass bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for stmt, nxt in zip(body, body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str)):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def require(cfg, positive: tuple[str, ...] = (), non_negative: tuple[str, ...] = (),
            probability: tuple[str, ...] = (), choices: dict[str, tuple] | None = None) -> None:
    """Refuse values a run cannot use, naming the option and what was expected: counts that
    must be >= 1 (`positive` ints; a `positive` float such as a learning rate must be > 0 and
    finite: the trainers' schedules divide by it), amounts that must be >= 0, fractions in
    [0, 1], names from a fixed set."""
    def flag(name):
        return f"{name} (--{name.replace('_', '-')})"

    for name in positive:
        v = getattr(cfg, name)
        if isinstance(v, float):
            if not (v > 0 and math.isfinite(v)):
                raise ConfigError(f"{flag(name)} must be a finite number > 0, got {v}")
        elif v is not None and v < 1:
            raise ConfigError(f"{flag(name)} must be at least 1, got {v}")
    for name in non_negative:
        v = getattr(cfg, name)
        if v is not None and (v < 0 or (isinstance(v, float) and not math.isfinite(v))):
            raise ConfigError(f"{flag(name)} must be a finite number >= 0, got {v}")
    for name in probability:
        v = getattr(cfg, name)
        if v is not None and not 0 <= v <= 1:
            raise ConfigError(f"{flag(name)} must be between 0 and 1, got {v}")
    for name, allowed in (choices or {}).items():
        v = getattr(cfg, name)
        if v not in allowed:
            raise ConfigError(f"{flag(name)} must be one of {', '.join(map(str, allowed))}; got {v!r}")
