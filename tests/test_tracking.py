"""`--report-to`: the rows of metrics.jsonl also go to TensorBoard, W&B and MLflow, read back here
from the files each tracker wrote in the run directory."""
from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ponder.cli import app
from ponder.config import ConfigError
from ponder.train.tracking import installed, resolve_report_to


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def column(rows: list[dict], key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in rows if key in r]


def tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of the event files in `folder`, as TensorBoard reads them (a
    resumed run's purge applied)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def wandb_history(path: Path) -> list[dict]:
    """The history rows of a W&B run file: LevelDB-log records (32 KiB blocks, 7-byte headers
    of crc, length, type) after W&B's 7-byte file header, each a `Record` protobuf."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf, rows = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            if record.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return rows


def same(seen: list[tuple[int, float]], expected: list[tuple[int, float]], what: str = "") -> None:
    """The same steps, and values equal to float32 precision (TensorBoard keeps float32)."""
    assert [s for s, _ in seen] == [s for s, _ in expected], what
    assert [v for _, v in seen] == pytest.approx([v for _, v in expected], rel=1e-6), what


def cli(*args):
    res = CliRunner().invoke(app, [str(a) for a in args])
    return res.exit_code, " ".join(res.output.split())


SFT = ("sft", "--model", "tiny:1m", "--steps", "4", "--batch-size", "4", "--n-train", "32", "--log-every", "1",
       "--task-arg", "instruction=false")


def test_report_to_names_are_checked():
    assert resolve_report_to("tensorboard, wandb") == ["tensorboard", "wandb"]
    assert resolve_report_to(["wandb", "wandb"]) == ["wandb"]
    assert resolve_report_to("none") == resolve_report_to([]) == []
    assert resolve_report_to("all") == [n for n in ("tensorboard", "wandb", "mlflow") if installed(n)]
    with pytest.raises(ConfigError, match=r"--report-to 'tensorbored': expected a comma-separated list of "
                                          r"tensorboard, wandb, mlflow"):
        resolve_report_to("tensorbored")
    from ponder.train.config import SFTConfig

    assert SFTConfig(report_to="tensorboard").report_to == ["tensorboard"]  # the Python configs take a string too


def test_tensorboard_holds_the_metrics_of_a_killed_and_resumed_run(tmp_path):
    """The loss and eval curves TensorBoard reads equal metrics.jsonl's, after a kill past the
    last checkpoint and a resume: what the killed run logged after it is dropped, not doubled."""
    import torch

    from ponder.models import build_char_tokenizer, build_tiny_model
    from ponder.train.loop import TrainConfig, TrainLoop
    from ponder.train.sft import completion_loss, make_batch_at, tokenize_pairs

    tok = build_char_tokenizer()
    rows = [{"prompt": f"{a}+{b}=", "completion": str(a + b)} for a in range(6) for b in range(6)]
    examples = tokenize_pairs(tok, rows, 32)

    def loop(crash_at=None):
        batch_at = make_batch_at(examples, 4, 1, tok.pad_token_id, seed=0)

        def maybe_crash(step):
            if step == crash_at:
                raise KeyboardInterrupt("simulated kill")
            return batch_at(step)

        evals = iter(range(100))
        cfg = TrainConfig(lr=1e-2, warmup_steps=1, steps=6, save_every=2, log_every=1, eval_every=2,
                          report_to=["tensorboard"])
        return TrainLoop(build_tiny_model(tok, "1m", seed=0), cfg, tmp_path / "run", maybe_crash, completion_loss,
                         eval_fn=lambda m: {"score": float(next(evals))}, progress=False)

    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        loop(crash_at=3).run()  # steps 1-3 logged, the checkpoint at step 2
    killed = tensorboard_scalars(tmp_path / "run" / "tensorboard" / "run")
    assert [s for s, _ in killed["loss"]] == [1, 2, 3]
    loop().run()
    rows = metrics(tmp_path / "run")
    seen = tensorboard_scalars(tmp_path / "run" / "tensorboard" / "run")
    for key in ("loss", "lr", "grad_norm", "eval/score"):
        same(seen[key], column(rows, key), key)
    assert [s for s, _ in seen["loss"]] == [1, 2, 3, 4, 5, 6]
    hparams = next((tmp_path / "run" / "tensorboard" / "run").glob("*/hparams.yml")).read_text()
    assert "lr: 0.01" in hparams and "report_to: tensorboard" in hparams  # the config, as hyperparameters


def test_wandb_offline_run_files_hold_the_metrics_and_another_tracker_may_be_added(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    code, out = cli(*SFT, "--runs-dir", tmp_path, "--run", "w", "--report-to", "wandb")
    assert code == 0, out
    run = tmp_path / "w"
    run_id = json.loads((run / "trackers.json").read_text())["wandb"]
    [offline] = (run / "wandb").glob(f"offline-run-*-{run_id}")
    rows = metrics(run)
    deadline = time.time() + 30  # W&B's service writes the file after `finish` returns
    while len(history := wandb_history(offline / f"run-{run_id}.wandb")) < len(rows) and time.time() < deadline:
        time.sleep(0.2)
    assert [(h["step"], h["loss"]) for h in history] == column(rows, "loss")
    assert [h["token_acc"] for h in history] == [r["token_acc"] for r in rows]
    # trackers are not part of a run's options: a rerun that reports elsewhere resumes, not refused
    code, out = cli(*SFT, "--runs-dir", tmp_path, "--run", "w", "--report-to", "tensorboard")
    assert code == 0, out
    assert (run / "tensorboard" / "w").is_dir()


def test_a_tracker_that_is_not_a_tracker_or_not_installed_is_one_line(tmp_path):
    code, out = cli(*SFT, "--runs-dir", tmp_path, "--report-to", "tensorboard,comet")
    assert code == 2 and "--report-to 'comet': expected a comma-separated list of tensorboard, wandb, mlflow" in out
    if installed("mlflow"):
        return
    code, out = cli(*SFT, "--runs-dir", tmp_path, "--report-to", "mlflow")
    assert code == 2 and "the mlflow package is not installed; pip install mlflow" in out, out
    assert not (tmp_path / "sft").exists()  # refused before anything was written


def test_mlflow_file_store_in_the_run_directory(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install mlflow); --report-to mlflow untested")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    code, out = cli(*SFT, "--runs-dir", tmp_path, "--run", "m", "--report-to", "mlflow")
    assert code == 0, out
    from mlflow.tracking import MlflowClient

    run = tmp_path / "m"
    saved = json.loads((run / "trackers.json").read_text())["mlflow"]
    assert saved["tracking_uri"] == (run / "mlruns").resolve().as_uri()
    client = MlflowClient(tracking_uri=saved["tracking_uri"])
    history = client.get_metric_history(saved["run_id"], "loss")
    same([(m.step, m.value) for m in history], column(metrics(run), "loss"))
    assert client.get_run(saved["run_id"]).data.params["lr"] == "0.003"


def test_rl_logs_its_starting_evaluation_and_rollout_rewards(tmp_path):
    code, out = cli("rl", "--model", "tiny:1m", "--task", "arith", "--steps", "2", "--prompts-per-step", "2",
                    "--group-size", "2", "--max-tokens", "4", "--n-train", "4", "--n-eval", "2", "--eval-every", "1",
                    "--runs-dir", tmp_path, "--run", "r", "--report-to", "tensorboard")
    assert code == 0, out
    rows = metrics(tmp_path / "r")
    seen = tensorboard_scalars(tmp_path / "r" / "tensorboard" / "r")
    assert [s for s, _ in seen["eval/accuracy"]] == [0, 1, 2]  # step 0: the policy before training
    for key in ("reward", "loss", "eval/accuracy"):
        same(seen[key], column(rows, key), key)


@pytest.mark.slow
def test_expert_iteration_logs_its_rounds_as_one_run(tmp_path, arith_policy):
    code, out = cli("iterate", "--model", arith_policy, "--task", "arith", "--task-arg", "instruction=false",
                    "--rounds", "2", "--n-problems", "8", "--samples", "2", "--sft-steps", "3", "--batch-size", "4",
                    "--n-eval", "8", "--max-tokens", "24", "--runs-dir", tmp_path, "--run", "it",
                    "--report-to", "tensorboard")
    assert code == 0, out
    run = tmp_path / "it"
    seen = tensorboard_scalars(run / "tensorboard" / "it")
    # round r's SFT steps follow round r-1's; each round's accuracy where its SFT ends
    losses = [(3 * (r - 1) + s, v) for r in (1, 2) for s, v in column(metrics(run / f"round_{r}"), "loss")]
    same(seen["loss"], losses)
    assert [s for s, _ in seen["loss"]] == [3, 6]  # each round's SFT logs its last step
    rounds = [json.loads(line) for line in (run / "rounds.jsonl").read_text().splitlines()]
    same(seen["iterate/accuracy"], [(3 * rec["round"], rec["accuracy"]) for rec in rounds])
    code, out = cli("report", run)  # and its report: the rounds, and the accuracy per round
    page = (run / "report.html").read_text()
    assert code == 0 and "<h1>ponder expert iteration: it</h1>" in page and "<h2>Rounds</h2>" in page, out
    assert page.count('class="plot"') == 1
