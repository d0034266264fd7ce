"""DPO: the loss by hand, sequence log-probs, and preference rows (plain and conversational)."""
import json
import math

import pytest
import torch

from ponder.models import build_char_tokenizer, build_tiny_model
from ponder.train.dpo import (
    collate_pairs,
    dpo_loss,
    read_preferences,
    sequence_logps,
    tokenize_preferences,
)


def test_dpo_loss_by_hand():
    # implicit rewards: chosen 0.5 * (-1 + 1.5) = 0.25, rejected 0.5 * (-2 + 1.5) = -0.25
    loss, stats = dpo_loss(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]), torch.tensor([-1.5]), 0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-0.5)))
    assert stats["margin"] == pytest.approx(0.5) and stats["pair_accuracy"] == 1.0


def test_dpo_loss_is_log2_at_reference():
    x = torch.tensor([-3.0, -1.0])
    loss, _ = dpo_loss(x, x - 1, x, x - 1, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2))


def test_sequence_logps_match_token_sum():
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, "1m").eval()
    [ex] = tokenize_preferences(tok, [{"prompt": "1+2\n", "chosen": "3", "rejected": "4"}], 64, append_eos=False)
    batch = collate_pairs([ex], tok.pad_token_id)
    lp = sequence_logps(model, batch)
    with torch.no_grad():
        ids = torch.tensor([ex.prompt + ex.chosen])
        manual = torch.log_softmax(model(input_ids=ids).logits[0, -2], -1)[ex.chosen[0]]
    assert lp[0].item() == pytest.approx(manual.item(), abs=1e-5)


def test_bad_preference_row_is_named(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n" + json.dumps({"prompt": "a", "chosen": "b"}) + "\n")
    with pytest.raises(ValueError, match=r"prefs.jsonl:2.*field 'rejected'"):
        read_preferences(path)


def test_a_trailing_assistant_message_is_continued_not_closed():
    tok = build_char_tokenizer()
    rows = [{"prompt": [{"role": "user", "content": "7*5-2\n"}, {"role": "assistant", "content": "35-2\n"}],
             "chosen": "33\n", "rejected": "34\n"},
            {"prompt": [{"role": "user", "content": "7*5-2\n"}], "chosen": "35-2\n", "rejected": "36-2\n"}]
    continued, fresh = tokenize_preferences(tok, rows, 64, append_eos=False)

    def ids(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    assert continued.prompt == ids("7*5-2\n") + ids("35-2\n") and continued.chosen == ids("33\n")
    assert fresh.prompt == ids("7*5-2\n") and fresh.rejected == ids("36-2\n")


def test_bad_conversational_prompt_is_named(tmp_path):
    path = tmp_path / "prefs.jsonl"
    good = {"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "chosen": "b",
            "rejected": "c"}
    bad = dict(good, prompt=[{"role": "assistant", "content": "a"}])
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match=r"prefs.jsonl:2: field 'prompt': expected a user message, optionally "
                                         r"followed by an assistant message"):
        read_preferences(path)
    path.write_text(json.dumps(good) + "\n")
    assert read_preferences(path) == [good]
