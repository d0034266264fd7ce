"""Continuous batching in the torch engine: rows freed by finished samples are refilled from
the waiting prompts, and no sample depends on which rows it shared the batch with."""
from __future__ import annotations

import pytest
import torch

from ponder.generation import SamplingParams
from ponder.generation.torch_engine import TorchGenerator
from ponder.models import build_char_tokenizer, build_tiny_model

PROMPTS = [f"{a}+{b}*{a}=" * (1 + a % 3) for a, b in zip(range(2, 26), range(7, 31))]


@pytest.fixture(scope="module")
def tiny():
    tokenizer = build_char_tokenizer()
    return build_tiny_model(tokenizer, "1m").eval(), tokenizer


def run(tiny, batch_size, params):
    engine = TorchGenerator(*tiny, batch_size=batch_size)
    forwards = 0
    inner = engine._forward

    def counted(*args, **kwargs):
        nonlocal forwards
        forwards += 1
        return inner(*args, **kwargs)

    engine._forward = counted
    return engine.generate(PROMPTS, params), forwards


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_freed_rows_are_refilled_and_samples_do_not_change(tiny, temperature):
    params = SamplingParams(n=2, temperature=temperature, max_tokens=24, stop=["=", "+"], seed=5)
    whole, _ = run(tiny, 64, params)  # every row in one batch
    small, forwards = run(tiny, 8, params)  # 4 prompts' rows at a time
    assert [[s.token_ids for s in p] for p in small] == [[s.token_ids for s in p] for p in whole]
    lengths = {i: max(s.num_tokens for s in p) for i, p in enumerate(small)}
    # Chunks of 4 prompts (longest prompt first) would each decode until their longest row
    # ends: one prefill plus that many steps less one, per chunk.
    order = sorted(range(len(PROMPTS)), key=lambda i: -len(PROMPTS[i]))
    chunked = sum(1 + max(lengths[i] for i in order[k:k + 4]) - 1 for k in range(0, len(order), 4))
    if temperature > 0:  # the random model's greedy rows loop; sampled rows end at many points
        assert len({s.num_tokens for p in small for s in p}) > 3
        assert forwards < chunked
