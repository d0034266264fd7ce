"""DPO / Step-DPO: the loss by hand, data handling, pair building from arith's step checker."""
import json
import math

import pytest
import torch

from ponder.models import build_char_tokenizer, build_tiny_model
from ponder.tasks import get_task
from ponder.train.dpo import (
    arith_next_step,
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


def test_arith_next_step_from_a_correct_prefix():
    task = get_task("arith", instruction=False)
    p = task.problems("train", n=1, seed=0)[0]
    steps = p.meta["steps"]
    assert arith_next_step(p, []) == steps[0]
    assert arith_next_step(p, steps[:1]) == steps[1]
    assert arith_next_step(p, steps) is None  # ends with the answer
