import json

import pytest
import torch

from ponder.models import build_char_tokenizer, build_tiny_model
from ponder.train.loop import TrainConfig, TrainLoop, lr_at
from ponder.train.sft import IGNORE, collate, completion_loss, make_batch_at, tokenize_pairs


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(lr=1.0, warmup_steps=4, steps=14, min_lr_ratio=0.1)
    assert [lr_at(s, cfg) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lr_at(4, cfg) == pytest.approx(1.0)
    assert lr_at(9, cfg) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine
    assert lr_at(14, cfg) == pytest.approx(0.1)


ROWS = [{"prompt": f"Compute {a}+{b}.\n", "completion": f"{a + b}\nAnswer: {a + b}"} for a in range(6) for b in range(6)]


def test_sft_masks_prompt_and_appends_eos():
    tok = build_char_tokenizer()
    [ex] = tokenize_pairs(tok, ROWS[:1], max_len=64)
    n_prompt = len("Compute 0+0.\n")
    assert ex.labels[:n_prompt] == [IGNORE] * n_prompt
    assert ex.labels[-1] == tok.eos_token_id
    assert tok.decode(ex.labels[n_prompt:-1]) == "0\nAnswer: 0"
    batch = collate(tokenize_pairs(tok, ROWS[:3], 64), tok.pad_token_id)
    assert batch["input_ids"].shape == batch["labels"].shape
    # loss counts completion tokens only: every completion character and the EOS, each
    # predicted from the token before it.
    _, stats = completion_loss(build_tiny_model(tok, "1m"), batch)
    assert stats["tokens"] == sum(len(r["completion"]) + 1 for r in ROWS[:3])


def test_bad_sft_rows_are_named():
    tok = build_char_tokenizer()
    with pytest.raises(ValueError, match=r"row 2: field 'completion': expected a string"):
        tokenize_pairs(tok, [ROWS[0], {"prompt": "x"}], 64)


def _loop(tmp_path, crash_at=None):
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, "1m", seed=0)
    examples = tokenize_pairs(tok, ROWS, 64)
    batch_at = make_batch_at(examples, 4, 2, tok.pad_token_id, seed=0)

    def maybe_crash(step):
        if crash_at is not None and step == crash_at:
            raise KeyboardInterrupt("simulated kill")
        return batch_at(step)

    cfg = TrainConfig(lr=1e-2, warmup_steps=2, steps=6, grad_accum=2, save_every=3, log_every=1, eval_every=0)
    return TrainLoop(model, cfg, tmp_path, maybe_crash, completion_loss, progress=False)


def test_resume_after_kill_equals_uninterrupted_run(tmp_path):
    ref = _loop(tmp_path / "ref")
    ref.run()
    with pytest.raises(KeyboardInterrupt):
        _loop(tmp_path / "killed", crash_at=4).run()  # checkpoint at step 3, killed in step 5
    resumed = _loop(tmp_path / "killed")
    out = resumed.run()
    assert out["step"] == 6
    a, b = ref.accelerator.unwrap_model(ref.model), resumed.accelerator.unwrap_model(resumed.model)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6), name
    steps = [json.loads(l)["step"] for l in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # records after the checkpoint were replaced, not duplicated


def test_nonfinite_loss_stops_without_touching_checkpoint(tmp_path):
    loop = _loop(tmp_path)

    def bad_loss(model, micro):
        loss, stats = completion_loss(model, micro)
        return loss * float("nan"), stats

    loop.loss_fn = bad_loss
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        loop.run()
    assert not (tmp_path / "checkpoint").exists()


def test_prompt_completion_file_errors_name_file_line_and_field(tmp_path):
    from ponder.train.sft import read_prompt_completion

    p = tmp_path / "pairs.jsonl"
    p.write_text('{"prompt": "a", "completion": "b"}\n\n{"prompt": "c", "completion": 3}\n')
    with pytest.raises(ValueError, match=r"pairs.jsonl:3: field 'completion': expected a string \(rows of prompt and completion\), got 3"):
        read_prompt_completion(p)
    p.write_text('{"prompt": "a", "completion": "b"}\n')
    assert read_prompt_completion(p) == [{"prompt": "a", "completion": "b"}]
