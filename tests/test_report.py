"""`ponder report RUN`: a self-contained HTML page for any run, from what it left on disk,
checked through the command line (and in headless Chromium when it is installed)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

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
