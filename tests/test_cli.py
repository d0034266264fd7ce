"""Smoke runs of the real CLI with tiny budgets; each asserts what the command produced."""
import json

from typer.testing import CliRunner

from ponder.cli import app

runner = CliRunner()


def test_help_everywhere():
    for cmd in ([], ["tasks"], ["sft"], ["eval"], ["generate"], ["demo"], ["annotate"], ["train-rm"], ["eval-rm"]):
        res = runner.invoke(app, cmd + ["--help"])
        assert res.exit_code == 0, res.output
        assert "Usage" in res.output


def test_tasks_lists_registry():
    res = runner.invoke(app, ["tasks"])
    assert res.exit_code == 0, res.output
    for name in ("arith", "countdown", "gsm8k"):
        assert name in res.output


def test_sft_then_eval_then_generate(tmp_path):
    cfg = tmp_path / "sft.yaml"
    cfg.write_text("model: tiny:1m\nsteps: 4\nbatch_size: 4\nn_train: 32\nwarmup_steps: 1\n")
    runs = tmp_path / "runs"
    cfg.write_text(cfg.read_text() + f"runs_dir: {runs}\n")
    res = runner.invoke(app, ["sft", "--config", str(cfg), "--run", "t", "--steps", "3"])
    assert res.exit_code == 0, res.output
    model_dir = runs / "t" / "model"
    assert (model_dir / "config.json").exists() and (runs / "t" / "config.yaml").exists()
    records = [json.loads(l) for l in (runs / "t" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 3  # the flag overrode the YAML's 4 steps

    out = tmp_path / "eval.json"
    res = runner.invoke(app, ["eval", "--model", str(model_dir), "--task", "arith", "--n", "4", "--k", "2",
                              "--max-tokens", "8", "--output", str(out)])
    assert res.exit_code == 0, res.output
    summary = json.loads(out.read_text())["summary"]
    assert summary["problems"] == 4 and 0.0 <= summary["greedy_accuracy"] <= 1.0
    assert summary["generated_tokens"] <= 4 * 8 + 4 * 2 * 8

    res = runner.invoke(app, ["generate", "--model", str(model_dir), "--prompt", "Compute 2+3.", "--max-tokens", "5"])
    assert res.exit_code == 0, res.output
    assert "generated tokens" in res.output


def test_bad_inputs_fail_clearly(tmp_path):
    res = runner.invoke(app, ["eval", "--model", str(tmp_path / "missing"), "--n", "2"])
    assert res.exit_code == 2 and "not found" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("stepz: 3\n")
    res = runner.invoke(app, ["sft", "--config", str(bad)])
    assert res.exit_code == 2 and "unknown option 'stepz'" in res.output
    res = runner.invoke(app, ["eval", "--model", str(tmp_path), "--task", "nosuchtask"])
    assert res.exit_code == 2 and "unknown task 'nosuchtask'" in res.output


def test_train_rm_and_eval_rm(tmp_path):
    from ponder.models import model_from_spec
    from ponder.tasks import get_task

    policy = tmp_path / "policy"
    model, tok = model_from_spec("tiny:1m", seed=0)
    model.save_pretrained(policy)
    tok.save_pretrained(policy)
    task = get_task("arith", instruction=False)
    rows = []
    for p in task.problems("train", n=16, seed=0):
        steps = task.split_steps(task.reference(p))
        rows.append({"prompt": task.prompt(p), "completions": steps, "labels": [1.0] * len(steps)})
        rows.append({"prompt": task.prompt(p), "completions": ["0"] + steps[1:], "labels": [0.0] * len(steps)})
    data = tmp_path / "steps.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = tmp_path / "runs"
    res = runner.invoke(app, ["train-rm", "--kind", "prm", "--data", str(data), "--model", str(policy), "--steps", "3",
                              "--batch-size", "4", "--run", "prm", "--runs-dir", str(runs)])
    assert res.exit_code == 0, res.output
    prm = runs / "prm" / "model"
    assert json.loads((prm / "reward_config.json").read_text())["kind"] == "prm"
    out = tmp_path / "eval-rm.json"
    res = runner.invoke(app, ["eval-rm", "--rm", str(prm), "--rm", "verifier", "--policy", str(policy), "--n", "3",
                              "--samples", "2", "--max-tokens", "8", "--task-arg", "instruction=false",
                              "--output", str(out)])
    assert res.exit_code == 0, res.output
    result = json.loads(out.read_text())
    assert set(result["models"]) == {str(prm), "verifier"}
    # the exact checker picks a correct sample whenever one exists: best-of-N equals the oracle
    assert result["models"]["verifier"]["best_of_n"] == result["oracle"]
    assert 0.0 <= result["models"][str(prm)]["processbench"]["f1"] <= 1.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "1\n", "completions": ["1", "2"], "labels": [1.0]}) + "\n")
    res = runner.invoke(app, ["train-rm", "--data", str(bad), "--model", str(policy), "--runs-dir", str(runs)])
    assert res.exit_code == 2 and "bad.jsonl:1" in res.output and "expected 2 labels" in res.output


def test_commands_take_the_task_the_model_was_trained_on(tmp_path):
    """Without --task, a command asks the model the questions of the task its ponder run trained
    it on (knobs given here on top), not arith's; --task still wins; a folder no run wrote: arith."""
    runs = tmp_path / "runs"
    res = runner.invoke(app, ["sft", "--model", "tiny:1m", "--task", "countdown", "--task-arg", "count=3",
                              "--task-arg", "instruction=false", "--steps", "2", "--batch-size", "4", "--n-train", "16",
                              "--warmup-steps", "1", "--runs-dir", str(runs), "--run", "cd"])
    assert res.exit_code == 0, res.output

    def questions(*options):
        out = tmp_path / "eval.json"
        res = runner.invoke(app, ["eval", *options, "--n", "3", "--k", "0", "--max-tokens", "4", "--output", str(out)])
        assert res.exit_code == 0, res.output
        return res.output, [(r["id"], r["answer"]) for r in json.loads(out.read_text())["records"]]

    output, qs = questions("--model", str(runs / "cd"), "--task-arg", "max_target=20")
    assert f"task: countdown (count=3, instruction=False, max_target=20), as the model was trained (from " \
           f"{runs / 'cd' / 'config.yaml'})" in output.replace("\n", "")
    assert all(i.startswith("countdown-test-") and int(a) <= 20 for i, a in qs), qs
    output, qs = questions("--model", str(runs / "cd"), "--task", "arith")
    assert "as the model was trained" not in output and all(i.startswith("arith-test-") for i, _ in qs), qs

    (runs / "cd" / "config.yaml").unlink()
    output, qs = questions("--model", str(runs / "cd"))
    assert "as the model was trained" not in output and all(i.startswith("arith-test-") for i, _ in qs), qs
