"""Reward-model training: PRM on stepwise labels, ORM on outcome labels, one BCE loss.

Data (TRL's formats, JSONL / JSON / Parquet through `read_rows`):
  PRM  stepwise supervision: {"prompt": str, "completions": [step, ...], "labels": [float|bool, ...]}
  ORM  unpaired outcome:     {"prompt": str, "completion": str, "label": bool|float}

Loss: binary cross-entropy between sigmoid(head) at each scored <sep> position and the
label — hard labels (0/1) or Math-Shepherd/OmegaPRM soft labels (MC fractions) used as
targets directly (Wang et al. 2023, eq. 6 uses hard labels; soft targets are the natural
generalisation of the same loss). The loop, checkpoints and resume are the shared TrainLoop.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ponder.tasks.files import read_rows
from ponder.train.config import RewardModelConfig
from ponder.train.loop import TrainLoop
from ponder.train.lora import add_lora
from ponder.train.sft import make_batch_at


@dataclass
class RMExample:
    input_ids: list[int]
    positions: list[int]
    targets: list[float]


def _label(value, where: str, field: str) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and 0.0 <= float(value) <= 1.0:
        return float(value)
    raise ValueError(f"{where}: field {field!r}: expected a label in [0, 1] (bool or float), got {value!r}")


def read_stepwise(path: str | Path) -> list[dict]:
    """Rows of a stepwise-supervision file, validated: each row needs a string `prompt`, a
    non-empty list of string `completions` and as many `labels` as completions."""
    rows = []
    for where, row in read_rows(path):
        if not isinstance(row.get("prompt"), str):
            raise ValueError(f"{where}: field 'prompt': expected a string, got {row.get('prompt')!r}")
        steps, labels = row.get("completions"), row.get("labels")
        if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
            raise ValueError(f"{where}: field 'completions': expected a non-empty list of step strings, got {steps!r}")
        if not isinstance(labels, list):
            raise ValueError(f"{where}: field 'labels': expected a list of floats, got {labels!r}")
        if len(labels) != len(steps):
            raise ValueError(f"{where}: field 'labels': expected {len(steps)} labels (one per step in "
                             f"'completions'), got {len(labels)}")
        rows.append({"prompt": row["prompt"], "completions": steps,
                     "labels": [_label(l, where, "labels") for l in labels]})
    return rows


def read_outcomes(path: str | Path) -> list[dict]:
    """Rows of an outcome file: string `prompt` and `completion`, a bool/float `label`."""
    rows = []
    for where, row in read_rows(path):
        for key in ("prompt", "completion"):
            if not isinstance(row.get(key), str):
                raise ValueError(f"{where}: field {key!r}: expected a string, got {row.get(key)!r}")
        rows.append({"prompt": row["prompt"], "completion": row["completion"],
                     "label": _label(row.get("label"), where, "label")})
    return rows


def rm_examples(rm, rows: list[dict], kind: str, hard: bool, max_len: int) -> list[RMExample]:
    """Tokenised examples; a PRM scores every step, an ORM the final one. Examples longer
    than max_len keep the steps that fit."""
    out = []
    for row in rows:
        if kind == "prm":
            steps, labels = row["completions"], row["labels"]
        else:
            steps = rm.split(row["completion"])
            labels = [row["label"]]
        ids, pos = rm.encode(row["prompt"], steps)
        if kind == "orm":
            pos = pos[-1:]
        keep = [(p, l) for p, l in zip(pos, labels) if p < max_len]
        if not keep:
            continue
        targets = [float(l > 0) if hard else float(l) for _, l in keep]
        out.append(RMExample(ids[:max_len], [p for p, _ in keep], targets))
    return out


def collate_rm(examples: list[RMExample], pad_id: int) -> dict[str, torch.Tensor]:
    """input_ids / attention_mask (B, T); targets (B, T) with -1 where nothing is scored."""
    T = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), T), dtype=torch.long)
    targets = torch.full((len(examples), T), -1.0)
    for i, e in enumerate(examples):
        ids[i, :len(e.input_ids)] = torch.tensor(e.input_ids)
        mask[i, :len(e.input_ids)] = 1
        targets[i, e.positions] = torch.tensor(e.targets)
    return {"input_ids": ids, "attention_mask": mask, "targets": targets}


def bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Mean BCE over scored positions. logits, targets: (B, T); targets < 0 are ignored."""
    scored = targets >= 0
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[scored].float(), targets[scored])
    with torch.no_grad():
        acc = ((logits[scored] > 0).float() == (targets[scored] > 0.5).float()).float().mean()
    return loss, {"loss": loss.item(), "label_acc": acc.item(), "tokens": int(scored.sum())}


class RewardModelTrainer:
    """Trains `rm` (a PRM or an ORM, `rm.kind`) on stepwise or outcome rows; saves
    run_dir/model, resumes from run_dir/checkpoint:

        RewardModelTrainer(new_reward_model(policy, "prm"), rows, RewardModelConfig(), "runs/prm").train()

    With `cfg.lora_r` the body trains LoRA adapters, merged into it when saved."""

    def __init__(self, rm, rows: list[dict], cfg: RewardModelConfig, run_dir: str | Path, eval_fn=None,
                 progress: bool = True):
        examples = rm_examples(rm, rows, rm.kind, cfg.hard, cfg.max_len)
        if not examples:
            raise ValueError("no reward-model examples left after tokenisation (empty data or max_len too small)")
        batch_at = make_batch_at(examples, cfg.batch_size, cfg.grad_accum, rm.tokenizer.pad_token_id or 0, cfg.seed,
                                 collate_rm)

        def loss_fn(model, batch):
            return bce_loss(model(batch["input_ids"], batch["attention_mask"]), batch["targets"])

        save = lambda m, out: m.save(out)  # noqa: E731
        lora = cfg.lora()
        if lora:
            peft = add_lora(rm.backbone, task_type="FEATURE_EXTRACTION", seed=cfg.seed, **lora)

            def save(m, out):
                m.backbone = peft.merge_and_unload()
                m.save(out)

        self.examples = examples
        self.loop = TrainLoop(rm, cfg, run_dir, batch_at, loss_fn, eval_fn=eval_fn, save_fn=save, progress=progress)

    def train(self) -> dict:
        """Run (or resume) to `cfg.steps`; the final logged metrics."""
        return self.loop.run()
