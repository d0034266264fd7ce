"""A new user's mistakes, tried through the real command line: each is refused with one line
that names the option, file or line at fault (exit code 2, no traceback), and none of them
writes or overwrites a run directory."""
import errno
import json

import pytest
from typer.testing import CliRunner

from ponder.cli import app, user_error_message

runner = CliRunner()


def said(res) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(res.output.split())


def refused(args: list[str], *fragments: str) -> str:
    res = runner.invoke(app, args)
    text = said(res)
    assert res.exit_code == 2, text
    assert "Traceback" not in res.output, text
    assert res.exception is None or isinstance(res.exception, SystemExit), text
    for f in fragments:
        assert f in text, text
    return text


@pytest.mark.parametrize("args,flag", [
    (["sft", "--batch-size", "0"], "--batch-size"),
    (["sft", "--n-train", "0"], "--n-train"),
    (["rl", "--steps", "0"], "--steps"),
    (["annotate", "--n-problems", "0", "--policy", "x"], "--n-problems"),
    (["scale", "--model", "x", "--budgets", "2,abc"], "--budgets"),
])
def test_bad_numbers_name_their_flag(tmp_path, args, flag):
    refused(args + ["--runs-dir", str(tmp_path)], flag)
    assert not any(tmp_path.iterdir()), "a refused command must not leave a run directory"


def test_bad_task_knobs(tmp_path):
    refused(["sft", "--task-arg", "foo=1", "--runs-dir", str(tmp_path)], "task 'arith' has no knob 'foo'", "num_ops")
    refused(["sft", "--task-arg", "instruction=maybe", "--runs-dir", str(tmp_path)],
            "knob 'instruction' must be true or false, got 'maybe'")
    assert not any(tmp_path.iterdir())


def test_bad_files(tmp_path):
    runs = tmp_path / "runs"
    refused(["sft", "--data", str(tmp_path), "--runs-dir", str(runs)], "is a directory; expected a file")
    refused(["sft", "--config", str(tmp_path)], "is a directory")
    gsm8k_row = tmp_path / "g.jsonl"
    gsm8k_row.write_text(json.dumps({"question": "2+2?", "answer": "2+2=4\n#### 4"}) + "\n")
    refused(["sft", "--data", str(gsm8k_row), "--runs-dir", str(runs)],
            f"{gsm8k_row}:1: field 'prompt'", "looks like a task dataset", f"--task {gsm8k_row}")
    assert not runs.exists()


def test_reward_functions_that_misbehave(tmp_path, tiny_dir):
    base = ["rl", "--model", str(tiny_dir), "--runs-dir", str(tmp_path / "runs"), "--steps", "1", "--n-eval", "0",
            "--prompts-per-step", "2", "--group-size", "2", "--max-tokens", "4", "--n-train", "4"]
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_module_here\n")
    refused(base + ["--reward", f"{broken}:r"], f"reward function file {broken} failed to import",
            "No module named 'no_such_module_here'")
    syntax = tmp_path / "syntax.py"
    syntax.write_text("def r(completions, **kw):\n    return [1.0 for c in completions\n")
    refused(base + ["--reward", f"{syntax}:r"], str(syntax), "line")
    infinite = tmp_path / "infinite.py"
    infinite.write_text("def r(completions, **kw):\n    return [float('inf')] * len(completions)\n")
    refused(base + ["--reward", f"{infinite}:r"], "reward function 'r'", "inf")


def test_os_errors_become_one_line():
    full = OSError(errno.ENOSPC, "No space left on device", "runs/x/checkpoint.tmp/model.safetensors")
    msg = user_error_message(full)
    assert "disk is full" in msg and "runs/x/checkpoint.tmp" in msg and "resumes" in msg
    msg = user_error_message(PermissionError(errno.EACCES, "Permission denied", "runs/x/config.yaml"))
    assert "permission denied" in msg and "runs/x/config.yaml" in msg
    torch_full = RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 123 vs 456")
    assert "disk is probably full" in user_error_message(torch_full)
    assert user_error_message(KeyError("a bug keeps its traceback")) is None


def test_resume_with_other_options_is_refused(tmp_path, tiny_dir):
    runs = tmp_path / "runs"
    sft = ["sft", "--model", "tiny:1m", "--steps", "1", "--batch-size", "2", "--n-train", "4", "--warmup-steps", "0",
           "--runs-dir", str(runs), "--run", "s", "--task-arg", "instruction=false"]
    assert runner.invoke(app, sft).exit_code == 0
    config = (runs / "s" / "config.yaml").read_text()
    refused(sft[:-2] + ["--task", "countdown"], "holds a `ponder sft` run started with other options", "task:")
    refused([*sft, "--lr", "0.01"], "lr: 0.003 there, 0.01 now")
    refused([*sft, "--data", str(tmp_path / "missing.jsonl")])  # bad input: the run is left alone
    assert (runs / "s" / "config.yaml").read_text() == config

    steps = tmp_path / "steps.jsonl"
    steps.write_text(json.dumps({"prompt": "1+1\n", "completions": ["1+1=2", "Answer: 2"], "labels": [1.0, 1.0]})
                     + "\n")
    rm = ["train-rm", "--data", str(steps), "--model", str(tiny_dir), "--steps", "1", "--batch-size", "1",
          "--runs-dir", str(runs), "--run", "rm"]
    assert runner.invoke(app, [*rm, "--kind", "prm"]).exit_code == 0
    refused([*rm, "--kind", "prm", "--steps", "2"], "steps: 1 there, 2 now")
