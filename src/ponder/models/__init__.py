"""Model and tokenizer building and loading."""
from ponder.models.load import ALIASES, encode_prompts, format_prompt, load_model, model_from_spec, resolve_model_path
from ponder.models.tiny import PRESETS, build_tiny_model, count_params
from ponder.models.tokenizer import build_char_tokenizer

__all__ = [
    "ALIASES",
    "PRESETS",
    "build_char_tokenizer",
    "build_tiny_model",
    "count_params",
    "encode_prompts",
    "format_prompt",
    "load_model",
    "model_from_spec",
    "resolve_model_path",
]
