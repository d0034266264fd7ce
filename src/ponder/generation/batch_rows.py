"""How many rows the torch engine decodes together when the caller does not say.

A decoding step of a small model costs little more for 512 rows than for 64: its time is
per-layer overhead, not arithmetic. So an RL step's 16 prompts x 8 samples in one batch
instead of two, or an evaluation's 300 x 8 in five instead of 38, take less time
(benchmarks/batch_rows.py). What bounds the rows is the KV cache they hold: a call takes as
many as the keys and values of its longest sequence fit in AUTO_KV_BYTES, within AUTO_ROWS -
a 1M-parameter model decodes 512 rows a step, a 135M one at 600 tokens keeps the 64 rows the
engine always had.
"""
from __future__ import annotations

AUTO_KV_BYTES = 2**30
AUTO_ROWS = (64, 512)


def auto_rows(model, longest: int) -> int:
    """Rows whose KV cache (keys and values of every layer, in the model's dtype) at `longest`
    tokens fits AUTO_KV_BYTES, within AUTO_ROWS; the fewest for a config without the usual
    attention fields."""
    c = model.config
    layers, heads = getattr(c, "num_hidden_layers", None), getattr(c, "num_attention_heads", None)
    if not layers or not heads:
        return AUTO_ROWS[0]
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    kv_heads = getattr(c, "num_key_value_heads", None) or heads
    per_token = layers * 2 * kv_heads * head_dim * next(model.parameters()).element_size()
    return max(AUTO_ROWS[0], min(AUTO_ROWS[1], AUTO_KV_BYTES // (per_token * max(longest, 1))))
