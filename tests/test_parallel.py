"""Ray sharding on a local 2-CPU Ray: the same records with 1 worker or 2, and a worker killed
with SIGKILL mid-run has its shard retried with nothing lost or duplicated.

The commands run through the real command line in this process, on one local Ray started
for the module (as `ponder` starts it: `ray.init(num_cpus=2)`), whose worker processes are
real and really killed. The model is a random tiny policy, whose samples are as good as any
for comparing records."""
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

from typer.testing import CliRunner  # noqa: E402

from ponder.cli import app  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    import ray

    from ponder.parallel import _init_ray

    os.environ.pop("RAY_ADDRESS", None)
    _init_ray(2, None)
    yield
    ray.shutdown()


@pytest.fixture
def policy(tiny_dir) -> Path:
    return tiny_dir


class Result:
    def __init__(self, res):
        self.returncode, self.output = res.exit_code, " ".join(res.output.split())


def ponder(*args: str, check: bool = True) -> Result:
    res = Result(CliRunner().invoke(app, list(args)))
    if check:
        assert res.returncode == 0, res.output[-3000:]
    return res


def test_eval_and_search_write_the_same_records_with_one_or_two_workers(policy, tmp_path):
    common = ["--model", str(policy), "--task-arg", "instruction=false", "--n", "12", "--k", "4",
              "--max-tokens", "10", "--chunk", "4"]
    ponder("eval", *common, "--output", str(tmp_path / "one.json"))
    ponder("eval", *common, "--output", str(tmp_path / "two.json"), "--workers", "2")
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert one["records"] == two["records"] and len(one["records"]) == 12
    assert one["summary"] == two["summary"]
    assert any(r["num_correct"] < 4 for r in one["records"])  # real samples, not a constant

    common = ["--model", str(policy), "--task-arg", "instruction=false", "--n-problems", "6", "--strategy",
              "beam", "--n", "4", "--beam-width", "2", "--max-step-tokens", "6", "--max-steps", "2"]
    ponder("search", *common, "--output", str(tmp_path / "s1.json"))
    ponder("search", *common, "--output", str(tmp_path / "s2.json"), "--workers", "2")
    s1, s2 = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("s1", "s2"))
    strip = lambda recs: [{**r, "compute": {k: v for k, v in r["compute"].items() if k != "wall_s"}}  # noqa: E731
                          for r in recs]
    assert strip(s1["records"]) == strip(s2["records"])
    assert s1["summary"]["generated_tokens"] == s2["summary"]["generated_tokens"] > 0


def _annotate(runs: Path, run: str, policy: Path, *extra: str) -> list[str]:
    return ["annotate", "--run", run, "--runs-dir", str(runs), "--policy", str(policy), "--n-problems", "12",
            "--samples", "2", "--k", "2", "--max-tokens", "10", "--method", "math_shepherd", "--method",
            "omega_prm", "--method", "truth", "--task-arg", "instruction=false", "--chunk", "1",
            "--no-rationalize", *extra]


FILES = ("records.jsonl", "stepwise_math_shepherd.jsonl", "stepwise_omega_prm.jsonl", "orm.jsonl", "sft.jsonl")


def _worker_pids() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "ray::ShardWorker"], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def test_annotate_with_two_workers_survives_a_killed_worker(policy, tmp_path):
    runs = tmp_path / "runs"
    ponder(*_annotate(runs, "one", policy))
    # Two workers; as soon as the worker processes are up, one is killed with SIGKILL. Ray
    # restarts it and retries the chunk it held. (Waiting for the first records instead made
    # the kill land after the run: results are written in chunk order, so a slow first chunk
    # releases all of them at once.)
    killed: list[int] = []

    def kill_one_worker():
        records = runs / "two" / "records.jsonl"
        deadline = time.time() + 600
        while time.time() < deadline:
            lines = records.read_text().count("\n") if records.exists() else 0
            pids = _worker_pids()
            if pids:
                pid = min(pids)
                os.kill(pid, signal.SIGKILL)
                killed.append((pid, lines))
                return
            if (runs / "two" / "summary.json").exists():
                return  # the run is over
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_one_worker)
    watcher.start()
    ponder(*_annotate(runs, "two", policy, "--workers", "2"))
    watcher.join()
    assert killed, "the run ended before a worker could be killed"
    total = (runs / "one" / "records.jsonl").read_text().count("\n")
    assert killed[0][1] < total, "the kill landed after the run was over"
    for name in FILES:
        assert (runs / "two" / name).read_text() == (runs / "one" / name).read_text(), name
    # Changing the worker count does not change what the run computes: a rerun resumes.
    res = ponder(*_annotate(runs, "two", policy, "--workers", "1"))
    assert "12 of 12 problems already annotated" in res.output


def test_bad_worker_counts_are_refused(policy, tmp_path):
    def refused(*args: str) -> str:
        res = ponder(*args, check=False)
        assert res.returncode == 2, res.output
        return res.output

    assert "workers (--workers) must be at least 1" in refused("eval", "--model", str(policy), "--workers", "0")
    assert "oversubscribe" in refused("eval", "--model", str(policy), "--workers", str(os.cpu_count() * 4))
    assert "not found" in refused("eval", "--model", str(tmp_path / "missing"), "--workers", "2")


GPU_WORKERS = """
import os, ray
from ponder.parallel import GPUS_ENV, map_shards
ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)  # two GPUs, as Ray counts them
os.environ[GPUS_ENV] = "1"
seen = {r.value for r in map_shards(lambda state, i, shard: os.environ.get("CUDA_VISIBLE_DEVICES"),
                                    [(i, i) for i in range(8)], setup=lambda: None, workers=2)}
print(sorted(seen))
"""


def test_each_worker_gets_its_own_gpu(tmp_path):
    """Workers that ask for a GPU each see a different one (Ray sets CUDA_VISIBLE_DEVICES); a
    Ray given two GPU slots stands in for a machine with two GPUs."""
    import sys

    out = subprocess.run([sys.executable, "-c", GPU_WORKERS], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split("\n")[-2] == "['0', '1']"


def test_gpus_per_worker_defaults_and_bad_values(monkeypatch):
    import torch

    from ponder.parallel import GPUS_ENV, gpus_per_worker

    monkeypatch.delenv(GPUS_ENV, raising=False)
    assert gpus_per_worker() == (1.0 if torch.cuda.is_available() else 0.0)
    monkeypatch.setenv(GPUS_ENV, "0.5")
    assert gpus_per_worker() == 0.5
    for bad in ("-1", "two"):
        monkeypatch.setenv(GPUS_ENV, bad)
        with pytest.raises(ValueError, match="--gpus-per-worker"):
            gpus_per_worker()
    monkeypatch.delenv(GPUS_ENV)
    res = ponder("eval", "--model", "x", "--gpus-per-worker", "-1", check=False)
    assert res.returncode == 2 and "--gpus-per-worker must be >= 0" in res.output
