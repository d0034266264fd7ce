"""Trainers, the engine and search on a second device: torch's lazy-tensor backend, which
runs on the CPU but refuses any CPU tensor mixed into its ops, as CUDA would. Each run is
compared with the same run on the CPU: equal losses (within float tolerance), equal samples
and log-probabilities. Lazy steps are slow (each graph is traced), so the runs are a few
steps of the 1m tiny model.

`PONDER_TEST_DEVICE=cuda` runs the same tests on a GPU (`make gpu-check`). There the numbers
are compared within GPU float tolerance, and what depends on random draws (samples, RL
rollouts) is checked for running, not for equality: CUDA's generators draw other streams
than the CPU's."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from ponder.generation import SamplingParams, make_engine
from ponder.models import build_char_tokenizer, build_tiny_model
from ponder.models.device import LAZY_ENV, place, resolve_device
from ponder.tasks import get_task
from ponder.train.loop import TrainConfig

SECOND = os.environ.get("PONDER_TEST_DEVICE", "lazy")
DEVICES = ("cpu", SECOND)
EXACT = SECOND == "lazy"  # the lazy device computes with the CPU's kernels and generators
LOSS_TOL = 1e-4 if EXACT else 2e-3


@pytest.fixture(autouse=True)
def lazy_allowed(monkeypatch):
    monkeypatch.setenv(LAZY_ENV, "1")
    torch.set_num_threads(1)
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 matmuls, to compare with the CPU


def losses(run_dir) -> list[float]:
    return [json.loads(line)["loss"] for line in open(run_dir / "metrics.jsonl") if '"loss"' in line]


def tiny(seed=0):
    tok = build_char_tokenizer()
    return build_tiny_model(tok, "1m", seed=seed), tok


def config(device: str, cls=TrainConfig, steps: int = 2, **kw):
    return cls(lr=3e-3, steps=steps, warmup_steps=1, seed=0, eval_every=0, save_every=0, log_every=1, device=device,
               **kw)


def test_sft_on_the_lazy_device_has_the_cpu_loss_curve(tmp_path):
    """Through the real CLI: `ponder sft --device lazy` and `--device cpu`."""
    curves = {}
    for device in DEVICES:
        env = dict(os.environ, OMP_NUM_THREADS="1", **{LAZY_ENV: "1"})
        args = ["sft", "--model", "tiny:1m", "--steps", "2", "--batch-size", "8", "--n-train", "64", "--task-arg",
                "instruction=false", "--runs-dir", str(tmp_path), "--run", device, "--device", device]
        res = subprocess.run([sys.executable, "-m", "ponder", *args], capture_output=True, text=True, env=env,
                             timeout=600)
        assert res.returncode == 0, res.stdout + res.stderr
        curves[device] = losses(tmp_path / device)
    assert len(curves["cpu"]) == 1  # the last step's
    assert curves[SECOND] == pytest.approx(curves["cpu"], rel=LOSS_TOL)
    from safetensors.torch import load_file

    cpu, other = (load_file(tmp_path / d / "model" / "model.safetensors") for d in DEVICES)
    assert cpu.keys() == other.keys()
    assert max((cpu[k] - other[k]).abs().max().item() for k in cpu) < (1e-4 if EXACT else 1e-2)
    assert max((cpu[k] - init).abs().max().item() for k, init in build_tiny_model(
        build_char_tokenizer(), "1m", seed=0).state_dict().items() if k in cpu) > 1e-4  # it did train


def test_reward_model_and_dpo_train_on_the_lazy_device(tmp_path):
    from ponder.rewards.model import RewardModel
    from ponder.train.dpo import DPOConfig, DPOTrainer
    from ponder.train.rm import RewardModelConfig, RewardModelTrainer

    stepwise = [{"prompt": f"{a}+{b}", "completions": [f"{a}+{b}={a + b}", f"Answer: {a + b}"],
                 "labels": [1.0, float(a % 2)]} for a, b in zip(range(1, 17), range(5, 21))]
    prefs = [{"prompt": f"{a}+{b}", "chosen": f"Answer: {a + b}", "rejected": f"Answer: {a + b + 1}"}
             for a, b in zip(range(1, 17), range(5, 21))]
    curves = {}
    for device in DEVICES:
        model, tok = tiny()
        tok.padding_side = "right"
        RewardModelTrainer(RewardModel(model.model, tok, "prm"), stepwise,
                           config(device, RewardModelConfig, batch_size=8), tmp_path / f"rm-{device}",
                           progress=False).train()
        model, tok = tiny()
        DPOTrainer(model, tok, config(device, DPOConfig, batch_size=8), tmp_path / f"dpo-{device}", rows=prefs,
                   progress=False).train()
        curves[device] = losses(tmp_path / f"rm-{device}") + losses(tmp_path / f"dpo-{device}")
    assert len(curves["cpu"]) == 4
    assert curves[SECOND] == pytest.approx(curves["cpu"], rel=LOSS_TOL, abs=1e-5)


def test_the_engine_and_search_on_the_lazy_device():
    from ponder.search import SearchContext, SearchParams, search
    from ponder.search.scorers import load_scorer

    runs = {}
    for device in DEVICES:
        model, tok = tiny()
        engine = make_engine("torch", place(model.eval(), resolve_device(device)), tokenizer=tok)
        greedy = engine.generate(["3+4*2", "1+1"], SamplingParams(temperature=0, max_tokens=8))
        sampled = engine.generate(["3+4*2", "1+1"], SamplingParams(n=2, temperature=1.0, max_tokens=8, seed=1))
        ids = engine.prompt_ids(["3+4*2"])[0]
        # A continuation of a finished sample: its prefix comes from the prefix cache.
        cached0 = engine.usage.cached_tokens
        [[cont]] = engine.generate([ids + sampled[0][0].token_ids[:4]], SamplingParams(temperature=0, max_tokens=4))
        hits = engine.usage.cached_tokens - cached0
        # Scored on the greedy tokens, which both devices share (sampled ones differ off the CPU).
        lps = engine.logprobs(["3+4*2"], [greedy[0][0].token_ids], temperature=1.0)
        task = get_task("arith", instruction=False)
        problem = task.problems("test", n=1, seed=0)[0]
        ctx = SearchContext(engine, task, load_scorer("verifier", task, [problem]))
        result = search("beam", ctx, problem, SearchParams(n=4, beam_width=2, max_step_tokens=6, max_steps=3,
                                                              max_tokens=18, seed=0))
        runs[device] = {"greedy": [s.token_ids for p in greedy for s in p],
                        "sampled": [s.token_ids for p in sampled for s in p], "cont": cont.token_ids, "hits": hits,
                        "search": [(c.text, c.score) for c in result.candidates], "lps": lps[0]}
    cpu, other = runs["cpu"], runs[SECOND]
    assert cpu["hits"] > 0 and other["hits"] == cpu["hits"]
    assert other["lps"] == pytest.approx(cpu["lps"], abs=1e-5 if EXACT else 1e-3)
    assert other["greedy"] == cpu["greedy"]
    for key in ("sampled", "cont", "search"):  # from random draws: equal where the generators are the CPU's
        assert (other[key] == cpu[key]) if EXACT else other[key], key


def test_bad_devices_are_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.delenv(LAZY_ENV)
    with pytest.raises(ValueError, match="PONDER_LAZY_DEVICE=1"):
        resolve_device("lazy")
    with pytest.raises(ValueError, match="expected auto, cpu, cuda, cuda:N or mps"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            resolve_device("cuda:0")
        res = subprocess.run([sys.executable, "-m", "ponder", "sft", "--device", "cuda", "--steps", "1",
                              "--runs-dir", str(tmp_path)], capture_output=True, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
        assert res.returncode == 2 and "sees no CUDA GPU" in res.stdout and "Traceback" not in res.stderr
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


RL_RUNS = [  # (estimator, extra RLConfig fields, LoRA)
    ("grpo", {}, None),
    ("gae", {}, None),  # PPO with a critic: the value head lives on the device too
    ("process_grpo", {}, None),  # step rewards from the task's exact step checker
    ("grpo", {"beta": 0.1, "kl_in_reward": True, "kl_estimator": "k1"}, {"r": 4, "alpha": 8}),  # the reference
    # is the LoRA model with its adapter off
    ("grpo", {"beta": 0.1, "kl_estimator": "k3"}, None),  # the KL as a loss term
]


@pytest.mark.parametrize("estimator,extra,lora", RL_RUNS,
                         ids=["grpo", "ppo", "process_grpo", "grpo_lora_kl", "grpo_kl_loss"])
def test_rl_on_the_lazy_device_matches_the_cpu(tmp_path, estimator, extra, lora):
    """Two RL steps (rollouts from the engine on the device, rewards, advantages, a policy
    update) on each device: the same rewards, losses and trained weights."""
    from safetensors.torch import load_file

    from ponder.rewards.base import VerifierScorer
    from ponder.rewards.functions import RewardFunction
    from ponder.train.rl import RLConfig, RLTrainer

    if SECOND == "lazy" and extra.get("beta") and not extra.get("kl_in_reward"):
        pytest.skip("the lazy backend's scatter rejects the clipped loss with a KL term (a dtype check); "
                    "the same run passes on the CPU and on CUDA")
    task = get_task("arith", instruction=False)
    problems = task.problems("train", n=8, seed=0)
    ones = RewardFunction("ones", lambda prompts, completions, **_: [c.count("1") / (len(c) + 1) for c in completions])
    records, weights = {}, {}
    for device in DEVICES:
        model, tok = tiny()
        cfg = RLConfig(steps=2, prompts_per_step=2, group_size=4, max_tokens=6 if lora is None else 4, lr=3e-3,
                       save_every=0, eval_every=0, estimator=estimator, device=device, **extra,
                       **({"lora_r": lora["r"], "lora_alpha": lora["alpha"]} if lora else {}))
        scorer = VerifierScorer(task, problems) if estimator == "process_grpo" else None
        RLTrainer(model, tok, task, problems, [], [ones], cfg, tmp_path / device, progress=False,
                  process_scorer=scorer).train()
        records[device] = [v for r in map(json.loads, open(tmp_path / device / "metrics.jsonl"))
                           if "loss" in r for v in (r["loss"], r["reward"])]
        weights[device] = load_file(tmp_path / device / "model" / "model.safetensors")
    assert len(records["cpu"]) == len(records[SECOND]) == 4  # loss and reward of 2 steps
    if not EXACT:  # other rollouts: only that the run trained, and sanely
        assert all(v == v and abs(v) < 1e3 for v in records[SECOND])
        return
    assert records[SECOND] == pytest.approx(records["cpu"], abs=1e-5)
    assert max((weights["cpu"][k] - weights[SECOND][k]).abs().max().item() for k in weights["cpu"]) < 1e-4


def test_mixed_precision_and_gradient_checkpointing(tmp_path):
    """bf16 autocast changes the numbers a little (so it is on) but not the course; gradient
    checkpointing recomputes the same activations, so it changes nothing but memory."""
    from ponder.train.sft import SFTConfig, SFTTrainer, reference_rows

    rows = reference_rows(get_task("arith", instruction=False), 64, seed=0)
    curves = {}
    for name, extra in (("fp32", {}), ("bf16", {"mixed_precision": "bf16"}), ("ckpt", {"gradient_checkpointing": True})):
        model, tok = tiny()
        cfg = config("cpu", SFTConfig, steps=4, batch_size=8, **extra)
        SFTTrainer(model, tok, rows, cfg, tmp_path / name, progress=False).train()
        curves[name] = losses(tmp_path / name)
    assert curves["ckpt"] == pytest.approx(curves["fp32"], rel=1e-5)
    assert curves["bf16"] != curves["fp32"] and curves["bf16"] == pytest.approx(curves["fp32"], rel=2e-2)
