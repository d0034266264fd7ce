"""Tiny Llama-architecture models built from scratch, with size presets.

Llama (not Qwen2) on purpose: with a custom tokenizer, transformers 5 may swap a Qwen2
checkpoint's tokenizer for its byte-level default on reload, and whitespace vanishes.
"""
from __future__ import annotations

from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

# name -> (hidden, layers, heads, kv_heads, intermediate). Parameter counts are for the
# ~100-token character vocabulary with tied embeddings.
PRESETS: dict[str, tuple[int, int, int, int, int]] = {
    "1m": (128, 4, 4, 4, 384),
    "4m": (256, 5, 8, 4, 768),
    "20m": (512, 6, 8, 4, 1536),
}


def build_tiny_model(
    tokenizer: PreTrainedTokenizerBase, preset: str = "4m", max_len: int = 512, seed: int = 0
) -> LlamaForCausalLM:
    """A randomly initialised LlamaForCausalLM sized by `preset` (see PRESETS)."""
    import torch

    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}: expected one of {', '.join(PRESETS)}")
    hidden, layers, heads, kv_heads, inter = PRESETS[preset]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        intermediate_size=inter,
        max_position_embeddings=max_len,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    return model


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
