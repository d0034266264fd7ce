"""The cross-call prefix cache: longest-prefix lookup, LRU bound, and an engine whose outputs
do not change when later prompts reuse earlier calls' keys and values."""
from __future__ import annotations

import pytest
import torch

from ponder.generation import SamplingParams, make_engine
from ponder.generation.prefix_cache import PrefixCache
from ponder.models import build_char_tokenizer, build_tiny_model


def kv(length: int, fill: float = 0.0):
    """One layer's keys and values for `length` positions (2 heads, dim 4): 64 bytes a position."""
    return [torch.full((2, length, 4), fill)], [torch.full((2, length, 4), fill)]


def test_lookup_finds_the_longest_shared_prefix():
    cache = PrefixCache(max_bytes=10**6)
    cache.insert([1, 2, 3, 4], *kv(4, 1.0))
    cache.insert([1, 2, 9], *kv(3, 2.0))
    cache.insert([5, 6], *kv(2, 3.0))
    entry, length = cache.lookup([1, 2, 3, 7, 8])
    assert entry.ids == (1, 2, 3, 4) and length == 3
    entry, length = cache.lookup([1, 2, 9, 9])
    assert entry.ids == (1, 2, 9) and length == 3
    assert cache.lookup([7, 7]) == (None, 0)
    # the last position is always left to compute: an exact repeat reuses all but one
    entry, length = cache.lookup([1, 2, 3, 4])
    assert length == 3
    assert cache.hits == 3 and cache.lookups == 4


def test_a_longer_sequence_supersedes_its_prefix_and_memory_is_bounded():
    cache = PrefixCache(max_bytes=64 * 10)  # room for 10 positions
    cache.insert([1, 2], *kv(2))
    cache.insert([1, 2, 3], *kv(3))  # extends [1, 2]: replaces it
    assert len(cache) == 1 and cache.bytes == 64 * 3
    cache.insert([4, 5, 6], *kv(3))
    cache.lookup([1, 2, 3, 0])  # [1, 2, 3] is now the most recently used
    cache.insert([7, 8, 9, 10], *kv(4))  # 10 positions: fits exactly
    cache.insert([11, 12], *kv(2))  # evicts the least recently used, [4, 5, 6]
    assert cache.bytes <= cache.max_bytes
    assert cache.lookup([4, 5, 0]) == (None, 0)
    assert cache.lookup([1, 2, 3, 0])[1] == 3
    cache.insert(list(range(100, 120)), *kv(20))  # larger than the whole budget: not stored
    assert cache.lookup([100, 101, 0]) == (None, 0)


@pytest.fixture(scope="module")
def tiny():
    tokenizer = build_char_tokenizer()
    return build_tiny_model(tokenizer, "1m", seed=3).eval(), tokenizer


QUESTIONS = ["Q: What is 2+3?\nA:", "Q: Add 17 and 25 then 4.\nA:", "Q: hi\nA:"]
STEP = dict(temperature=0, max_tokens=12)


def continuations(engine, samples, cut: int) -> list[list[int]]:
    """Token-id prompts continuing each sample after its first `cut` tokens (step-level search)."""
    base = engine.prompt_ids(QUESTIONS)
    return [b + s[0].token_ids[:cut] for b, s in zip(base, samples)]


def test_reused_keys_give_the_same_tokens_and_skip_the_prefill(tiny):
    model, tokenizer = tiny
    cached = make_engine("torch", model, tokenizer=tokenizer)
    plain = make_engine("torch", model, tokenizer=tokenizer, prefix_cache_mb=0)
    first = cached.generate(QUESTIONS, SamplingParams(**STEP))
    assert [s[0].token_ids for s in first] == [s[0].token_ids for s in plain.generate(QUESTIONS, SamplingParams(**STEP))]
    assert len(cached.prefix_cache) == 3
    prompts = continuations(cached, first, 6)
    before = cached.usage.copy()
    again = cached.generate(prompts, SamplingParams(**STEP))
    used = cached.usage - before
    assert [s[0].token_ids for s in again] == [s[0].token_ids for s in plain.generate(prompts, SamplingParams(**STEP))]
    # every prompt reuses all its tokens but the last; only 3 positions are computed
    assert used.prefill_tokens == sum(map(len, prompts))
    assert used.cached_tokens == used.prefill_tokens - len(prompts)
    # a prompt that shares only part of a cached sequence (a different 7th token)
    other = [p[:-1] + [(p[-1] + 1) % 50 + 3] for p in prompts]
    assert [s[0].token_ids for s in cached.generate(other, SamplingParams(n=2, temperature=0.8, max_tokens=8, seed=5))] \
        == [s[0].token_ids for s in plain.generate(other, SamplingParams(n=2, temperature=0.8, max_tokens=8, seed=5))]


def test_mixed_hits_and_misses_in_one_call(tiny):
    """Some prompts extend cached rows, others are new and only share the chat-less prompt
    prefix with each other: both kinds in one call equal an uncached engine."""
    model, tokenizer = tiny
    cached = make_engine("torch", model, tokenizer=tokenizer)
    plain = make_engine("torch", model, tokenizer=tokenizer, prefix_cache_mb=0)
    first = cached.generate(QUESTIONS[:2], SamplingParams(**STEP))
    base = cached.prompt_ids(QUESTIONS[:2])
    fresh = cached.prompt_ids(["Q: What is 9*9?\nA:", "Q: What is 10-4?\nA:"])
    prompts = [base[0] + first[0][0].token_ids[:4], fresh[0], base[1] + first[1][0].token_ids[:9], fresh[1]]
    params = SamplingParams(n=3, temperature=1.0, max_tokens=10, seed=1)
    assert [[x.token_ids for x in s] for s in cached.generate(prompts, params)] == \
        [[x.token_ids for x in s] for s in plain.generate(prompts, params)]


def test_a_weight_change_empties_the_cache(tiny):
    _, tokenizer = tiny
    model = build_tiny_model(tokenizer, "1m", seed=4).eval()
    cached = make_engine("torch", model, tokenizer=tokenizer)
    first = cached.generate(QUESTIONS, SamplingParams(**STEP))
    prompts = continuations(cached, first, 5)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-1.0)  # an optimiser step: the cached keys/values are stale
    before = cached.usage.copy()
    after = cached.generate(prompts, SamplingParams(**STEP))
    plain = make_engine("torch", model, tokenizer=tokenizer, prefix_cache_mb=0)
    fresh = plain.generate(prompts, SamplingParams(**STEP))
    assert [s[0].token_ids for s in after] == [s[0].token_ids for s in fresh]
    # nothing reused across calls: only the prefix the prompts share within the call
    assert (cached.usage - before).cached_tokens == plain.usage.cached_tokens
