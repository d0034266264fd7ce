"""The torch engine samples from the weights a trainer holds now, however they changed: an
optimiser step that does not bump tensors' version counters (fused AdamW), a write through
`p.data`, or the trainer's sync (`update_weights`) with tensors the engine already shares.
The engine's column-major weight copies and its prefix cache are rebuilt after any of them."""
from __future__ import annotations

import pytest
import torch

from ponder.generation import SamplingParams, make_engine
from ponder.generation.base import mark_weights_changed
from ponder.models import build_char_tokenizer, build_tiny_model

PROMPT = "3+4*2="


def fresh_logprobs(model, tok, ids):
    return make_engine("torch", model, tokenizer=tok).logprobs([PROMPT], [ids])[0]


@pytest.fixture
def setup():
    torch.manual_seed(0)
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, "1m", seed=0)
    engine = make_engine("torch", model, tokenizer=tok)  # column-major weight copies on this CPU
    [[sample]] = engine.generate([PROMPT], SamplingParams(temperature=0, max_tokens=8))  # copies built, prefix cached
    return model, tok, engine, sample.token_ids


def step(model, fused: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=fused)
    model(input_ids=torch.tensor([[5, 6, 7, 8]]), labels=torch.tensor([[5, 6, 7, 8]])).loss.backward()
    opt.step()


@pytest.mark.parametrize("change", ["fused_adamw", "data_write", "sync"])
def test_the_engine_follows_the_weights(setup, change):
    model, tok, engine, ids = setup
    before = engine.logprobs([PROMPT], [ids])[0]
    if change == "fused_adamw":
        step(model, fused=True)
        mark_weights_changed(model)  # what the training loop does after every optimiser step
    elif change == "data_write":
        for p in model.parameters():
            p.data.mul_(1.5)  # no version bump: what torch.distributed.broadcast(p.data) does
        mark_weights_changed(model)
    else:
        step(model, fused=True)
        engine.update_weights(model.named_parameters())  # the RL trainer's sync, same tensors
    after = engine.logprobs([PROMPT], [ids])[0]
    assert after == pytest.approx(fresh_logprobs(model, tok, ids), abs=1e-5)
    assert max(abs(a - b) for a, b in zip(after, before)) > 1e-3
    [[greedy]] = engine.generate([PROMPT], SamplingParams(temperature=0, max_tokens=8))
    [[ref]] = make_engine("torch", model, tokenizer=tok).generate([PROMPT], SamplingParams(temperature=0,
                                                                                          max_tokens=8))
    assert greedy.token_ids == ref.token_ids


def test_the_training_loop_marks_its_steps(tmp_path):
    """A training loop's optimiser step is seen by an engine built on the model before it."""
    from ponder.train.loop import TrainConfig, TrainLoop

    tok = build_char_tokenizer()
    model = build_tiny_model(tok, "1m", seed=0)
    engine = make_engine("torch", model, tokenizer=tok)
    ids = engine.generate([PROMPT], SamplingParams(temperature=0, max_tokens=8))[0][0].token_ids
    batch = {"input_ids": torch.tensor([[5, 6, 7, 8]])}

    def loss_fn(m, b):
        loss = m(input_ids=b["input_ids"], labels=b["input_ids"]).loss
        return loss, {"loss": loss.item()}

    cfg = TrainConfig(lr=1e-2, steps=2, warmup_steps=1, eval_every=0, save_every=0, device="cpu")
    loop = TrainLoop(model, cfg, tmp_path, lambda step: [batch], loss_fn, progress=False)
    loop.optimizer.optimizer.defaults["fused"] = True  # the stale case: steps that bump no versions
    for group in loop.optimizer.optimizer.param_groups:
        group["fused"] = True
    loop.run()
    assert engine.logprobs([PROMPT], [ids])[0] == pytest.approx(fresh_logprobs(model, tok, ids), abs=1e-5)
