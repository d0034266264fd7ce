"""The torch engine against Hugging Face `generate` and teacher forcing, on tiny random models.

Random weights make greedy text loop on a few characters, which is all these tests need:
greedy output is deterministic, so stop strings can be chosen from it and the expected cut
computed, and `model.generate` is the reference for every token.
"""
from __future__ import annotations

import string

import pytest
import torch

from ponder.generation import Generator, Sample, SamplingParams, Usage, make_engine
from ponder.generation.kv_cache import GrowingLayer, growing_cache
from ponder.generation.prefill import length_groups, shared_prefix
from ponder.generation.sampling import sample_tokens, top_k_filter, top_p_filter
from ponder.generation.stops import IncrementalDetokenizer, decode_completion, find_stop
from ponder.models import build_char_tokenizer, build_tiny_model, format_prompt

PROMPTS = [
    "Q: What is 2+3?\nA:",
    "Q: Add 17 and 25.\nA:",
    "Q: hi\nA:",
    "Q: " + "a long question " * 8 + "\nA:",
    "x",
]
GREEDY = dict(temperature=0, max_tokens=24)


@pytest.fixture(scope="module")
def tiny():
    tokenizer = build_char_tokenizer()
    return build_tiny_model(tokenizer, "1m").eval(), tokenizer


@pytest.fixture(scope="module")
def bpe():
    """A BPE tokenizer whose tokens span several characters (and a model over it), so stop
    strings can end in the middle of a token."""
    from tokenizers import Tokenizer, decoders, models, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.decoder = decoders.Fuse()
    corpus = ["the cat sat on the mat. 12 + 30 = 42. the dog ate the bone." * 3, "what is 7 and 8? it is 15."] * 20
    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    tk.train_from_iterator(
        corpus, trainers.BpeTrainer(vocab_size=200, special_tokens=specials, initial_alphabet=list(string.printable))
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        clean_up_tokenization_spaces=False,
    )
    tokenizer.padding_side = "left"
    return build_tiny_model(tokenizer, "1m").eval(), tokenizer


def hf_greedy(model, tokenizer, prompts, max_new_tokens):
    """`model.generate(do_sample=False)` on the left-padded batch, each row cut after EOS."""
    batch = tokenizer(prompts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=False, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)
    rows = out[:, batch["input_ids"].shape[1] :].tolist()
    eos = model.generation_config.eos_token_id
    return [row[: row.index(eos) + 1] if eos in row else row for row in rows]


# ----- greedy decoding is model.generate, token for token -----


def test_greedy_matches_model_generate(tiny):
    model, tokenizer = tiny
    gen = make_engine("torch", model, tokenizer=tokenizer)
    samples = gen.generate(PROMPTS, SamplingParams(**GREEDY))
    assert [s[0].token_ids for s in samples] == hf_greedy(model, tokenizer, PROMPTS, 24)
    for (s,) in samples:
        assert s.finish_reason == "length" and s.num_tokens == 24 and s.stop_reason is None
        assert s.text == tokenizer.decode(s.token_ids, skip_special_tokens=True)


def test_greedy_matches_with_shared_prefix_and_prefill_groups(tiny):
    """Prompts sharing a prefix, with suffix lengths far apart: the prefix is prefilled once
    and the suffixes in separate groups, yet every token equals model.generate's."""
    model, tokenizer = tiny
    prompts = ["Context: " + "the same shared words " * 4 + tail for tail in ["x" * 150, "y" * 140, "z", "ab"]]
    ids = [tokenizer(p)["input_ids"] for p in prompts]
    prefix = shared_prefix(ids)
    assert prefix == len("Context: " + "the same shared words " * 4)
    assert len(length_groups([len(i) - prefix for i in ids])) == 2
    samples = make_engine("torch", model, tokenizer=tokenizer).generate(prompts, SamplingParams(**GREEDY))
    assert [s[0].token_ids for s in samples] == hf_greedy(model, tokenizer, prompts, 24)


def test_greedy_matches_with_transformers_cache(tiny):
    """A sliding-window model cannot use the growing cache: the plain left-padded path (with
    transformers' own cache) must still match generate."""
    from transformers import MistralConfig, MistralForCausalLM

    _, tokenizer = tiny
    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=128, sliding_window=8, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    model = MistralForCausalLM(config).eval()
    assert growing_cache(model.config) is None
    samples = make_engine("torch", model, tokenizer=tokenizer).generate(PROMPTS, SamplingParams(**GREEDY))
    assert [s[0].token_ids for s in samples] == hf_greedy(model, tokenizer, PROMPTS, 24)


def test_row_major_weights_give_the_same_tokens(tiny):
    model, tokenizer = tiny
    fast = make_engine("torch", model, tokenizer=tokenizer, column_major=True).generate(PROMPTS, SamplingParams(**GREEDY))
    plain = make_engine("torch", model, tokenizer=tokenizer, column_major=False).generate(PROMPTS, SamplingParams(**GREEDY))
    assert [s[0].token_ids for s in fast] == [s[0].token_ids for s in plain]


def test_eos_ends_a_sample(tiny):
    """EOS from the generation config: finish_reason 'stop', no stop_reason, the EOS token is
    the last token, and model.generate stops at the same place."""
    model, tokenizer = tiny
    first = make_engine("torch", model, tokenizer=tokenizer).generate(PROMPTS[2:3], SamplingParams(**GREEDY))[0][0]
    eos = first.token_ids[3]  # make a token the greedy text produces the end of sequence
    original = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = eos
    try:
        gen = make_engine("torch", model, tokenizer=tokenizer)
        (s,) = gen.generate(PROMPTS[2:3], SamplingParams(**GREEDY))[0]
        assert s.finish_reason == "stop" and s.stop_reason is None
        assert s.token_ids == first.token_ids[: first.token_ids.index(eos) + 1]
        assert s.num_tokens == len(s.token_ids) < 24
        assert [s.token_ids] == hf_greedy(model, tokenizer, PROMPTS[2:3], 24)
    finally:
        model.generation_config.eos_token_id = original


# ----- n samples, usage, chunks -----


def test_n_samples_share_one_prefill(tiny):
    model, tokenizer = tiny
    gen = make_engine("torch", model, tokenizer=tokenizer)
    samples = gen.generate(PROMPTS, SamplingParams(n=3, temperature=0, max_tokens=10))
    prompt_tokens = sum(len(tokenizer(p)["input_ids"]) for p in PROMPTS)
    assert gen.usage == Usage(prefill_tokens=prompt_tokens, generated_tokens=len(PROMPTS) * 3 * 10, calls=1)
    reference = hf_greedy(model, tokenizer, PROMPTS, 10)
    for prompt_samples, ref in zip(samples, reference):
        assert [s.token_ids for s in prompt_samples] == [ref] * 3


def test_chunks_keep_prompt_order_and_samples(tiny):
    """batch_size 3 with n=2 runs five prompts one at a time; results are the same, in the
    same order, as one big batch - greedy and seeded sampling alike."""
    model, tokenizer = tiny
    for params in [SamplingParams(n=2, **GREEDY), SamplingParams(n=2, temperature=1.0, max_tokens=16, seed=7)]:
        small = make_engine("torch", model, tokenizer=tokenizer, batch_size=3).generate(PROMPTS, params)
        large = make_engine("torch", model, tokenizer=tokenizer, batch_size=64).generate(PROMPTS, params)
        auto = make_engine("torch", model, tokenizer=tokenizer).generate(PROMPTS, params)
        assert [[s.token_ids for s in p] for p in small] == [[s.token_ids for s in p] for p in large]
        assert [[s.token_ids for s in p] for p in auto] == [[s.token_ids for s in p] for p in large]


def test_automatic_batch_rows_follow_the_kv_cache(tiny):
    """batch_size=None: rows whose keys and values of every layer at the call's longest
    sequence fit AUTO_KV_BYTES, within AUTO_ROWS; a set batch_size is kept as given."""
    from ponder.generation.batch_rows import AUTO_KV_BYTES, AUTO_ROWS

    model, tokenizer = tiny
    c = model.config
    per_token = c.num_hidden_layers * 2 * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads) * 4
    engine = make_engine("torch", model, tokenizer=tokenizer)
    assert engine.rows_for(100) == min(AUTO_ROWS[1], max(AUTO_ROWS[0], AUTO_KV_BYTES // (per_token * 100)))
    assert engine.rows_for(10**9) == AUTO_ROWS[0]  # a long sequence: never fewer rows than before
    longest = AUTO_KV_BYTES // (per_token * 100)  # a sequence for which about 100 rows fit: exactly those
    assert AUTO_ROWS[0] < engine.rows_for(longest) == AUTO_KV_BYTES // (per_token * longest) < AUTO_ROWS[1]
    assert make_engine("torch", model, tokenizer=tokenizer, batch_size=3).rows_for(100) == 3


def test_empty_prompt_list(tiny):
    gen = make_engine("torch", tiny[0], tokenizer=tiny[1])
    assert gen.generate([], SamplingParams()) == []
    assert gen.usage.prefill_tokens == gen.usage.generated_tokens == 0


# ----- sampling -----


def test_seed_reproducible_and_different_seeds_differ(tiny):
    model, tokenizer = tiny
    gen = make_engine("torch", model, tokenizer=tokenizer)
    params = dict(n=4, temperature=1.0, top_p=0.95, max_tokens=20)
    a = gen.generate(PROMPTS, SamplingParams(seed=1, **params))
    b = gen.generate(PROMPTS, SamplingParams(seed=1, **params))
    c = gen.generate(PROMPTS, SamplingParams(seed=2, **params))
    ids = lambda out: [[s.token_ids for s in p] for p in out]  # noqa: E731
    assert ids(a) == ids(b)
    assert ids(a) != ids(c)
    # the n samples of a prompt are distinct draws, not copies
    assert all(len({tuple(t) for t in p}) > 1 for p in ids(a))


def test_top_k_1_is_greedy(tiny):
    model, tokenizer = tiny
    gen = make_engine("torch", model, tokenizer=tokenizer)
    greedy = gen.generate(PROMPTS, SamplingParams(**GREEDY))
    top1 = gen.generate(PROMPTS, SamplingParams(temperature=0.8, top_k=1, max_tokens=24, seed=3))
    assert [s[0].token_ids for s in top1] == [s[0].token_ids for s in greedy]


def test_logprobs_match_teacher_forcing(tiny):
    """Each generated token's logprob equals log_softmax(logits / T) of a full forward pass
    over prompt + completion, and `logprobs()` reproduces them in a batch."""
    model, tokenizer = tiny
    gen = make_engine("torch", model, tokenizer=tokenizer)
    for temperature in [0.7, 0.0]:
        params = SamplingParams(n=2, temperature=temperature, top_p=0.9, max_tokens=12, seed=0)
        samples = gen.generate(PROMPTS[:3], params)
        prompts, completions, expected = [], [], []
        for prompt, prompt_samples in zip(PROMPTS[:3], samples):
            prompt_ids = tokenizer(prompt)["input_ids"]
            for s in prompt_samples:
                ids = torch.tensor([prompt_ids + s.token_ids])
                with torch.inference_mode():
                    logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1]
                logp = (logits / (temperature or 1.0)).log_softmax(-1)
                reference = logp.gather(-1, torch.tensor(s.token_ids)[:, None]).squeeze(-1)
                assert torch.allclose(torch.tensor(s.logprobs), reference, atol=1e-4)
                prompts.append(prompt)
                completions.append(s.token_ids)
                expected.append(s.logprobs)
        scored = gen.logprobs(prompts, completions, temperature=temperature)
        for got, want in zip(scored, expected):
            assert torch.allclose(torch.tensor(got), torch.tensor(want), atol=1e-4)


def test_logprobs_of_text_completions(tiny):
    model, tokenizer = tiny
    gen = make_engine("torch", model, tokenizer=tokenizer)
    by_text = gen.logprobs(["Q: hi\nA:", "x"], [" 42", ""])
    by_ids = gen.logprobs(["Q: hi\nA:", "x"], [tokenizer(" 42")["input_ids"], []])
    assert len(by_text[0]) == 3 and by_text[1] == [] and by_text == by_ids
    with pytest.raises(ValueError, match="one completion per prompt"):
        gen.logprobs(["a", "b"], ["c"])


def test_samples_follow_weight_updates(tiny):
    """An RL loop changes the weights in place between calls; the engine's weight copies must
    follow (the next call equals a fresh engine's)."""
    _, tokenizer = tiny
    model = build_tiny_model(tokenizer, "1m", seed=1).eval()
    gen = make_engine("torch", model, tokenizer=tokenizer, column_major=True)
    before = gen.generate(PROMPTS, SamplingParams(**GREEDY))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-1.0)  # an "optimizer step" big enough to change greedy text
    after = gen.generate(PROMPTS, SamplingParams(**GREEDY))
    fresh = make_engine("torch", model, tokenizer=tokenizer, column_major=True).generate(PROMPTS, SamplingParams(**GREEDY))
    assert [s[0].token_ids for s in after] == [s[0].token_ids for s in fresh]
    assert [s[0].token_ids for s in after] != [s[0].token_ids for s in before]



bf16_kernels = pytest.mark.skipif(not __import__("ponder.generation.weight_layout", fromlist=["x"])
                                  .PackedBF16Linears.supported(), reason="no oneDNN bf16 kernels on this CPU")


@bf16_kernels
def test_bf16_matmuls_stay_close_to_fp32(tiny):
    """torch-bf16 computes the Linear layers in bf16: teacher-forced log-probabilities within
    bf16 rounding of fp32's, on a model whose other layers it leaves alone."""
    model, tokenizer = tiny
    completions = ["12 + 30 = 42", "the cat", "7"]
    exact = make_engine("torch", model, tokenizer=tokenizer).logprobs(PROMPTS[:3], completions)
    bf16 = make_engine("torch-bf16", model, tokenizer=tokenizer).logprobs(PROMPTS[:3], completions)
    diffs = [abs(a - b) for row_a, row_b in zip(exact, bf16) for a, b in zip(row_a, row_b)]
    assert len(diffs) == sum(len(c) for c in completions)
    assert 0 < max(diffs) < 0.1  # rounded (so really bf16), but only by bf16's 3 significant digits


@bf16_kernels
def test_bf16_follows_weight_updates_and_gives_the_model_back(tiny):
    """The packed copies follow in-place updates (an RL loop), and after a call every Linear
    runs its own forward again (training sees plain fp32 layers)."""
    _, tokenizer = tiny
    model = build_tiny_model(tokenizer, "1m", seed=1).eval()
    gen = make_engine("torch-bf16", model, tokenizer=tokenizer)
    before = gen.generate(PROMPTS, SamplingParams(**GREEDY))
    assert not any("forward" in m.__dict__ for m in model.modules())
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-1.0)
    after = gen.generate(PROMPTS, SamplingParams(**GREEDY))
    fresh = make_engine("torch-bf16", model, tokenizer=tokenizer).generate(PROMPTS, SamplingParams(**GREEDY))
    assert [s[0].token_ids for s in after] == [s[0].token_ids for s in fresh]
    assert [s[0].token_ids for s in after] != [s[0].token_ids for s in before]
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_matmul_dtype_is_checked(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="matmul_dtype must be None or 'bfloat16'"):
        make_engine("torch", model, tokenizer=tokenizer, matmul_dtype="fp8")


# ----- stop strings and max_tokens -----


def _first_fresh_pair(text: str, pieces_start: list[int]) -> int | None:
    """An index e among `pieces_start` (e >= 1) whose two characters text[e-1:e+1] occur in
    `text` first at e-1, so a stop string made of them stops generation right there."""
    for e in pieces_start:
        if 1 <= e < len(text) - 1 and text.find(text[e - 1 : e + 1]) == e - 1:
            return e
    return None


def test_stop_string_truncates_text(tiny):
    model, tokenizer = tiny
    gen = make_engine("torch", model, tokenizer=tokenizer)
    full = gen.generate(PROMPTS, SamplingParams(**GREEDY))
    checked = 0
    for prompt, (ref,) in zip(PROMPTS, full):
        e = _first_fresh_pair(ref.text, list(range(len(ref.text))))  # char tokenizer: a token per char
        if e is None:
            continue
        stop = ref.text[e - 1 : e + 1]
        for include in [False, True]:
            (s,) = gen.generate([prompt], SamplingParams(stop=[stop], include_stop_str_in_output=include, **GREEDY))[0]
            assert (s.finish_reason, s.stop_reason) == ("stop", stop)
            assert s.text == ref.text[: e + 1 if include else e - 1]
            assert s.token_ids == ref.token_ids[: e + 1] and s.num_tokens == e + 1
        checked += 1
    assert checked >= 2


def test_stop_string_ending_mid_token(bpe):
    """A stop string that ends inside a multi-character token: the token is kept in
    token_ids, the text is cut at the stop string."""
    model, tokenizer = bpe
    gen = make_engine("torch", model, tokenizer=tokenizer)
    prompts = ["the cat", "12 + 30 =", "what is 7"]
    checked = 0
    for prompt, (ref,) in zip(prompts, gen.generate(prompts, SamplingParams(**GREEDY))):
        pieces = [tokenizer.decode([t]) for t in ref.token_ids]
        starts = [sum(len(p) for p in pieces[:k]) for k in range(len(pieces))]
        assert "".join(pieces) == ref.text
        e = _first_fresh_pair(ref.text, [st for st, p in zip(starts, pieces) if len(p) >= 2])
        if e is None:
            continue
        k = starts.index(e)  # the stop string ends on the first character of token k
        stop = ref.text[e - 1 : e + 1]
        for include in [False, True]:
            (s,) = gen.generate([prompt], SamplingParams(stop=[stop], include_stop_str_in_output=include, **GREEDY))[0]
            assert (s.finish_reason, s.stop_reason) == ("stop", stop)
            assert s.text == ref.text[: e + 1 if include else e - 1]
            assert s.token_ids == ref.token_ids[: k + 1]
        checked += 1
    assert checked >= 1


def test_max_tokens_is_length(tiny):
    gen = make_engine("torch", tiny[0], tokenizer=tiny[1])
    for (s,) in gen.generate(PROMPTS, SamplingParams(temperature=1.0, max_tokens=7, seed=0)):
        assert s.finish_reason == "length" and s.num_tokens == len(s.token_ids) == len(s.logprobs) == 7


def test_finished_rows_leave_the_batch(tiny):
    """Count the rows of every decoding forward pass: a row that stopped is never computed
    again, so the rows computed are exactly sum(num_tokens - 1) (each row's first token
    comes from the prefill) - far fewer than rows x max_tokens."""
    model, tokenizer = tiny
    decode_rows = []

    def count(module, args, kwargs):
        ids = kwargs["input_ids"]
        if ids.shape[1] == 1:
            decode_rows.append(ids.shape[0])

    handle = model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        params = SamplingParams(n=4, temperature=1.0, max_tokens=40, stop=["a", "e", "o", "1"], seed=0)
        samples = make_engine("torch", model, tokenizer=tokenizer).generate(PROMPTS, params)
    finally:
        handle.remove()
    lengths = [s.num_tokens for p in samples for s in p]
    assert any(s.finish_reason == "stop" for p in samples for s in p)
    assert len(set(lengths)) > 3  # rows stopped at many different steps
    assert sum(decode_rows) == sum(n - 1 for n in lengths) < len(lengths) * (params.max_tokens - 1)
    # Rows moved around the cache as others left, yet each sample is the start of the same
    # row's sample without stop strings (where every row runs to max_tokens).
    params.stop = []
    unstopped = make_engine("torch", model, tokenizer=tokenizer).generate(PROMPTS, params)
    for p, q in zip(samples, unstopped):
        for s, t in zip(p, q):
            assert s.token_ids == t.token_ids[: s.num_tokens]


# ----- prompts: chat template, and token ids continued verbatim -----


def test_chat_template_and_token_id_prompts():
    tokenizer = build_char_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant] "
    model = build_tiny_model(tokenizer, "1m").eval()
    gen = make_engine("torch", model, tokenizer=tokenizer)
    assert format_prompt(tokenizer, "hi") == "[user] hi\n[assistant] "
    assert gen.prompt_ids(["hi"]) == [tokenizer("[user] hi\n[assistant] ", add_special_tokens=False)["input_ids"]]
    assert make_engine("torch", model, tokenizer=tokenizer, chat=False).prompt_ids(["hi"]) == [tokenizer("hi")["input_ids"]]
    params = SamplingParams(**GREEDY)
    raw = gen.generate(["hi"], params)[0][0]
    by_ids = gen.generate(gen.prompt_ids(["hi"]), params)[0][0]
    assert raw.token_ids == by_ids.token_ids


def test_bad_params_name_the_field(tiny):
    gen = make_engine("torch", tiny[0], tokenizer=tiny[1])
    for bad, field in [(dict(n=0), "n"), (dict(top_p=0.0), "top_p"), (dict(temperature=-1), "temperature"),
                       (dict(stop=[""]), "stop"), (dict(max_tokens=0), "max_tokens"), (dict(top_k=-2), "top_k")]:
        with pytest.raises(ValueError, match=f"SamplingParams.{field}"):
            gen.generate(["x"], SamplingParams(**bad))
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        gen.generate(["x", ""], SamplingParams())


def test_engine_implements_the_contract(tiny):
    gen = make_engine("torch", tiny[0], tokenizer=tiny[1])
    assert isinstance(gen, Generator)
    out = gen.generate(["x"], SamplingParams(n=2, max_tokens=3, seed=0))
    assert len(out) == 1 and len(out[0]) == 2 and all(isinstance(s, Sample) for s in out[0])
    assert gen.usage.calls == 1


# ----- the pure pieces -----


def test_top_k_and_top_p_filters():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(top_k_filter(logits, 2)).tolist() == [[False, False, True, True]]
    # mass before each token: 0, .5, .8, .95 -> p=0.8 keeps the first two, p=0.81 three
    assert torch.isinf(top_p_filter(logits, 0.8)).tolist() == [[False, False, True, True]]
    assert torch.isinf(top_p_filter(logits, 0.81)).tolist() == [[False, False, False, True]]
    assert torch.isinf(top_p_filter(logits, 0.1)).tolist() == [[False, True, True, True]]  # the top token stays
    assert torch.equal(top_p_filter(logits, 1.0), logits) and torch.equal(top_k_filter(logits, 0), logits)


def test_exponential_race_samples_the_distribution():
    probs = torch.tensor([0.6, 0.3, 0.1, 0.0])
    gen = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_tokens(probs[None], [gen]) for _ in range(4000)]).flatten()
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    assert torch.allclose(freq, probs, atol=0.03) and freq[3] == 0


def test_find_stop_prefers_the_earliest_ending_match():
    assert find_stop("abc\n\nx", 3, ["\n\n"]) == ("\n\n", 3)  # spans the previous delta
    assert find_stop("abcdef", 2, ["cdef", "de"]) == ("de", 3)
    assert find_stop("abcdef", 2, ["ef", "def"]) == ("def", 3)  # same end: the longer one
    assert find_stop("abab", 1, ["ab"]) == ("ab", 2)  # only matches ending in the delta
    assert find_stop("abc", 1, ["x"]) is None


def test_incremental_detokenizer_equals_full_decode(bpe):
    _, tokenizer = bpe
    prompt = tokenizer("the cat")["input_ids"]
    ids = tokenizer("sat on the mat. 12 + 30 = 42.")["input_ids"] + [tokenizer.eos_token_id]
    detok = IncrementalDetokenizer(tokenizer, prompt)
    deltas = [detok.push(t) for t in ids]
    assert "".join(deltas) == detok.text == decode_completion(tokenizer, prompt, ids) == "sat on the mat. 12 + 30 = 42."


def test_growing_layer_drops_rows_in_place_or_by_copy():
    layer = GrowingLayer(spare=4)
    keys = torch.arange(5 * 2 * 3 * 2, dtype=torch.float).reshape(5, 2, 3, 2)
    layer.update(keys, -keys)
    for order in [[0, 4, 2], [2, 0, 1, 1]]:  # fill holes from the tail; any other order
        layer.reorder_cache(torch.tensor(order))
        assert torch.equal(layer.keys, keys[order]) and torch.equal(layer.values, -keys[order])
        keys = keys[order]
    layer.update(keys[:, :, :1] + 100, keys[:, :, :1])  # appending still works after both
    assert layer.get_seq_length() == 4 and torch.equal(layer.keys[:, :, 3], keys[:, :, 0] + 100)
