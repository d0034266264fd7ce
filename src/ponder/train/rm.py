"""Reward-model training: PRM on stepwise labels, ORM on outcome labels, one BCE loss.

Data (TRL's formats, JSONL / JSON / Parquet through `read_rows`):
  PRM  stepwise supervision: {"prompt": str, "completions": [step, ...], "labels": [float|bool, ...]}
  ORM  unpaired outcome:     {"prompt": str, "completion": str, "label": bool|float}

Loss: binary cross-entropy between sigmoid(head) at each scored <sep> position and the
label — hard labels (0/1) or Math-Shepherd/OmegaPRM soft labels (MC fractions) used as
targets directly (Wang et al. 2023, eq. 6 uses hard labels; soft targets are the natural
generalisation of the same loss). The loop, checkpoints and resume are the shared TrainLoop.

With `cfg.lm_coef` > 0 the body also keeps its language-model loss: loss = BCE + lm_coef x
the mean next-token cross-entropy on the solution tokens, read through the policy's LM head.
A PRM's body is the policy's without that head; a body whose head is tied to its input
embeddings (every tiny model, SmolLM2) still holds it, so the head trains with the body and
nothing is added to the saved reward model. This is GRM's SFT regulariser (Yang et al. 2024,
"Regularizing Hidden States Enables Learning Generalizable Reward Model for LLMs", Sec. 3.2:
keep the base model's LM head and its text-generation loss beside the reward head), written as
BCE + lm_coef x CE rather than GRM's (1 - alpha) / alpha mix, so that lm_coef 0 is the plain PRM.
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
    solution_start: int = 1
    """index of the first token after the prompt: the LM loss (lm_coef) predicts tokens from here"""


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
        start = len(rm.encode(row["prompt"], [])[0])
        if kind == "orm":
            pos = pos[-1:]
        keep = [(p, l) for p, l in zip(pos, labels) if p < max_len]
        if not keep:
            continue
        targets = [float(l > 0) if hard else float(l) for _, l in keep]
        out.append(RMExample(ids[:max_len], [p for p, _ in keep], targets, max(start, 1)))
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


def collate_rm_lm(examples: list[RMExample], pad_id: int) -> dict[str, torch.Tensor]:
    """collate_rm's batch plus lm_labels (B, T): at position t the solution token t + 1 to
    predict, -100 at the prompt, the last token and padding."""
    batch = collate_rm(examples, pad_id)
    labels = torch.full(batch["input_ids"].shape, -100, dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        labels[i, e.solution_start - 1:n - 1] = torch.tensor(e.input_ids[e.solution_start:n], dtype=torch.long)
    batch["lm_labels"] = labels
    return batch


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy. logits (B, T, V); labels (B, T), -100 ignored."""
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)


def tied_lm_head(rm) -> torch.nn.Module:
    """The policy's LM head inside a reward model's body: its input embeddings, when the
    policy's config ties them to the head; a ValueError otherwise (an untied head is not
    part of the body, and a reward model does not carry one)."""
    if not getattr(rm.backbone.config, "tie_word_embeddings", False):
        raise ValueError("lm_coef > 0 reads next-token logits through the policy's LM head tied to the body's input "
                         f"embeddings, but this body ({type(rm.backbone).__name__}) has tie_word_embeddings=False, so "
                         "its LM head is not part of the reward model; use lm_coef 0")
    return rm.backbone.get_input_embeddings()


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
                                 collate_rm_lm if cfg.lm_coef else collate_rm)

        if cfg.lm_coef:
            tied_lm_head(rm)  # refuses an untied body here, before any step

            def loss_fn(model, batch):
                # RewardModel.forward, keeping the hidden states for the LM head as well
                hidden = model.backbone(input_ids=batch["input_ids"],
                                        attention_mask=batch["attention_mask"]).last_hidden_state
                bce, stats = bce_loss(model.head(hidden).squeeze(-1), batch["targets"])
                lm = lm_loss(torch.nn.functional.linear(hidden, tied_lm_head(model).weight), batch["lm_labels"])
                loss = bce + cfg.lm_coef * lm
                return loss, {**stats, "loss": loss.item(), "bce": bce.item(), "lm_loss": lm.item()}
        else:
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
