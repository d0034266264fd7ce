"""LoRA in every trainer (`sft`, `dpo`, `train-rm`, `iterate`; `rl` in test_rl_trainer.py):
only the adapters train (weights outside the adapted modules come out bit-equal), the model is
saved merged or as an adapter beside its base, and an adapter folder loads as its base plus
the adapter."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

pytest.importorskip("peft", reason="LoRA needs the optional peft package (pip install 'ponder[lora]')")

from ponder.models import build_char_tokenizer, build_tiny_model, load_model  # noqa: E402
from ponder.train.loop import TrainConfig  # noqa: E402

LORA = {"r": 4, "alpha": 8, "target_modules": None}
LORA_OPTIONS = {"lora_r": 4, "lora_alpha": 8}  # the same, as a trainer config's fields
ADAPTED = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny model folder to start from."""
    d = tmp_path_factory.mktemp("base") / "model"
    tok = build_char_tokenizer()
    build_tiny_model(tok, "1m", seed=0).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def cfg(cls=TrainConfig, **kw):
    return cls(lr=1e-2, steps=3, warmup_steps=1, seed=0, eval_every=0, save_every=0, log_every=1, **kw)


def only_adapted_changed(before: dict, after: dict, prefix: str = "") -> None:
    """Every adapted Linear weight moved; every other tensor is bit-equal."""
    assert set(before) == set(after)
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(any(f"{m}.weight" in k for m in ADAPTED) for k in moved), sorted(moved)[:5]
    assert {k for k in before if any(f"{m}.weight" in k for m in ADAPTED)} == moved


def state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_sft_merged_and_beside_the_base_give_the_same_model(base, tmp_path):
    from ponder.tasks import get_task
    from ponder.train.sft import SFTConfig, SFTTrainer, reference_rows

    rows = reference_rows(get_task("arith", instruction=False), 48, seed=0)
    before = state(load_model(str(base))[0])
    for merge in (True, False):
        model, tok = load_model(str(base))
        SFTTrainer(model, tok, rows, cfg(SFTConfig, batch_size=8, **LORA_OPTIONS, lora_merge=merge),
                   tmp_path / str(merge), progress=False).train()
    merged_dir, adapter_dir = tmp_path / "True" / "model", tmp_path / "False" / "model"
    assert (merged_dir / "config.json").exists() and not (merged_dir / "adapter_config.json").exists()
    assert (adapter_dir / "adapter_config.json").exists() and not (adapter_dir / "config.json").exists()
    assert json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base)
    merged, from_adapter = state(load_model(str(merged_dir))[0]), state(load_model(str(adapter_dir))[0])
    only_adapted_changed(before, merged)
    assert max((merged[k] - from_adapter[k]).abs().max().item() for k in merged) < 1e-6


def test_cli_sft_with_lora_from_scratch_saves_its_base(tmp_path):
    """A model built from scratch (tiny:1m) has no base on disk: `--no-lora-merge` saves it."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = ["sft", "--model", "tiny:1m", "--steps", "2", "--batch-size", "4", "--n-train", "16", "--task-arg",
            "instruction=false", "--runs-dir", str(tmp_path), "--lora-r", "4", "--no-lora-merge"]
    res = subprocess.run([sys.executable, "-m", "ponder", *args], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    adapter = json.loads((tmp_path / "sft" / "model" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str((tmp_path / "sft" / "base").resolve())
    assert (tmp_path / "sft" / "base" / "config.json").exists()
    model, _ = load_model(str(tmp_path / "sft" / "model"))  # base + adapter
    assert not any("lora" in k for k in model.state_dict())
    bad = subprocess.run([sys.executable, "-m", "ponder", *args[:-3], "--lora-r", "4", "--lora-targets", "nope",
                          "--run", "bad"], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "no such modules" in bad.stdout and "Traceback" not in bad.stderr


def test_dpo_with_lora_trains_the_adapters_only(base, tmp_path):
    from ponder.train.dpo import DPOConfig, DPOTrainer

    prefs = [{"prompt": f"{a}+{b}", "chosen": f"Answer: {a + b}", "rejected": f"Answer: {a + b + 1}"}
             for a, b in zip(range(1, 13), range(5, 17))]
    model, tok = load_model(str(base))
    before = state(model)
    out = DPOTrainer(model, tok, cfg(DPOConfig, batch_size=4, **LORA_OPTIONS), tmp_path, rows=prefs,
                     progress=False).train()
    assert out["pairs"] == 12
    only_adapted_changed(before, state(load_model(str(tmp_path / "model"))[0]))


def test_reward_model_with_lora_trains_adapters_and_head(base, tmp_path):
    from ponder.rewards.model import load_prm, new_reward_model
    from ponder.train.rm import RewardModelConfig, RewardModelTrainer

    rows = [{"prompt": f"{a}+{b}", "completions": [f"{a}+{b}={a + b}", f"Answer: {a + b}"],
             "labels": [1.0, float(a % 2)]} for a, b in zip(range(1, 17), range(5, 21))]
    rm = new_reward_model(str(base), "prm")
    before, head = state(rm.backbone), state(rm.head)
    RewardModelTrainer(rm, rows, cfg(RewardModelConfig, batch_size=8, **LORA_OPTIONS), tmp_path, progress=False).train()
    saved = load_prm(tmp_path / "model")
    only_adapted_changed(before, state(saved.backbone))
    assert not torch.equal(head["weight"], saved.head.weight.detach())
    assert not any("lora" in k for k in load_file(tmp_path / "model" / "model.safetensors"))


def test_iterate_with_lora(arith_policy, tmp_path):
    """One round of expert iteration from a policy that solves some problems: the round's
    model has the adapters merged in, nothing else changed."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = ["iterate", "--model", arith_policy, "--task", "arith", "--task-arg", "instruction=false", "--rounds", "1",
            "--n-problems", "16", "--samples", "2", "--max-tokens", "48", "--sft-steps", "2", "--batch-size", "4",
            "--n-eval", "4", "--runs-dir", str(tmp_path), "--lora-r", "4"]
    res = subprocess.run([sys.executable, "-m", "ponder", *args], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    before = state(load_model(arith_policy)[0])
    [round_dir] = [d for d in (tmp_path / "iterate").iterdir() if (d / "model" / "config.json").exists()]
    only_adapted_changed(before, state(load_model(str(round_dir / "model"))[0]))
    res = subprocess.run([sys.executable, "-m", "ponder", *args, "--no-lora-merge", "--run", "other"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2 and "merges the adapters after every round" in res.stdout
