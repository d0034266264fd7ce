"""Data-parallel training under torchrun: two CPU processes (gloo) reach the weights one process
reaches from the same global batches.

One `torchrun --nproc_per_node 2` launch runs this file as a script (`worker`): the `sft`
command, an RL run, an RL run killed during a rollout and resumed, and DPO, each on a tiny
model for a few steps. The tests compare its outputs with the same runs made here, in one
process. Tolerance: 1e-4 on every weight. The two runs add the same gradients in another order
(and RL's sampling-time forwards see other rows beside them), so they agree to float32 rounding:
about 1e-7 for nearly every weight, but a few elements (under 1 in 10,000) whose gradient terms
nearly cancel differ by up to 1e-5, since Adam divides a gradient by its own size and so scales
its rounding up. Both are far below what one optimiser step moves a weight (lr 1e-3 to 1e-2).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOL = 1e-4
ROWS = [{"prompt": f"Compute {a}+{b}.\n", "chosen": f"{a + b}", "rejected": f"{a + b + 1}"}
        for a in range(5) for b in range(5)]


def sft_config(runs_dir: Path, run: str):
    from ponder.commands.sft import Config

    # 3 micro-batches per step: one process takes two of them, the other one
    return Config(run=run, runs_dir=str(runs_dir), model="tiny:1m", n_train=48, steps=3, batch_size=4, grad_accum=3,
                  max_len=64, lr=1e-2, warmup_steps=1)


def ones_share(prompts, completions, **_):
    """A reward that varies between samples of a random model: the share of '1' characters."""
    return [c.count("1") / (len(c) + 1) for c in completions]


def rl_trainer(run_dir: Path, reward=ones_share, **overrides):
    from ponder.models import build_char_tokenizer, build_tiny_model
    from ponder.rewards.functions import RewardFunction
    from ponder.tasks import get_task
    from ponder.train.rl import RLConfig, RLTrainer

    task = get_task("arith", instruction=False)
    problems = task.problems("train", n=16, seed=0)
    tok = build_char_tokenizer()
    # 3 prompts per rollout: one process samples two groups, the other one
    cfg = dict(steps=2, prompts_per_step=3, group_size=4, max_tokens=12, ppo_epochs=2, num_minibatches=2, lr=1e-3,
               save_every=1, eval_every=1, seed=3)
    cfg.update(overrides)
    return RLTrainer(build_tiny_model(tok, "1m", seed=0), tok, task, problems, problems[:3],
                     [RewardFunction("ones", reward)], RLConfig(**cfg), run_dir, progress=False, prompt_seeds=True)


# REINFORCE++ whitens advantages over the whole batch; the KL penalty needs the reference forward
RESUMED = dict(steps=3, estimator="reinforce_pp", beta=0.05, kl_in_reward=True, kl_estimator="k1", eval_every=0)


def dies_on_third_rollout():
    calls = {"n": 0}

    def reward(prompts, completions, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the processes are killed while scoring rollout 3
        return ones_share(prompts, completions)

    return reward


def dpo_run(run_dir: Path) -> dict:
    from ponder.models import build_char_tokenizer, build_tiny_model
    from ponder.train.dpo import DPOConfig, DPOTrainer

    tok = build_char_tokenizer()
    cfg = DPOConfig(lr=1e-2, warmup_steps=1, steps=3, grad_accum=2, log_every=1, save_every=3, batch_size=3)
    return DPOTrainer(build_tiny_model(tok, "1m", seed=0), tok, cfg, run_dir, rows=ROWS, progress=False).train()


def worker(out: Path) -> None:
    """What each of the torchrun processes runs."""
    from ponder.commands import sft

    sft.run(sft_config(out, "sft"), progress=False)
    rl_trainer(out / "rl").train()
    try:
        rl_trainer(out / "rl_cut", reward=dies_on_third_rollout(), **RESUMED).train()
    except KeyboardInterrupt:
        pass
    rl_trainer(out / "rl_cut", **RESUMED).train()
    dpo_run(out / "dpo")


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def assert_same_weights(one: Path, two: Path) -> None:
    a, b = weights(one), weights(two)
    assert a.keys() == b.keys()
    for name in a:
        diff = (a[name] - b[name]).abs().max().item()
        assert diff <= TOL, f"{name}: the 2-process weights differ by {diff}"


def metric_steps(run_dir: Path) -> list[tuple]:
    return [(r["step"], "eval/accuracy" in r) for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(the 2-process runs, the same runs in this process)."""
    two = tmp_path_factory.mktemp("two_processes")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent.parent / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__, str(two)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    one = tmp_path_factory.mktemp("one_process")
    import torch

    from ponder.commands import sft

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun process: the same kernels, the same rounding
    try:
        sft.run(sft_config(one, "sft"), progress=False)
        rl_trainer(one / "rl").train()
        rl_trainer(one / "rl_cut", **RESUMED).train()  # uninterrupted
        dpo_run(one / "dpo")
    finally:
        torch.set_num_threads(threads)
    return two, one


def test_sft_in_two_processes_reaches_the_one_process_weights(runs):
    two, one = runs
    assert_same_weights(one / "sft" / "model", two / "sft" / "model")
    # rank 0 alone wrote the records: one per step, the same numbers as one process's
    a = [json.loads(l) for l in (one / "sft" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(l) for l in (two / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in b] == [r["step"] for r in a] == [3]  # log_every 10: the last step only
    for ra, rb in zip(a, b):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)
        assert rb["tokens"] == ra["tokens"]  # every process's tokens counted once
    summary = json.loads((two / "sft" / "summary.json").read_text())
    assert summary["step"] == 3 and summary["loss"] == pytest.approx(a[-1]["loss"], rel=1e-5)
    assert sorted(p.name for p in (two / "sft" / "checkpoint").glob("random_states_*")) == \
        ["random_states_0.pkl", "random_states_1.pkl"]  # each process's RNG, for an exact resume


def test_rl_in_two_processes_reaches_the_one_process_weights(runs):
    two, one = runs
    assert_same_weights(one / "rl" / "model", two / "rl" / "model")
    # 2 rollouts x 4 optimiser steps, the initial and 2 periodic evaluations: each record once
    steps = metric_steps(two / "rl")
    assert steps == metric_steps(one / "rl")
    assert steps == [(0, True), *[(s, False) for s in range(1, 5)], (4, True), *[(s, False) for s in range(5, 9)],
                     (8, True)]
    a = [json.loads(l) for l in (one / "rl" / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(l) for l in (two / "rl" / "metrics.jsonl").read_text().splitlines()]
    for ra, rb in zip(a, b):  # rollout means gathered, loss-time means token-weighted over processes
        for key in ("reward", "tokens", "loss", "entropy", "clip_frac", "approx_kl", "eval/accuracy"):
            if key in ra:
                assert rb[key] == pytest.approx(ra[key], rel=1e-4, abs=1e-6), (ra["step"], key)


def test_rl_killed_in_two_processes_resumes_to_the_uninterrupted_weights(runs):
    two, one = runs
    assert_same_weights(one / "rl_cut" / "model", two / "rl_cut" / "model")
    # 3 rollouts x 4 optimiser steps, the initial and final evaluations: no record lost or duplicated
    assert metric_steps(two / "rl_cut") == [(0, True), *[(s, False) for s in range(1, 13)], (12, True)]


def test_dpo_in_two_processes_reaches_the_one_process_weights(runs):
    two, one = runs
    assert_same_weights(one / "dpo" / "model", two / "dpo" / "model")
    assert [s for s, _ in metric_steps(two / "dpo")] == [1, 2, 3]


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
