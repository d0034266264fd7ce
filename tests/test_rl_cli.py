"""Smoke runs of `ponder rl`, `ponder dpo` and `ponder iterate` with tiny budgets on a tiny
model built here; each asserts what the command wrote."""
import json

import pytest
from typer.testing import CliRunner

from ponder.cli import app

runner = CliRunner()


def test_help():
    for cmd in (["rl"], ["dpo"], ["iterate"]):
        res = runner.invoke(app, cmd + ["--help"])
        assert res.exit_code == 0 and "Usage" in res.output


def test_rl_cli_runs_and_resumes(tmp_path, tiny_dir):
    rewards = tmp_path / "my_rewards.py"
    rewards.write_text("def short(prompts, completions, **kw):\n    return [-len(c) / 16 for c in completions]\n")
    cfg = tmp_path / "rl.yaml"
    cfg.write_text(f"model: {tiny_dir}\ntask_args: {{instruction: false}}\nsteps: 2\nprompts_per_step: 2\n"
                   f"group_size: 2\nmax_tokens: 8\nn_train: 8\nn_eval: 2\nsave_every: 1\nruns_dir: {tmp_path}\n"
                   "reward_weights: {short: 0.5}\n")
    args = ["rl", "-c", str(cfg), "--run", "r", "--reward", "outcome", "--reward", f"{rewards}:short"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    run = tmp_path / "r"
    recs = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if "reward" in r]
    assert [r["step"] for r in train] == [1, 2]
    assert train[0]["reward"] == pytest.approx(train[0]["reward/outcome"] + 0.5 * train[0]["reward/short"])
    assert (run / "model" / "config.json").exists() and json.loads((run / "summary.json").read_text())["rl_steps"] == 2
    res = runner.invoke(app, args + ["--steps", "3"])  # picks up at step 2
    assert res.exit_code == 0, res.output
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines() if "reward" in l]
    assert steps == [1, 2, 3]
    first = json.loads((run / "initial_eval.json").read_text())["accuracy"]
    assert json.loads((run / "summary.json").read_text())["initial_eval/accuracy"] == first  # kept across the resume


def test_rl_cli_errors_are_clear(tmp_path, tiny_dir):
    base = ["rl", "--model", str(tiny_dir), "--runs-dir", str(tmp_path), "--steps", "1", "--n-eval", "0"]
    res = runner.invoke(app, base + ["--estimator", "ppo2"])
    assert res.exit_code == 2 and "unknown estimator 'ppo2'" in res.output
    res = runner.invoke(app, base + ["--reward", "nosuch"])
    assert res.exit_code == 2 and "unknown reward 'nosuch'" in res.output
    assert not (tmp_path / "rl").exists()  # refused before the run directory was written
    res = runner.invoke(app, base + ["--prm", str(tmp_path / "no_prm"), "--estimator", "process_grpo"])
    assert res.exit_code == 2 and "prm" in res.output.lower()
    bad = tmp_path / "bad.py"
    bad.write_text("def one(prompts, completions, **kw):\n    return [1.0]\n")
    res = runner.invoke(app, base + ["--reward", f"{bad}:one", "--max-tokens", "4"])
    assert res.exit_code == 2 and "reward function 'one' returned 1 rewards for 64 completions" in res.output


def test_dpo_cli_preference_file_and_step_pairs(tmp_path, tiny_dir):
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text("".join(json.dumps({"prompt": f"{a}+1\n", "chosen": f"Answer: {a + 1}", "rejected": f"Answer: {a}"})
                             + "\n" for a in range(6)))
    res = runner.invoke(app, ["dpo", "--model", str(tiny_dir), "--data", str(prefs), "--steps", "3", "--batch-size", "2",
                              "--n-eval", "0", "--runs-dir", str(tmp_path), "--run", "d"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(l) for l in (tmp_path / "d" / "metrics.jsonl").read_text().splitlines()]
    assert recs[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # log 2: the policy starts equal to the reference
    assert (tmp_path / "d" / "model" / "config.json").exists()

    cfg = tmp_path / "step.yaml"
    cfg.write_text("task_args: {instruction: false}\nn_problems: 4\nsamples: 2\nmax_tokens: 12\n")
    res = runner.invoke(app, ["dpo", "-c", str(cfg), "--model", str(tiny_dir), "--steps", "2", "--batch-size", "2",
                              "--n-eval", "2", "--runs-dir", str(tmp_path), "--run", "s"])
    assert res.exit_code == 0, res.output
    pairs = [json.loads(l) for l in (tmp_path / "s" / "pairs.jsonl").read_text().splitlines()]
    assert pairs and all(p["chosen"] != p["rejected"] and p["chosen"].endswith("\n") for p in pairs)
    assert json.loads((tmp_path / "s" / "summary.json").read_text())["step_dpo"] is True


def test_iterate_cli_rounds_and_resume(tmp_path, tiny_dir, monkeypatch):
    from ponder.tasks.arith import Arith

    # A random model never solves arith; call every even-length sample correct to drive the loop.
    monkeypatch.setattr(Arith, "is_correct", lambda self, p, text: len(text) % 2 == 0)
    args = ["iterate", "--model", str(tiny_dir), "--rounds", "2", "--n-problems", "4", "--samples", "2",
            "--sft-steps", "2", "--n-eval", "2", "--runs-dir", str(tmp_path), "--run", "i",
            "--task-arg", "instruction=false"]
    cfg = tmp_path / "it.yaml"
    cfg.write_text("max_tokens: 10\nbatch_size: 4\n")
    res = runner.invoke(app, args + ["-c", str(cfg)])
    assert res.exit_code == 0, res.output
    rounds = [json.loads(l) for l in (tmp_path / "i" / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    data = [json.loads(l) for l in (tmp_path / "i" / "round_1" / "data.jsonl").read_text().splitlines()]
    assert rounds[1]["kept"] == len(data) > 0 and all(len(d["completion"]) % 2 == 0 for d in data)
    res = runner.invoke(app, args + ["-c", str(cfg)])  # finished rounds are skipped
    assert res.exit_code == 0
    assert len((tmp_path / "i" / "rounds.jsonl").read_text().splitlines()) == 3
