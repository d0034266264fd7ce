"""Trainers built on one shared loop: a config (config.py, rl_config.py) and a trainer per method.

Names load their module on first use (PEP 562), so that the configs import without torch."""
import importlib

_WHERE = {"TrainConfig": "config", "OptimConfig": "config", "TrainLoop": "loop", "lr_at": "loop"}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"ponder.train.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'ponder.train' has no attribute {name!r}")
