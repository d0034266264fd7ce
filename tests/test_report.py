"""`ponder report RUN`: a self-contained HTML page for any run, from what it left on disk,
checked through the command line (and in headless Chromium when it is installed)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def ponder(*args, cwd=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "ponder", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=cwd)


def test_a_training_run_gets_a_report_with_its_curves_summary_and_config(tmp_path):
    res = ponder("sft", "--model", "tiny:1m", "--steps", "6", "--batch-size", "4", "--n-train", "32", "--task-arg",
                 "instruction=false", "--log-every", "1", "--runs-dir", str(tmp_path), "--run", "tiny")
    assert res.returncode == 0, res.stdout + res.stderr
    for _ in range(2):  # a rerun rewrites its own page
        res = ponder("report", "--run", "tiny", "--runs-dir", str(tmp_path))
        assert res.returncode == 0, res.stdout + res.stderr
    page = (tmp_path / "tiny" / "report.html").read_text()
    assert page.count('class="plot"') == 1 and "data:image/png;base64," in page
    summary = json.loads((tmp_path / "tiny" / "summary.json").read_text())
    assert f"{summary['loss']:.4g}" in page  # the summary's numbers
    assert "lr: 0.003" in page  # the config as saved
    md = (tmp_path / "tiny" / "report.md").read_text()
    assert "![training and evaluation curves (metrics.jsonl)](curves.png)" in md and (tmp_path / "tiny" / "curves.png").stat().st_size > 1000

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chrome'}", "--virtual-time-budget=5000", "--dump-dom"]
    dom = subprocess.run(flags + [(tmp_path / "tiny" / "report.html").resolve().as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    assert 'data-plots-rendered="1/1"' in dom


@pytest.mark.parametrize("make,said", [
    (lambda d: None, "no such run directory"),
    (lambda d: (d / "empty").mkdir(), "not a ponder run"),
    (lambda d: ((d / "empty").mkdir(), (d / "empty" / "report.html").write_text("<html>the demo's</html>")),
     "not overwritten"),
])
def test_a_missing_or_empty_run_is_one_line(tmp_path, make, said):
    make(tmp_path)
    res = ponder("report", "--run", "empty", "--runs-dir", str(tmp_path))
    assert res.returncode == 2 and said in " ".join(res.stdout.split()), res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    if (tmp_path / "empty" / "report.html").exists():
        assert (tmp_path / "empty" / "report.html").read_text() == "<html>the demo's</html>"


def test_a_torn_last_line_is_skipped(tmp_path):
    from ponder.pipeline.run_report import read_metrics, series

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5, "eval/accuracy": 0.25}\n{"step": 3, "lo')
    rows = read_metrics(path)
    assert [r["step"] for r in rows] == [1, 2]
    assert series(rows) == {"loss": ([1, 2], [2.0, 1.5]), "eval/accuracy": ([2], [0.25])}


@pytest.fixture(scope="module")
def runs_of_every_kind(tmp_path_factory):
    """One tiny run of each command that leaves something to report on: sft, rl, train-rm, dpo,
    scale, and the --output files of search, eval and eval-rm."""
    from typer.testing import CliRunner

    from ponder.cli import app

    d = tmp_path_factory.mktemp("kinds")
    runs = d / "runs"
    (d / "steps.jsonl").write_text("".join(json.dumps(
        {"prompt": f"{a}+1", "completions": [f"{a}+1={a + 1}", f"Answer: {a + 1}"], "labels": [a % 2 == 0, True]}) + "\n"
        for a in range(8)))
    (d / "prefs.jsonl").write_text("".join(json.dumps({"prompt": f"{a}+1", "chosen": f"{a + 1}", "rejected": f"{a + 2}"})
                                           + "\n" for a in range(8)))
    policy = str(runs / "sft" / "model")
    at = ["--runs-dir", str(runs)]
    commands = [
        ["sft", "--model", "tiny:1m", "--steps", "4", "--batch-size", "4", "--n-train", "32", "--log-every", "1",
         "--task-arg", "instruction=false", "--run", "sft"],
        ["rl", "--model", policy, "--task", "arith", "--steps", "2", "--prompts-per-step", "2", "--group-size", "2",
         "--max-tokens", "4", "--n-train", "4", "--n-eval", "2", "--eval-every", "1", "--rewards", "outcome,format",
         "--run", "rl"],
        ["train-rm", "--data", str(d / "steps.jsonl"), "--model", policy, "--steps", "3", "--batch-size", "2",
         "--log-every", "1", "--run", "rm"],
        ["dpo", "--data", str(d / "prefs.jsonl"), "--model", policy, "--steps", "3", "--batch-size", "2", "--n-eval",
         "2", "--max-tokens", "4", "--log-every", "1", "--run", "dpo"],
        ["scale", "--model", policy, "--strategies", "greedy,majority", "--budgets", "1,2", "--n-problems", "3",
         "--max-tokens", "8", "--run", "scale"],
    ]
    outputs = [
        ["search", "--model", policy, "--strategy", "majority", "--n", "2", "--n-problems", "3", "--max-tokens", "8",
         "--output", str(d / "search.json")],
        ["eval", "--model", policy, "--n", "3", "--k", "2", "--max-tokens", "8", "--output", str(d / "eval.json")],
        ["eval-rm", "--rm", "verifier", "--policy", policy, "--n", "3", "--samples", "4", "--max-tokens", "8",
         "--output", str(d / "evalrm.json")],
    ]
    for args in [c + at for c in commands] + outputs:
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, (args[0], res.output)
    return d


def report(*args, cwd):
    from typer.testing import CliRunner

    from ponder.cli import app

    old = os.getcwd()
    os.chdir(cwd)  # RUN names resolve under --runs-dir (default runs/), paths from here
    try:
        res = CliRunner().invoke(app, ["report", *map(str, args)])
    finally:
        os.chdir(old)
    assert res.exit_code == 0, res.output
    return json.loads(res.output)["report"]


@pytest.mark.parametrize("target,page,title,shows", [
    ("sft", "runs/sft/report.html", "ponder SFT run: sft", ["<td>token_acc</td>", "lr: 0.003"]),
    ("rl", "runs/rl/report.html", "ponder RL run: rl", ["<h2>Evaluations</h2>", "step 0: the model before training",
                                                         "reward_weights"]),
    ("runs/rm", "runs/rm/report.html", "ponder reward-model training run: rm", ["label_acc", "kind: prm"]),
    ("dpo", "runs/dpo/report.html", "ponder DPO run: dpo", ["pair_accuracy", "initial_eval/accuracy", "beta: 0.1"]),
    ("scale", "runs/scale/report.html", "ponder scaling sweep: scale", ["Compute-optimal strategy per difficulty",
                                                                        "<td>majority</td><td>2</td>"]),
    ("search.json", "search.html", "ponder search: search.json", ["<h2>Problems</h2>", "arith-test-0"]),
    ("eval.json", "eval.html", "ponder eval: eval.json", ["greedy_accuracy", "arith-test-0"]),
    ("evalrm.json", "evalrm.html", "ponder eval-rm: evalrm.json", ["verifier (best-of-N)", "oracle (pass@N)"]),
])
def test_every_kind_of_run_gets_its_page(runs_of_every_kind, target, page, title, shows):
    d = runs_of_every_kind
    assert Path(report(target, cwd=d)) == Path(page)
    text = (d / page).read_text()
    assert f"<h1>{title}</h1>" in text
    for s in shows:
        assert s in text, s
    plots = text.count('class="plot"')
    assert plots == (0 if target in ("search.json", "eval.json") else 1)
    assert (d / page).with_suffix(".md").read_text().startswith(f"# {title}")


def test_report_pages_render_in_headless_chromium(runs_of_every_kind, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Chromium is not installed (Debian package 'chromium'; `make setup` installs it when it can)")
    d = runs_of_every_kind
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--virtual-time-budget=5000", "--dump-dom"]
    for i, target in enumerate(["rl", "dpo", "scale", "evalrm.json"]):
        page = Path(report(target, cwd=d))
        dom = subprocess.run(flags + [f"--user-data-dir={tmp_path / str(i)}", (d / page).resolve().as_uri()],
                             capture_output=True, text=True, timeout=120).stdout
        assert 'data-plots-rendered="1/1"' in dom, target  # set by the page once its plot decoded


def test_report_names_what_it_could_not_find(tmp_path):
    res = ponder("report", "nope", "--runs-dir", str(tmp_path), cwd=tmp_path)
    assert res.returncode == 2 and "nope: no run of that name in" in " ".join(res.stdout.split())
    (tmp_path / "other.json").write_text('{"a": 1}')
    res = ponder("report", "other.json", cwd=tmp_path)
    assert res.returncode == 2 and "not a result file of ponder eval, search or eval-rm" in " ".join(res.stdout.split())
