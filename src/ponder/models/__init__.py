"""Model and tokenizer building and loading.

The names below load their module on first use (PEP 562), so that importing a light part of
this package (`ponder.models.hub`, the option dataclasses) does not import torch and
transformers: the command line starts without them."""
import importlib

_WHERE = {
    "ALIASES": "load", "encode_prompts": "load", "format_prompt": "load", "load_model": "load",
    "model_from_spec": "load", "resolve_model_path": "load",
    "PRESETS": "tiny", "build_tiny_model": "tiny", "count_params": "tiny",
    "build_char_tokenizer": "tokenizer",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"ponder.models.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'ponder.models' has no attribute {name!r}")
