"""Small correctness checks of the algorithms against their papers and reference trainers:
each test fails on the bug it names and asserts numbers."""
from __future__ import annotations

import pytest
import torch

from ponder.models import build_char_tokenizer, build_tiny_model
from ponder.train.loop import TrainConfig, TrainLoop
from ponder.train.sft import collate, completion_loss, tokenize_pairs


# ----- gradient accumulation: the token mean over the whole step -----

SHORT = {"prompt": "1+1=", "completion": "2"}  # 2 target tokens (the digit and EOS)
LONG = {"prompt": "9+", "completion": "8 is 17, and 17 is odd, so the answer is 17 (seventeen)"}


def _step_grads(tmp_path, micro_batches, loss_fn=completion_loss) -> tuple[dict, dict]:
    """The accumulated gradients of one step over `micro_batches`, and the step's stats."""
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, "1m", seed=0)
    cfg = TrainConfig(grad_accum=len(micro_batches), steps=1, warmup_steps=1)
    loop = TrainLoop(model, cfg, tmp_path, lambda step: micro_batches, loss_fn, progress=False)
    stats = loop._accumulate(micro_batches)
    return {k: p.grad.clone() for k, p in loop.model.named_parameters() if p.grad is not None}, stats


def test_grad_accum_is_the_token_mean_over_the_step(tmp_path):
    """grad_accum=2 over a 2-token and a ~55-token micro-batch must give the gradient of one
    micro-batch holding both (transformers' 2024 fix). The mean of the two micro-batch means
    weighs each token of the short one ~27x more."""
    tok = build_char_tokenizer()
    short, long_ = tokenize_pairs(tok, [SHORT, LONG], 128)
    pad = tok.pad_token_id
    split, split_stats = _step_grads(tmp_path / "a", [collate([short], pad), collate([long_], pad)])
    whole, whole_stats = _step_grads(tmp_path / "b", [collate([short, long_], pad)])
    n_short, n_long = len(SHORT["completion"]) + 1, len(LONG["completion"]) + 1
    assert split.keys() == whole.keys()
    for k in whole:
        assert torch.allclose(split[k], whole[k], rtol=1e-4, atol=1e-7), k
    assert split_stats["tokens"] == whole_stats["tokens"] == n_short + n_long
    assert split_stats["loss"] == pytest.approx(whole_stats["loss"], rel=1e-5)  # logged: the token mean too


def test_a_loss_without_token_counts_keeps_the_mean_over_micro_batches(tmp_path):
    """DPO's and the reward model's losses are means over examples: they do not opt in, so a
    step's gradient stays the mean of the micro-batches' gradients."""
    tok = build_char_tokenizer()
    short, long_ = tokenize_pairs(tok, [SHORT, LONG], 128)
    pad = tok.pad_token_id

    def per_example_loss(model, micro):
        loss, stats = completion_loss(model, micro)
        return loss, {k: v for k, v in stats.items() if k != "loss_tokens"}

    both, _ = _step_grads(tmp_path / "a", [collate([short], pad), collate([long_], pad)], per_example_loss)
    one, _ = _step_grads(tmp_path / "b", [collate([short], pad)], per_example_loss)
    two, _ = _step_grads(tmp_path / "c", [collate([long_], pad)], per_example_loss)
    for k in both:
        assert torch.allclose(both[k], (one[k] + two[k]) / 2, rtol=1e-4, atol=1e-7), k


# ----- beam search returns at most N candidates -----

def test_beam_returns_the_n_best_finished_solutions():
    """N = 4, M = 2: depth 0 draws a, b, a, b and keeps a, a; depth 1 draws, under each a,
    "Answer: 3" (finished) and "c" (open): 2 finished, 2 open; depth 2 expands both c twice
    and finishes 4 more (2, 3, 2, 3). The old loop returned all 6 finished solutions;
    search-and-learn keeps the N best by score."""
    from test_search import Scripted, StepTable, run

    tree = {"": ["a\n", "b\n"], "a\n": ["Answer: 3", "c\n"], "a\nc\n": ["Answer: 2", "Answer: 3"]}
    scores = {"a": 0.9, "b": 0.1, "c": 0.6, "Answer: 2": 0.9, "Answer: 3": 0.5}
    r = run("beam", Scripted(tree=tree), StepTable(scores), n=4, beam_width=2)
    assert [(c.answer, c.score) for c in r.candidates] == [("2", 0.9), ("2", 0.9), ("3", 0.5), ("3", 0.5)]
    assert r.answer == "2"
    # The weighted vote is over those N: 2 gets 1.8 and 3 gets 1.0. Over all 6, 3 would
    # collect 4 * 0.5 = 2.0 and win.
    weighted = run("beam", Scripted(tree=tree), StepTable(scores), n=4, beam_width=2, weighted=True)
    assert len(weighted.candidates) == 4 and weighted.answer == "2"


# ----- process GRPO: the last step's reward covers the completion's end -----

def test_process_grpo_gives_the_eos_the_last_steps_reward():
    """DeepSeekMath §4.1.3, A_t = sum of r~_j over steps j ending at or after t, with the last
    step ending at the completion's last token. One group of two rows:
        row 0: steps rewarded 1, 0 whose text ends at tokens 1, 3; tokens 4, 5 are "\\n", EOS
        row 1: one step rewarded 2, text ends at token 2; tokens 3, 4 are "\\n", EOS
    The group's step rewards {1, 0, 2}: mean 1, unbiased std 1, so r~ = 0, -1, 1. The old
    rule gave the tokens after the last step's text (the EOS among them) 0."""
    from ponder.train.advantages import process_grpo_advantages

    mask = torch.tensor([[1.0, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 0, 0]])
    adv = process_grpo_advantages([[1.0, 0.0], [2.0]], [[1, 3], [2]], mask, group_size=2)
    assert adv[0].tolist() == pytest.approx([-1, -1, -1, -1, -1, -1, 0], abs=1e-5)
    assert adv[1].tolist() == pytest.approx([1, 1, 1, 1, 1, 0, 0], abs=1e-5)


# ----- step ends are found in the prompt's context -----

def _metaspace_tokenizer():
    """A SentencePiece-style (Metaspace) tokenizer: a word's leading space is the "▁" in its
    token, and the decoder drops it on the first token of a decode, as Llama 2's does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "</s>": 1, "▁Q": 2, "▁Step": 3, "▁one": 4, "\n": 5, "▁two": 6}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Metaspace()
    raw.decoder = decoders.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="</s>", unk_token="<unk>")


def test_step_token_ends_decode_after_the_prompt():
    from ponder.generation.stops import decode_completion
    from ponder.train.rl_batch import step_token_ends

    tok = _metaspace_tokenizer()
    prompt, response = [2], [3, 4, 5, 6, 1]  # "Q" | " Step one\n two" EOS
    assert tok.decode(response[:1]) == "Step"  # alone, the first token loses its space
    text = decode_completion(tok, prompt, response)  # the engine's text
    assert text == " Step one\n two"
    steps, ends = step_token_ends(tok, response, text, "\n", prompt_ids=prompt)
    assert steps == [" Step one", " two"]
    assert ends == [1, 3]  # "▁one" and "▁two"; decoded without the prompt: [2, 4], one token late
