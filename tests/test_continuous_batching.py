"""Continuous batching in the torch engine: rows freed by finished samples are refilled from
the waiting prompts, and no sample depends on which rows it shared the batch with."""
from __future__ import annotations

import pytest
import torch

from ponder.generation import SamplingParams
from ponder.generation.kv_cache import GrowingLayer
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


def test_positions_no_row_attends_to_are_dropped(tiny):
    """Rows joining a running batch are right-aligned to its cache; once the rows that filled
    the leading positions finish, those positions are dropped, so no decoding step attends
    over more positions than one prompt plus its answer could fill."""
    params = SamplingParams(n=1, temperature=1.0, max_tokens=24, stop=["="], seed=3)
    engine = TorchGenerator(*tiny, batch_size=4)
    widths = []
    inner = engine._forward

    def recorded(ids, mask, *args, **kwargs):
        if ids.shape[1] == 1:
            widths.append(mask.shape[1])
        return inner(ids, mask, *args, **kwargs)

    engine._forward = recorded
    samples = engine.generate(PROMPTS, params)
    longest = max(len(p) for p in engine.encode(PROMPTS))
    assert max(widths) <= longest + params.max_tokens
    assert [[s.token_ids for s in p] for p in samples] == [[s.token_ids for s in p] for p in run(tiny, 64, params)[0]]


def test_growing_layer_trims_extends_and_grows_after_trim():
    layer = GrowingLayer(spare=2)
    keys = torch.arange(3 * 1 * 4 * 2, dtype=torch.float).reshape(3, 1, 4, 2)
    layer.update(keys, -keys)
    layer.trim(3)
    assert layer.get_seq_length() == 1 and torch.equal(layer.keys, keys[:, :, 3:])
    layer.update(keys[:, :, :3] + 100, -keys[:, :, :3])  # past capacity: compacted into new buffers
    assert layer.start == 0 and torch.equal(layer.keys, torch.cat([keys[:, :, 3:], keys[:, :, :3] + 100], dim=2))
    layer.reorder_cache(torch.tensor([2, 0]))
    other = GrowingLayer(spare=0)
    other.update(keys[:1, :, :2], keys[:1, :, :2])
    layer.extend(other)  # other's 2 positions right-aligned after 2 zeros
    assert layer.keys.shape == (3, 1, 4, 2)
    assert torch.equal(layer.keys[2, :, :2], torch.zeros(1, 2, 2)) and torch.equal(layer.keys[2, :, 2:], keys[0, :, :2])


def test_abandoned_prompts_leave_the_batch_and_the_rest_do_not_change(tiny):
    """Prompts whose callers left (a server's clients that hung up) stop at the next step,
    running or still waiting; the other prompts' samples are those of a call without them."""
    params = SamplingParams(n=2, temperature=1.0, max_tokens=40, seed=3)
    whole = TorchGenerator(*tiny, batch_size=8).generate(PROMPTS, params)
    engine = TorchGenerator(*tiny, batch_size=8)
    steps, gone = 0, {9, 12, 1}  # 9 and 12 run first (the longest prompts), 1 waits to the end

    def abandoned():
        nonlocal steps
        steps += 1
        return gone if steps > 5 else set()

    out = engine.generate(PROMPTS, params, abandoned=abandoned)
    for i, (mine, ref) in enumerate(zip(out, whole)):
        if i in gone:
            assert [s.finish_reason for s in mine] == ["abort", "abort"]
            assert all(s.num_tokens < 40 and s.token_ids == r.token_ids[:s.num_tokens] for s, r in zip(mine, ref))
        else:
            assert [s.token_ids for s in mine] == [s.token_ids for s in ref]
    assert [s.num_tokens for s in out[1]] == [0, 0]  # never started
    assert all(s.num_tokens == 5 for i in (9, 12) for s in out[i])  # stopped after 5 steps
    assert engine.usage.generated_tokens == sum(s.num_tokens for p in out for s in p)


def test_prompts_join_a_running_call_and_are_answered_as_they_finish(tiny):
    """A server's loop: prompt 0 starts the call, `more` hands in two prompts whenever the
    batch has room, and `on_done` hears of each prompt as its rows end - a prompt that
    joined late may finish before one that started early. Each prompt's samples are those
    it gets alone with its seed; the call itself keeps none of them."""
    params = SamplingParams(n=2, temperature=1.0, max_tokens=24, stop=["="])
    seeds = [(5, k) for k in range(len(PROMPTS))]
    engine = TorchGenerator(*tiny, batch_size=8)
    alone = [engine.generate([p], params, seeds=[s])[0] for p, s in zip(PROMPTS, seeds)]
    waiting, asked, done = list(range(1, len(PROMPTS))), [], []

    def more(rows):
        asked.append(rows)
        take, waiting[:] = waiting[:2], waiting[2:]
        return [(PROMPTS[i], seeds[i]) for i in take]

    out = engine.generate([PROMPTS[0]], params, seeds=[seeds[0]], more=more,
                          on_done=lambda i, samples, cached: done.append((i, samples)))
    assert out == [] and not waiting
    assert sorted(i for i, _ in done) == list(range(len(PROMPTS)))  # call index i is PROMPTS[i]: joined in order
    assert all([s.token_ids for s in samples] == [s.token_ids for s in alone[i]] for i, samples in done)
    assert [i for i, _ in done] != sorted(i for i, _ in done)  # answered as they finish, not in order
    assert all(2 <= rows <= 8 for rows in asked)  # asked only while a prompt's two rows fit
    with pytest.raises(ValueError, match="seeds"):
        engine.generate([PROMPTS[0]], params, more=more, on_done=print)
