"""TRL's conversational dataset formats for SFT and DPO: `messages` rows, message-list
prompt-completion and preference rows, rendered with the chat template; ids and labels
checked against expectations written by hand, bad rows named by file:line, and the real CLI."""
import json
import os
import subprocess
import sys

import pytest

from ponder.models import build_char_tokenizer, build_tiny_model
from ponder.models.load import encode_prompts
from ponder.train.dpo import collate_pairs, read_preferences, tokenize_preferences
from ponder.train.sft import IGNORE, read_prompt_completion, tokenize_pairs

CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")
# ChatML-like: an assistant turn ends with EOS, then a newline the model never writes.
EOS_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}"
                "{{ eos_token if m['role'] == 'assistant' else '' }}\n{% endfor %}"
                "{% if add_generation_prompt %}<assistant>{% endif %}")


def chat_tokenizer(template=CHAT_TEMPLATE):
    tok = build_char_tokenizer()
    tok.chat_template = template
    return tok


def msg(role, content):
    return {"role": role, "content": content}


def expected(tok, pieces):
    """(ids, labels) of hand-written (text, learnt) pieces, each tokenized on its own."""
    ids, labels = [], []
    for text, learnt in pieces:
        piece = tok(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if learnt else [IGNORE] * len(piece)
    return ids, labels


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_messages_row_learns_every_assistant_turn_and_masks_the_rest():
    tok = chat_tokenizer()
    row = {"messages": [msg("system", "Be brief."), msg("user", "1+1"), msg("assistant", "2"),
                        msg("user", "2*3"), msg("assistant", "6")]}
    [ex] = tokenize_pairs(tok, [row], max_len=128)
    ids, labels = expected(tok, [("<system>Be brief.\n<user>1+1\n<assistant>", False), ("2\n", True),
                                 ("<user>2*3\n<assistant>", False), ("6\n", True)])
    assert ex.input_ids == ids and ex.labels == labels
    assert tok.decode(ex.input_ids) == tok.apply_chat_template(row["messages"], tokenize=False)
    # the template's end of turn ("\n" here) is learnt; no EOS is appended
    assert tok.eos_token_id not in ex.input_ids


def test_conversational_prompt_completion_sft_row_learns_only_the_completion():
    tok = chat_tokenizer()
    row = {"prompt": [msg("user", "1+1"), msg("assistant", "2"), msg("user", "times 3")],
           "completion": [msg("assistant", "6")]}
    [ex] = tokenize_pairs(tok, [row], max_len=128)
    ids, labels = expected(tok, [("<user>1+1\n<assistant>2\n<user>times 3\n<assistant>", False), ("6\n", True)])
    assert ex.input_ids == ids and ex.labels == labels
    # a one-user-turn prompt gets exactly the ids an engine prompts the model with
    [ex] = tokenize_pairs(tok, [{"prompt": [msg("user", "1+1")], "completion": [msg("assistant", "2")]}], 128)
    prompt = encode_prompts(tok, ["1+1"])[0]
    assert ex.input_ids[:len(prompt)] == prompt and ex.labels[:len(prompt)] == [IGNORE] * len(prompt)


def test_learnt_tokens_end_at_the_templates_eos():
    tok = chat_tokenizer(EOS_TEMPLATE)
    row = {"messages": [msg("user", "1+1"), msg("assistant", "2"), msg("user", "2*3"), msg("assistant", "6")]}
    [ex] = tokenize_pairs(tok, [row], max_len=128)
    # "</s>" is the EOS token; the newline after it is context, never generated
    ids, labels = expected(tok, [("<user>1+1\n<assistant>", False), ("2</s>", True),
                                 ("\n<user>2*3\n<assistant>", False), ("6</s>", True), ("\n", False)])
    assert ex.input_ids == ids and ex.labels == labels
    [pair] = tokenize_preferences(tok, [{"prompt": [msg("user", "1+1")], "chosen": [msg("assistant", "2")],
                                         "rejected": [msg("assistant", "3")]}], 64)
    assert pair.chosen == tok("2", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def test_conversational_dpo_row_ids_and_completion_mask():
    tok = chat_tokenizer()
    row = {"prompt": [msg("system", "Be brief."), msg("user", "1+1")],
           "chosen": [msg("assistant", "2")], "rejected": [msg("assistant", "11")]}
    [pair] = tokenize_preferences(tok, [row], 64)  # append_eos is for string completions only

    def ids(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    assert pair.prompt == ids("<system>Be brief.\n<user>1+1\n<assistant>")
    assert pair.chosen == ids("2\n") and pair.rejected == ids("11\n")
    batch = collate_pairs([pair], tok.pad_token_id)
    n = len(pair.prompt)
    assert batch["input_ids"][0, :n + 2].tolist() == pair.prompt + pair.chosen
    assert batch["input_ids"][1].tolist() == pair.prompt + pair.rejected
    assert batch["completion_mask"].tolist() == [[0.0] * n + [1.0] * 2 + [0.0], [0.0] * n + [1.0] * 3]


def test_rows_read_from_files_keep_their_format_and_location(tmp_path):
    rows = [{"messages": [msg("user", "1+1"), msg("assistant", "2")]}]
    assert read_prompt_completion(write_rows(tmp_path / "sft.jsonl", rows)) == rows
    prefs = [{"prompt": [msg("user", "1+1")], "chosen": [msg("assistant", "2")], "rejected": [msg("assistant", "3")]}]
    assert read_preferences(write_rows(tmp_path / "prefs.jsonl", prefs)) == prefs
    [pair] = tokenize_preferences(chat_tokenizer(), read_preferences(tmp_path / "prefs.jsonl"), 64)
    assert pair.rejected == chat_tokenizer()("3\n", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("bad, error", [
    ({"messages": [msg("user", "1+1"), {"role": "assistant"}]},
     r"rows.jsonl:2: field 'messages': message 2: expected \{'role': 'system'\|'user'\|'assistant', 'content': str\}"),
    ({"messages": [msg("user", "1+1")]}, r"rows.jsonl:2: field 'messages': expected at least one assistant message"),
    ({"messages": [msg("tool", "1+1"), msg("assistant", "2")]}, r"rows.jsonl:2: field 'messages': message 1: expected"),
    ({"prompt": [msg("user", "1+1")], "completion": [msg("assistant", "2"), msg("assistant", "3")]},
     r"rows.jsonl:2: field 'prompt': a conversational prompt-completion row, but the file's first row "
     r"\(.*rows.jsonl:1\) is a messages row: expected one format in one file"),
    ({"prompt": "1+1", "completion": "2"}, r"rows.jsonl:2: field 'prompt': a prompt-completion row, but the file's "
                                           r"first row \(.*rows.jsonl:1\) is a messages row"),
])
def test_bad_messages_rows_are_named(tmp_path, bad, error):
    good = {"messages": [msg("user", "1+1"), msg("assistant", "2")]}
    with pytest.raises(ValueError, match=error):
        read_prompt_completion(write_rows(tmp_path / "rows.jsonl", [good, bad]))


@pytest.mark.parametrize("bad, error", [
    ({"prompt": [msg("user", "a")], "completion": [msg("user", "b")]},
     r"rows.jsonl:2: field 'completion': expected one assistant message \[\{'role': 'assistant', 'content': str\}\], "
     r"got \[\{'role': 'user', 'content': 'b'\}\]"),
    ({"prompt": [msg("user", "a")], "completion": [msg("assistant", "b"), msg("assistant", "c")]},
     r"rows.jsonl:2: field 'completion': expected one assistant message"),
    ({"prompt": [msg("user", "a")], "completion": msg("assistant", "b")},
     r"rows.jsonl:2: field 'completion': expected one assistant message"),
    ({"prompt": "a", "completion": [msg("assistant", "b")]},
     r"rows.jsonl:2: field 'prompt': expected a non-empty list of messages"),
])
def test_bad_conversational_prompt_completion_rows_are_named(tmp_path, bad, error):
    good = {"prompt": [msg("user", "1+1")], "completion": [msg("assistant", "2")]}
    with pytest.raises(ValueError, match=error):
        read_prompt_completion(write_rows(tmp_path / "rows.jsonl", [good, bad]))


def test_bad_conversational_preference_rows_are_named(tmp_path):
    good = {"prompt": [msg("user", "1+1")], "chosen": [msg("assistant", "2")], "rejected": [msg("assistant", "3")]}
    path = tmp_path / "prefs.jsonl"
    with pytest.raises(ValueError, match=r"prefs.jsonl:2: field 'rejected': expected one assistant message"):
        read_preferences(write_rows(path, [good, dict(good, rejected=[])]))
    with pytest.raises(ValueError, match=r"prefs.jsonl:2: field 'chosen': a string completion row, but the file's "
                                         r"first row \(.*prefs.jsonl:1\) is a conversational row"):
        read_preferences(write_rows(path, [good, {"prompt": "1+1", "chosen": "2", "rejected": "3"}]))


def test_a_model_without_chat_template_refuses_conversational_rows_by_file_and_line(tmp_path):
    tok = build_char_tokenizer()  # no chat template
    rows = [{"messages": [msg("user", "1+1"), msg("assistant", "2")]}] * 2
    with pytest.raises(ValueError, match=r"sft.jsonl:1: a conversational row \(messages\), but the model's "
                                         r"tokenizer has no chat template"):
        tokenize_pairs(tok, read_prompt_completion(write_rows(tmp_path / "sft.jsonl", rows)), 64)
    prefs = [{"prompt": [msg("user", "1+1")], "chosen": [msg("assistant", "2")], "rejected": [msg("assistant", "3")]}]
    with pytest.raises(ValueError, match=r"prefs.jsonl:1: .*no chat template"):
        tokenize_preferences(tok, read_preferences(write_rows(tmp_path / "prefs.jsonl", prefs)), 64)
    with pytest.raises(ValueError, match=r"data: row 1: .*no chat template"):  # rows built in memory
        tokenize_pairs(tok, rows, 64)


def test_a_template_that_rewrites_earlier_turns_is_refused():
    # drops the content of every assistant turn but the last, as reasoning templates drop past thoughts
    tok = chat_tokenizer("{% for m in messages %}<{{ m['role'] }}>"
                         "{{ m['content'] if m['role'] != 'assistant' or loop.last else '' }}\n{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    row = {"messages": [msg("user", "1+1"), msg("assistant", "2"), msg("user", "2*3"), msg("assistant", "6")]}
    with pytest.raises(ValueError, match=r"data: row 1: field 'messages': the model's chat template is not "
                                         r"prefix-stable.*assistant message 2 cannot be located"):
        tokenize_pairs(tok, [row], 128)
    # the last turn alone is still found: a prompt-completion row of the same conversation trains
    pc = {"prompt": row["messages"][:3], "completion": row["messages"][3:]}
    [ex] = tokenize_pairs(tok, [pc], 128)
    assert tok.decode([t for t in ex.labels if t != IGNORE]) == "6\n"


def _cli(tmp_path, rows, template):
    model_dir = tmp_path / ("chat-model" if template else "plain-model")
    tok = build_char_tokenizer()
    if template:
        tok.chat_template = template
    build_tiny_model(tok, "1m", seed=0).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    data = write_rows(tmp_path / "rows.jsonl", rows)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    args = ["sft", "--data", str(data), "--model", str(model_dir), "--steps", "2", "--batch-size", "2",
            "--runs-dir", str(tmp_path / "runs")]
    return subprocess.run([sys.executable, "-m", "ponder", *args], capture_output=True, text=True, env=env, timeout=600)


def test_cli_sft_trains_on_messages_rows(tmp_path):
    rows = [{"messages": [msg("system", "Be brief."), msg("user", f"{a}+{a}"), msg("assistant", str(2 * a)),
                          msg("user", "again"), msg("assistant", str(2 * a))]} for a in range(4)]
    res = _cli(tmp_path, rows, CHAT_TEMPLATE)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "runs" / "sft" / "model" / "config.json").is_file()
    assert json.loads((tmp_path / "runs" / "sft" / "summary.json").read_text())["examples"] == 4


def test_cli_sft_without_chat_template_fails_in_one_line(tmp_path):
    rows = [{"messages": [msg("user", "1+1"), msg("assistant", "2")]}]
    res = _cli(tmp_path, rows, None)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    assert f"{tmp_path / 'rows.jsonl'}:1: a conversational row (messages), but the model's tokenizer has no chat " \
           "template" in res.stdout
    assert len(res.stdout.strip().splitlines()) == 1
