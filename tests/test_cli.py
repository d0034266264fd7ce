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


def test_demo_pipeline_writes_run_and_caches_stages(tmp_path):
    cfg = tmp_path / "demo.yaml"
    cfg.write_text("model: tiny:1m\nn_train: 64\nsft_steps: 6\nbatch_size: 8\nwarmup_steps: 1\n"
                   "eval_n: 6\neval_k: 2\ndev_n: 4\nmax_tokens: 16\n")
    args = ["demo", "--config", str(cfg), "--run", "d", "--runs-dir", str(tmp_path)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    run = tmp_path / "d"
    summary = json.loads((run / "summary.json").read_text())
    stage_eval = json.loads((run / "stages" / "eval.json").read_text())
    assert summary["eval"] == stage_eval["summary"]
    records = [json.loads(l) for l in (run / "eval_records.jsonl").read_text().splitlines()]
    assert len(records) == 6
    assert summary["eval"]["greedy_accuracy"] == sum(r["greedy_correct"] for r in records) / 6
    assert "greedy accuracy" in (run / "report.md").read_text()
    assert (run / "sft_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    res = runner.invoke(app, args)  # a rerun skips every finished stage
    assert res.exit_code == 0
    assert res.output.count("cached") == 3
