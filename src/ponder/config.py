"""Config for entry points: a dataclass per command, filled from defaults < YAML < flags.

`load_config(cls, path, overrides)` reads a YAML mapping, rejects unknown keys with the file
and key named, checks types against the dataclass, then applies the overrides (the flags a
user actually typed). Run directories get the resolved config as `config.yaml`.
"""
from __future__ import annotations

import dataclasses
import json
import os
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
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(value)
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
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML ({e})") from None
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
    return cls(**values)


def to_dict(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def write_yaml(path: Path, data: dict) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.replace(tmp, path)
