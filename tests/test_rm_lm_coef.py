"""The reward model's LM loss (`RewardModelConfig.lm_coef`): the body keeps its next-token
loss on the solution tokens beside the step BCE; 0 trains exactly as the plain trainer does."""
import json

import pytest
import torch

from ponder.config import ConfigError
from ponder.rewards.model import RewardModel, load_prm
from ponder.train.loop import TrainLoop
from ponder.train.rm import (RewardModelConfig, RewardModelTrainer, bce_loss, collate_rm, collate_rm_lm,
                             rm_examples)
from ponder.train.sft import make_batch_at


def _tiny_prm(tied: bool = True) -> RewardModel:
    from ponder.models import model_from_spec

    lm, tok = model_from_spec("tiny:1m", seed=0)
    tok.padding_side = "right"
    if not tied:
        lm.model.config.tie_word_embeddings = False
    return RewardModel(lm.model, tok, "prm")


ROWS = [{"prompt": "check:\n", "completions": steps, "labels": labels} for steps, labels in [
    (["12+3", "x4", "Answer: 7"], [1.0, 0.0, 0.0]),
    (["5+5", "10"], [1.0, 1.0]),
    (["9x", "3+1"], [0.0, 0.0]),
    (["2+2", "4", "Answer: 4"], [1.0, 0.75, 0.5]),
    (["7", "1x1"], [0.25, 0.0]),
    (["3+4", "7"], [1.0, 1.0]),
]]
CFG = dict(lr=3e-3, steps=3, warmup_steps=1, batch_size=4, log_every=1, save_every=0, seed=0)


def _log(run) -> list[dict]:
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


def _weights(model_dir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(model_dir.iterdir()) if p.suffix == ".safetensors"}


def test_lm_labels_are_the_solution_tokens_shifted():
    rm = _tiny_prm()
    examples = rm_examples(rm, ROWS[:2], "prm", hard=False, max_len=512)
    batch = collate_rm_lm(examples, rm.tokenizer.pad_token_id)
    prompt = len(rm.encode("check:\n", [])[0])
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        assert e.solution_start == prompt
        # position t predicts token t + 1: the prompt's tokens and the padding are never targets
        assert batch["lm_labels"][i, prompt - 1:n - 1].tolist() == e.input_ids[prompt:]
        assert (batch["lm_labels"][i, :prompt - 1] == -100).all() and (batch["lm_labels"][i, n - 1:] == -100).all()
    plain = collate_rm(examples, rm.tokenizer.pad_token_id)
    assert all(torch.equal(plain[k], batch[k]) for k in plain)


def test_lm_coef_adds_the_lm_loss_and_saves_a_plain_prm(tmp_path):
    RewardModelTrainer(_tiny_prm(), ROWS, RewardModelConfig(**CFG), tmp_path / "plain", progress=False).train()
    RewardModelTrainer(_tiny_prm(), ROWS, RewardModelConfig(**CFG, lm_coef=0.5), tmp_path / "lm",
                       progress=False).train()
    plain, lm = _log(tmp_path / "plain"), _log(tmp_path / "lm")
    # step 1 is computed before any update, on the same batch: the BCE is the plain run's loss
    # (a zero head: ln 2), and the reported loss adds half the LM loss of a random body (~ ln 101)
    assert lm[0]["bce"] == pytest.approx(plain[0]["loss"], abs=1e-6) == pytest.approx(0.6931, abs=1e-4)
    assert 3.5 < lm[0]["lm_loss"] < 6.0
    for row in lm:
        assert row["loss"] == pytest.approx(row["bce"] + 0.5 * row["lm_loss"], rel=1e-5)
    assert "lm_loss" not in plain[0] and "bce" not in plain[0]
    # the saved model is a plain PRM (no LM head added), it loads and scores, and the LM loss changed it
    assert sorted(p.name for p in (tmp_path / "lm" / "model").iterdir()) == \
        sorted(p.name for p in (tmp_path / "plain" / "model").iterdir())
    prompts, steps = [r["prompt"] for r in ROWS], [r["completions"] for r in ROWS]
    a = load_prm(tmp_path / "lm" / "model").score_steps(prompts, steps)
    b = load_prm(tmp_path / "plain" / "model").score_steps(prompts, steps)
    assert [len(s) for s in a] == [len(s) for s in steps]
    assert max(abs(x - y) for s, t in zip(a, b) for x, y in zip(s, t)) > 1e-4


def test_lm_coef_zero_trains_as_the_plain_bce_loop(tmp_path):
    """lm_coef 0 is the trainer before the option existed: the same loop, batches and loss,
    written out here, save the same bytes."""
    RewardModelTrainer(_tiny_prm(), ROWS, RewardModelConfig(**CFG, lm_coef=0.0), tmp_path / "option",
                       progress=False).train()
    rm, cfg = _tiny_prm(), RewardModelConfig(**CFG)
    examples = rm_examples(rm, ROWS, "prm", cfg.hard, cfg.max_len)
    batch_at = make_batch_at(examples, cfg.batch_size, cfg.grad_accum, rm.tokenizer.pad_token_id or 0, cfg.seed,
                             collate_rm)
    TrainLoop(rm, cfg, tmp_path / "by_hand", batch_at,
              lambda m, b: bce_loss(m(b["input_ids"], b["attention_mask"]), b["targets"]),
              save_fn=lambda m, out: m.save(out), progress=False).run()
    assert _weights(tmp_path / "option" / "model") == _weights(tmp_path / "by_hand" / "model")
    assert [r["loss"] for r in _log(tmp_path / "option")] == [r["loss"] for r in _log(tmp_path / "by_hand")]


def test_lm_coef_refuses_negative_values_and_untied_bodies(tmp_path):
    with pytest.raises(ConfigError, match=r"lm_coef \(--lm-coef\) must be a finite number >= 0"):
        RewardModelConfig(lm_coef=-1.0)
    with pytest.raises(ValueError, match="tie_word_embeddings=False"):
        RewardModelTrainer(_tiny_prm(tied=False), ROWS, RewardModelConfig(**CFG, lm_coef=1.0), tmp_path / "untied",
                           progress=False)
    assert not (tmp_path / "untied").exists()
