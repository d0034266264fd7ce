"""Published PRM formats (ponder.rewards.published) through `load_scorer`, on tiny models
built here in each format: Math-Shepherd (a causal LM read at `ки` tags, Wang et al. 2024,
arXiv:2312.08935) and Qwen2.5-Math-PRM (a 2-label token classifier read at `<extra_0>` after
a chat, Zhang et al. 2025, arXiv:2501.07301; built as a `LlamaForTokenClassification`, which
the same reading code serves).

Every score is checked against a forward run here on the input written out by hand from the
model cards' layouts, so a wrong layout, position or label shows as a different number.
"""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from ponder.models import build_char_tokenizer, build_tiny_model
from ponder.rewards.published import QWEN_SYSTEM, MathShepherdPRM, QwenPRM
from ponder.search.batch import _row_tokens
from ponder.search.scorers import load_scorer
from ponder.tasks import get_task

# ChatML, the layout of Qwen's template for a system, a user and an assistant turn.
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture(scope="module")
def task():
    return get_task("arith", instruction=False)


@pytest.fixture(scope="module")
def solutions(task):
    """(prompt, steps) pairs of different lengths: reference solutions and a wrong one."""
    problems = task.problems("test", n=3, seed=0)
    rows = [(task.prompt(p), list(p.meta["steps"])) for p in problems]
    rows.append((task.prompt(problems[0]), ["8+31", "39", "Answer: 39"]))
    return problems, rows


def _spread(model) -> None:
    # A random tiny model's logits are near 0, every probability near 0.5; scaling the final
    # norm spreads them, so a score read at the wrong position cannot pass for the right one.
    with torch.no_grad():
        model.model.norm.weight.mul_(8.0)


@pytest.fixture(scope="module")
def shepherd(tmp_path_factory):
    """(folder, model, tokenizer) of a tiny Math-Shepherd-format PRM: a causal LM whose
    tokenizer has `ки` as one token (the published repo has no extra file, nor does this)."""
    out = tmp_path_factory.mktemp("shepherd")
    tok = build_char_tokenizer()
    tok.add_tokens(["ки"])
    model = build_tiny_model(tok, "1m", seed=0).eval()
    _spread(model)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out, model, tok


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    """(folder, model, tokenizer) of a tiny Qwen2.5-Math-PRM-format PRM: a 2-label token
    classifier, `<extra_0>` a special token, a ChatML chat template."""
    from transformers import LlamaForTokenClassification

    out = tmp_path_factory.mktemp("qwen")
    tok = build_char_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<extra_0>", "<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    config = build_tiny_model(tok, "1m", seed=0).config
    config.num_labels = 2
    torch.manual_seed(1)
    model = LlamaForTokenClassification(config).eval()
    _spread(model)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out, model, tok


def shepherd_reference(model, tok, prompt, steps, tag="ки", good="+", bad="-"):
    """(ids, P(good) at each tag) from the model card's recipe: question, a space, `step ки`
    lines; softmax over the good/bad logits at the tag positions."""
    ids = tok(prompt + " " + "\n".join(f"{s} {tag}" for s in steps))["input_ids"]
    tag_id, good_id, bad_id = (tok.convert_tokens_to_ids(t) for t in (tag, good, bad))
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    pos = [i for i, t in enumerate(ids) if t == tag_id]
    assert len(pos) == len(steps)
    return ids, logits[pos][:, [good_id, bad_id]].softmax(-1)[:, 0].tolist()


def qwen_reference(model, tok, prompt, steps):
    """(ids, P(label 1) at each <extra_0>) on the chat written out by hand."""
    text = (f"<|im_start|>system\n{QWEN_SYSTEM}<|im_end|>\n<|im_start|>user\n{prompt}<|im_end|>\n"
            f"<|im_start|>assistant\n" + "".join(s + "<extra_0>" for s in steps) + "<|im_end|>\n")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    sep = tok.convert_tokens_to_ids("<extra_0>")
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    pos = [i for i, t in enumerate(ids) if t == sep]
    assert len(pos) == len(steps)
    return ids, logits[pos].softmax(-1)[:, 1].tolist()


@pytest.mark.parametrize("fmt", ["shepherd", "qwen"])
def test_scores_match_a_hand_computed_forward(fmt, request, task, solutions):
    folder, model, tok = request.getfixturevalue(fmt)
    problems, rows = solutions
    scorer = load_scorer(str(folder), task, problems)
    assert isinstance(scorer, MathShepherdPRM if fmt == "shepherd" else QwenPRM)
    reference = shepherd_reference if fmt == "shepherd" else qwen_reference
    expected = [reference(model, tok, p, s) for p, s in rows]

    got = scorer.score_steps([p for p, _ in rows], [s for _, s in rows])
    for g, (_, e) in zip(got, expected):
        assert g == pytest.approx(e, abs=1e-5)
    flat = [x for g in got for x in g]
    assert max(flat) - min(flat) > 1e-3  # far above the tolerance: a misread position would show

    # usage counts exactly the tokens forwarded, and search's per-row split of it agrees.
    assert scorer.usage.tokens == sum(len(ids) for ids, _ in expected)
    assert scorer.usage.calls == 1
    rows_tokens = _row_tokens(scorer, "score_steps", [p for p, _ in rows], [s for _, s in rows])
    assert rows_tokens == [len(ids) for ids, _ in expected]


@pytest.mark.parametrize("fmt", ["shepherd", "qwen"])
def test_batches_score_as_one_at_a_time(fmt, request, task, solutions):
    folder, _, _ = request.getfixturevalue(fmt)
    problems, rows = solutions
    scorer = load_scorer(str(folder), task, problems)
    scorer.batch_size = 3  # 4 rows of different lengths: two batches, right padding in each
    prompts, steps = [p for p, _ in rows], [s for _, s in rows]
    together = scorer.score_steps(prompts, steps)
    alone = [scorer.score_steps([p], [s])[0] for p, s in rows]
    for t, a in zip(together, alone):
        assert t == pytest.approx(a, abs=1e-5)
    assert scorer.usage.calls == 1 + len(rows)

    # A whole completion: split on the task's delimiter, scored as the minimum of its steps.
    outcomes = scorer.score_outcomes(prompts, [task.step_delimiter.join(s) for s in steps])
    assert outcomes == pytest.approx([min(a) for a in alone], abs=1e-5)


def test_step_tags_inside_a_step_are_dropped(task, shepherd):
    folder, model, tok = shepherd
    scorer = load_scorer(str(folder), task, [])
    prompt = task.prompt(task.problems("test", n=1, seed=0)[0])
    # A step that spells the tag would otherwise add a position the model reads as a step end.
    got = scorer.score_steps([prompt], [["8+30 ки", "38"]])[0]
    assert got == pytest.approx(shepherd_reference(model, tok, prompt, ["8+30 ", "38"])[1], abs=1e-5)


def test_tokens_are_configurable_by_ponder_prm_json(task, tmp_path, solutions):
    # A plain causal LM with a character vocabulary: `ки` is two unknown characters, so it is
    # no Math-Shepherd PRM by itself ...
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, "1m", seed=2).eval()
    _spread(model)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="the step tag 'ки' is not one token"):
        MathShepherdPRM(model, tok)
    # ... but a ponder_prm.json can name single-character tokens of its own.
    (tmp_path / "ponder_prm.json").write_text(json.dumps(
        {"format": "math_shepherd", "step_tag": "#", "good_token": "y", "bad_token": "n", "aggregation": "last"}))
    problems, rows = solutions
    scorer = load_scorer(str(tmp_path), task, problems)
    assert isinstance(scorer, MathShepherdPRM) and scorer.aggregation == "last"
    got = scorer.score_steps([p for p, _ in rows], [s for _, s in rows])
    for g, (p, s) in zip(got, rows):
        assert g == pytest.approx(shepherd_reference(model, tok, p, s, "#", "y", "n")[1], abs=1e-5)

    (tmp_path / "ponder_prm.json").write_text(json.dumps({"format": "math_shepherd", "step_tag": "ки"}))
    with pytest.raises(ValueError, match=r"ponder_prm.json says 'math_shepherd', but the step tag 'ки'"):
        load_scorer(str(tmp_path), task, problems)
    (tmp_path / "ponder_prm.json").write_text(json.dumps({"format": "orm"}))
    with pytest.raises(ValueError, match="'format' must be one of math_shepherd, qwen_prm"):
        load_scorer(str(tmp_path), task, problems)


def test_a_folder_of_neither_format_is_one_clear_error(task, tmp_path, tiny_dir, qwen):
    # A plain causal LM (no `ки` token) names the folder, why, and the formats expected.
    with pytest.raises(ValueError) as e:
        load_scorer(tiny_dir, task, [])
    msg = str(e.value)
    assert msg.startswith(f"{tiny_dir} is not a PRM ponder can read (a causal LM, but the step tag 'ки'")
    assert "Math-Shepherd" in msg and "Qwen2.5-Math-PRM" in msg and "reward_config.json" in msg
    assert "\n" not in msg
    with pytest.raises(ValueError, match=r"not a PRM ponder can read \(no config.json\)"):
        load_scorer(str(tmp_path), task, [])

    # A token classifier with 3 labels is not the 2-label Qwen format.
    three = tmp_path / "three"
    shutil.copytree(qwen[0], three)
    config = json.loads((three / "config.json").read_text())
    config["id2label"] = {"0": "a", "1": "b", "2": "c"}
    (three / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="a token classifier, but the classifier has 3 labels, not 2"):
        load_scorer(str(three), task, [])


def test_the_published_qwen_architecture_needs_trust_remote_code(task, tmp_path, qwen, monkeypatch):
    # The real Qwen2.5-Math-PRM is `Qwen2ForProcessRewardModel`, code in its own repository:
    # it must not run unless the user allowed it.
    monkeypatch.delenv("PONDER_TRUST_REMOTE_CODE", raising=False)
    remote = tmp_path / "remote"
    shutil.copytree(qwen[0], remote)
    config = json.loads((remote / "config.json").read_text())
    config["architectures"] = ["Qwen2ForProcessRewardModel"]
    (remote / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="is a Qwen2.5-Math-PRM whose architecture .* pass --trust-remote-code"):
        load_scorer(str(remote), task, [])


def test_ponder_reward_models_still_load_as_before(task, tmp_path, tiny_dir):
    from ponder.rewards.model import RewardModel, new_reward_model

    new_reward_model(tiny_dir, "prm").save(tmp_path)
    assert isinstance(load_scorer(str(tmp_path), task, []), RewardModel)


def test_rl_takes_a_published_prm(shepherd, tmp_path):
    """`ponder rl --prm` loads a published format too: process GRPO scores steps with it."""
    import json
    import os
    import subprocess
    import sys

    folder, _, _ = shepherd
    args = ["rl", "--model", "tiny:1m", "--task", "arith", "--task-arg", "instruction=false", "--estimator",
            "process_grpo", "--prm", str(folder), "--steps", "1", "--prompts-per-step", "2", "--group-size", "2",
            "--max-tokens", "8", "--n-train", "8", "--n-eval", "0", "--runs-dir", str(tmp_path)]
    res = subprocess.run([sys.executable, "-m", "ponder", *args], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert json.loads((tmp_path / "rl" / "summary.json").read_text())["rl_steps"] == 1
