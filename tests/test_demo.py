"""`ponder demo --quick`: the whole pipeline on small budgets; the report's numbers must be
the stage outputs' numbers, a rerun must skip every stage, and the HTML must render its
plots in headless Chromium."""
import json
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from ponder.cli import app

STAGES = ["build", "sft", "eval_sft", "annotate", "prm", "rl", "eval_rl", "scale", "equal_compute"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    args = ["demo", "--quick", "--run", "q", "--runs-dir", str(runs)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    return runs / "q", args


def test_quick_demo_report_matches_stage_outputs(quick_run):
    run, _ = quick_run
    summary = json.loads((run / "summary.json").read_text())
    stage = {name: json.loads((run / "stages" / f"{name}.json").read_text()) for name in STAGES}
    assert summary["eval"]["sft"] == stage["eval_sft"]["summary"]
    assert summary["eval"]["rl"] == stage["eval_rl"]["summary"]
    records = [json.loads(l) for l in (run / "eval_rl_records.jsonl").read_text().splitlines()]
    assert summary["eval"]["rl"]["greedy_accuracy"] == sum(r["greedy_correct"] for r in records) / len(records)
    # right with every line passing the exact step checker: a subset of the right answers
    assert all(r["greedy_correct"] or not r["greedy_valid"] for r in records)
    assert summary["eval"]["rl"]["greedy_valid_accuracy"] == sum(r["greedy_valid"] for r in records) / len(records)
    valid = summary["comparisons"]["rl_vs_sft_valid"]
    assert valid["difference"] == pytest.approx(summary["eval"]["rl"]["greedy_valid_accuracy"]
                                                - summary["eval"]["sft"]["greedy_valid_accuracy"])
    assert summary["annotation"]["methods"] == stage["annotate"]["summary"]["methods"]
    assert summary["prm"]["processbench"] == stage["prm"]["processbench"]
    assert summary["scale"]["rl"] == stage["scale"]["rows"]["rl"]
    # the one search-vs-majority comparison fixed in the config, recomputed from the records
    fixed = summary["comparisons"]["search_vs_majority"]["rl"]
    assert (fixed["strategy"], fixed["budget"]) == ("beam", 4)
    scale_records = [json.loads(l) for l in (run / "scale_rl_records.jsonl").read_text().splitlines()]
    beam = [r["correct"] for r in scale_records if r["strategy"] == "beam" and r["budget"] == 4]
    assert fixed["accuracy"] == sum(beam) / len(beam) and fixed["n"] == len(beam) == 6
    # the equal-compute claim: best_of_n with the rollout verifier at the largest N whose total
    # tokens fit majority@4's, recomputed from both searches' records
    equal = summary["comparisons"]["search_vs_majority_equal_compute"]["rl"]
    guided = [json.loads(l) for l in (run / "equal_compute_rl_records.jsonl").read_text().splitlines()]
    total = lambda r: r["generated_tokens"] + r["prefill_tokens"] + r["scorer_tokens"]  # noqa: E731
    majority = [r for r in scale_records if r["strategy"] == "majority" and r["budget"] == 4]
    assert equal["majority_total_tokens"] == pytest.approx(sum(map(total, majority)) / len(majority))
    chosen = [r for r in guided if r["budget"] == equal["budget"]]
    assert equal["accuracy"] == sum(r["correct"] for r in chosen) / len(chosen) and equal["n"] == 6
    assert equal["total_tokens"] == pytest.approx(sum(map(total, chosen)) / len(chosen))
    assert all(r["scorer_tokens"] > 0 for r in guided)  # the rollouts are charged
    assert equal["fits"] == (equal["total_tokens"] <= equal["majority_total_tokens"])
    if equal["fits"]:  # the largest N that fits: any larger N tried overspent
        assert all(row["total_tokens"] > equal["majority_total_tokens"]
                   for row in summary["equal_compute"]["rl"] if row["budget"] > equal["budget"])
    assert summary["comparisons"]["rl_minus_sft_greedy"] == pytest.approx(
        stage["eval_rl"]["summary"]["greedy_accuracy"] - stage["eval_sft"]["summary"]["greedy_accuracy"])
    assert set(summary["wall_s"]) == set(STAGES)
    md = (run / "report.md").read_text()
    pb = summary["prm"]["processbench"]
    assert f"ProcessBench F1 {pb['f1']:.3f} ± {pb['f1_se']:.3f}" in md  # the finding states its interval
    assert f"| greedy_accuracy | {summary['eval']['sft']['greedy_accuracy']:.3f} |" in md
    assert "## Config" in md and "scaling.png" in md
    assert f"every line valid under the exact step checker: {summary['eval']['sft']['greedy_valid_accuracy']:.3f}" in md
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "ponder demo" in html
    for png in ("scaling.png", "training.png"):
        assert (run / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_commands_after_the_demo_take_its_task(quick_run):
    """`ponder search` and the rest default to the demo's SFT model: without --task they must ask
    it the demo's questions (countdown with the demo's knobs), not arith's."""
    from ponder.commands.common import model_task
    from ponder.pipeline.config import DemoConfig

    run, _ = quick_run
    task, knobs, where = model_task(str(run / "sft" / "model"))
    assert (task, knobs, where) == ("countdown", DemoConfig().task_args, run / "config.yaml")
    assert model_task(str(run))[:2] == (task, knobs)  # the run name resolves to its SFT model


def test_quick_demo_rerun_skips_every_stage(quick_run):
    run, args = quick_run
    before = (run / "summary.json").read_text()
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert res.output.count("cached") == len(STAGES)
    after = json.loads((run / "summary.json").read_text())
    assert after["eval"] == json.loads(before)["eval"]


def test_report_renders_in_headless_chromium(quick_run, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package 'chromium'; `make setup` installs it when it can)")
    run, _ = quick_run
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    url = (run / "report.html").resolve().as_uri()
    dom = subprocess.run(flags + [f"--user-data-dir={tmp_path / 'a'}", "--virtual-time-budget=5000", "--dump-dom",
                                  url], capture_output=True, text=True, timeout=120).stdout
    assert 'data-plots-rendered="2/2"' in dom  # set by the page once both images decoded
    shot = tmp_path / "report.png"
    subprocess.run(flags + [f"--user-data-dir={tmp_path / 'b'}", "--window-size=1200,1600", f"--screenshot={shot}",
                            url], capture_output=True, timeout=120)
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] == 1600 and pixels.shape[1] == 1200
    # the plots put colour on the page: far more than black text on white would
    colourful = (abs(pixels[..., 0] - pixels[..., 2]) > 0.2).mean()
    assert colourful > 0.0002  # text and tables alone are grey: 0


def test_changed_config_needs_a_new_run_or_force(quick_run):
    run, args = quick_run
    res = CliRunner().invoke(app, args + ["--sft-steps", "7"])
    assert res.exit_code == 2
    out = " ".join(res.output.split())  # the console wraps long lines
    assert "holds a `ponder demo` run started with other options (sft_steps: 150 there, 7 now)" in out
    assert "add --force to start over" in out
    assert (run / "stages" / "rl.json").exists()  # nothing was touched


def test_paired_difference_by_hand():
    from ponder.pipeline.claims import paired_difference

    # differences 1, 0, 0, -1, 1: mean 0.2, sample variance 0.7, se sqrt(0.7 / 5)
    out = paired_difference([True, True, False, False, True], [False, True, False, True, False])
    assert out["difference"] == pytest.approx(0.2) and out["se"] == pytest.approx((0.7 / 5) ** 0.5)
    assert out["n"] == 5 and out["beyond_2se"] is False


def test_process_rewards_need_a_step_checker(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--quick", "--task", "add_words", "--task-arg", "digits=1",
                                   "--rl-estimator", "process_grpo", "--runs-dir", str(tmp_path)])
    assert res.exit_code != 0 and "has none" in res.output and "Traceback" not in res.output
    assert not any(tmp_path.iterdir())  # refused before the run dir is written
    res = CliRunner().invoke(app, ["demo", "--quick", "--rl-estimator", "ppo", "--runs-dir", str(tmp_path)])
    assert res.exit_code != 0 and "rl_estimator" in res.output.replace("-", "_")
