"""The vLLM engine against the torch engine (the reference), on the tiny char-level model:
one vLLM `LLM` for the module (~30-70 s to load and compile on 2 cores).

Random weights make greedy text loop on a character or two; that is all these tests need.
fp32 on both engines: greedy ids agree exactly and logprobs within LOGPROB_TOL.
"""
from __future__ import annotations

import sys

import pytest

from ponder.generation import EngineError, SamplingParams, make_engine

PROMPTS = ["What is 2+3?", "Add 17 and 25.", "hi", "a long question " * 8]
GREEDY = dict(temperature=0, max_tokens=24)
# Same weights, same fp32 math in a different order (vLLM's fused CPU kernels vs PyTorch).
LOGPROB_TOL = 1e-3


@pytest.fixture(scope="module")
def engines(tiny):
    """(vllm engine, torch engine) on the tiny model, seed 0."""
    folder, model, tokenizer = tiny
    vllm_engine = make_engine("vllm", str(folder), seed=0)
    torch_engine = make_engine("torch", model, tokenizer=tokenizer)
    yield vllm_engine, torch_engine
    vllm_engine.close()
    vllm_engine.close()  # idempotent
    with pytest.raises(EngineError, match="closed"):
        vllm_engine.generate(["hi"], SamplingParams(**GREEDY))


def test_prompt_ids_and_tokenize_match_torch(engines):
    v, t = engines
    assert v.prompt_ids(PROMPTS) == t.prompt_ids(PROMPTS)
    assert v.prompt_ids(["hi"])[0] == t.tokenize(["Q: hi\nA:"])[0]  # the template was applied
    assert v.tokenize(["x = 1\n"]) == t.tokenize(["x = 1\n"])


def test_greedy_matches_torch_engine(engines):
    v, t = engines
    params = SamplingParams(**GREEDY)
    ours, ref = v.generate(PROMPTS, params), t.generate(PROMPTS, params)
    for [a], [b] in zip(ours, ref):
        assert a.token_ids == b.token_ids
        assert a.text == b.text
        assert a.finish_reason == b.finish_reason == "length" and a.num_tokens == 24
        assert a.logprobs == pytest.approx(b.logprobs, abs=LOGPROB_TOL)


def test_stop_strings_match_torch_engine(engines):
    v, t = engines
    [[full]] = t.generate(["hi"], SamplingParams(**GREEDY))
    stop = full.text[5:7]  # a string the greedy text reaches a few tokens in
    for keep in (False, True):
        params = SamplingParams(**GREEDY, stop=[stop, "never"], include_stop_str_in_output=keep)
        [[a]], [[b]] = v.generate(["hi"], params), t.generate(["hi"], params)
        assert (a.text, a.token_ids, a.finish_reason, a.stop_reason) == (b.text, b.token_ids, "stop", stop)
        assert a.text.endswith(stop) == keep


def test_token_id_prompt_continues_verbatim(engines):
    """Prompt ids + the first generated ids continue exactly where the full run went."""
    v, _ = engines
    params = SamplingParams(**GREEDY)
    [[full]] = v.generate(["What is 2+3?"], params)
    prefix = v.prompt_ids(["What is 2+3?"])[0] + full.token_ids[:10]
    [[rest]] = v.generate([prefix], SamplingParams(temperature=0, max_tokens=14))
    assert rest.token_ids == full.token_ids[10:]
    # ids and texts in one call
    [[a], [b]] = v.generate([prefix, "What is 2+3?"], SamplingParams(temperature=0, max_tokens=14))
    assert a.token_ids == rest.token_ids and b.token_ids == full.token_ids[:14]


def test_n_samples_and_seeds(engines):
    v, _ = engines
    params = SamplingParams(n=4, temperature=1.0, max_tokens=12, seed=7)
    first = v.generate(PROMPTS[:2], params)
    assert [len(s) for s in first] == [4, 4]
    assert len({tuple(s.token_ids) for s in first[0]}) > 1  # n distinct samples, not one repeated
    assert v.generate(PROMPTS[:2], params) == first  # same seed, same samples
    other = v.generate(PROMPTS[:2], SamplingParams(n=4, temperature=1.0, max_tokens=12, seed=8))
    assert other != first
    # seeds=[...]: each prompt as if alone in a call with its seed, whatever else is in the call
    alone = v.generate([PROMPTS[1]], SamplingParams(n=4, temperature=1.0, max_tokens=12, seed=3))
    mixed = v.generate([PROMPTS[0], PROMPTS[1]], SamplingParams(n=4, temperature=1.0, max_tokens=12), seeds=[5, 3])
    assert [s.token_ids for s in mixed[1]] == [s.token_ids for s in alone[0]]
    with pytest.raises(ValueError, match="one seed per prompt"):
        v.generate(PROMPTS[:2], params, seeds=[1])


def test_sampled_logprobs_follow_the_temperature_convention(engines):
    """Sample.logprobs are log_softmax(logits / T) of the sampled tokens: what the torch
    engine's teacher-forced `logprobs` gives at the same temperature."""
    v, t = engines
    for temperature in (0.7, 1.3):
        [[s]] = v.generate(["hi"], SamplingParams(temperature=temperature, max_tokens=16, seed=1))
        [ref] = t.logprobs(["hi"], [s.token_ids], temperature=temperature)
        assert s.logprobs == pytest.approx(ref, abs=LOGPROB_TOL)
    [[s]] = v.generate(["hi"], SamplingParams(temperature=1.0, max_tokens=4, seed=1, logprobs=False))
    assert s.logprobs is None and s.num_tokens == 4


def test_teacher_forced_logprobs_match_torch(engines):
    v, t = engines
    prompts = ["What is 2+3?", v.prompt_ids(["hi"])[0], "x"]
    completions = [" 5\n", [10, 11, 12, 13], ""]
    for temperature in (1.0, 0):
        ours, ref = v.logprobs(prompts, completions, temperature), t.logprobs(prompts, completions, temperature)
        assert [len(r) for r in ours] == [3, 4, 0]
        for a, b in zip(ours, ref):
            assert a == pytest.approx(b, abs=LOGPROB_TOL)
    with pytest.raises(EngineError, match="temperature 0.5"):
        v.logprobs(prompts, completions, temperature=0.5)


def test_usage_counts(engines):
    """Prompt tokens once per prompt (n samples share them), cached tokens from vLLM's prefix
    cache (whole 128-token blocks on CPU), generated tokens."""
    v, _ = engines
    long_prompt = "count the words in this sentence please " * 5  # 205 chars -> ~210 ids
    ids = v.prompt_ids([long_prompt, "hi"])
    before = v.usage.copy()
    out = v.generate([long_prompt, "hi"], SamplingParams(n=3, temperature=1.0, max_tokens=5, seed=0))
    used = v.usage - before
    assert used.calls == 1
    assert used.prefill_tokens == len(ids[0]) + len(ids[1])
    assert used.generated_tokens == sum(s.num_tokens for samples in out for s in samples)
    before = v.usage.copy()
    v.generate([long_prompt], SamplingParams(temperature=0, max_tokens=2))
    used = v.usage - before
    assert used.prefill_tokens == len(ids[0]) and used.generated_tokens == 2
    assert used.cached_tokens == 128  # the prompt's first full block, computed by the call before


def test_update_weights_switches_to_the_new_model(engines, tiny, tiny_other):
    """After update_weights(another model's parameters) the engine generates, and scores,
    as that model does; loading the first model's state dict back restores it. The tiny
    model ties its embeddings: `named_parameters()` (what the RL trainer pushes) has no
    `lm_head.weight`, a state dict has it."""
    v, t = engines
    _, other_model, tokenizer = tiny_other
    other = make_engine("torch", other_model, tokenizer=tokenizer)
    params = SamplingParams(**GREEDY)
    before = v.generate(PROMPTS, params)
    expected = other.generate(PROMPTS, params)
    assert [s[0].token_ids for s in before] != [s[0].token_ids for s in expected]

    v.update_weights(other_model.named_parameters())
    after = v.generate(PROMPTS, params)
    assert [s[0].token_ids for s in after] == [s[0].token_ids for s in expected]
    for [a], [b] in zip(after, expected):
        assert a.logprobs == pytest.approx(b.logprobs, abs=LOGPROB_TOL)
    [lp] = v.logprobs(["hi"], [after[2][0].token_ids])
    assert lp == pytest.approx(expected[2][0].logprobs, abs=LOGPROB_TOL)

    v.update_weights(tiny[1].state_dict().items())  # the module's other tests expect seed 0
    restored = v.generate(PROMPTS, params)
    assert [s[0].token_ids for s in restored] == [s[0].token_ids for s in before]
    for [a], [b] in zip(restored, before):
        assert a.logprobs == pytest.approx(b.logprobs, abs=LOGPROB_TOL)


def test_update_weights_needs_the_engine_core_in_process(engines, monkeypatch):
    v, _ = engines
    monkeypatch.setattr(v.llm.llm_engine, "model_executor", None)  # as with multiprocessing on
    with pytest.raises(EngineError, match="VLLM_ENABLE_V1_MULTIPROCESSING=0"):
        v.update_weights([])


def test_missing_vllm_says_how_to_install(monkeypatch):
    from ponder.generation.vllm_engine import VLLMGenerator

    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    with pytest.raises(EngineError, match="make setup-engines"):
        VLLMGenerator("anything")
