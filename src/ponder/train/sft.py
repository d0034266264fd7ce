"""Supervised fine-tuning (and rejection-sampling fine-tuning) on prompt-completion pairs.

Data is TRL's prompt-completion format: rows `{"prompt": str, "completion": str}`. Prompts
are formatted with the model's chat template when it has one. The loss is the mean
cross-entropy over completion tokens only (prompt and padding are masked), with an EOS token
appended to every completion so the model learns to stop.

TRL's conversational rows are read too (chat_rows.py): `{"messages": [...]}`, whose assistant
turns are learned (TRL's assistant-only loss), and prompt-completion rows whose prompt is a
message list and whose completion is one assistant message; these end with the chat
template's own end of turn rather than an appended EOS.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ponder.models.load import format_prompt
from ponder.tasks.files import read_rows
from ponder.train.chat_rows import check_same_format, located, sft_ids, sft_kind, sft_row_problem, where_of
from ponder.train.config import SFTConfig
from ponder.train.loop import EpochOrder, LOSS_TOKENS, TrainLoop
from ponder.train.lora import add_lora, save_lora

IGNORE = -100


@dataclass
class SFTExample:
    input_ids: list[int]
    labels: list[int]


def tokenize_pairs(tokenizer, rows: list[dict], max_len: int, source: str = "data") -> list[SFTExample]:
    """Token ids with labels masked (-100) on the prompt; completion gets EOS appended.
    Rows longer than `max_len` tokens are dropped from the end of the completion side.

    Conversational rows (TRL's `messages` rows and message-list prompt-completion rows) are
    rendered with the chat template, as train/chat_rows.py explains: labels on the assistant
    turns - every one of a `messages` row (TRL's `assistant_only_loss`), the completion of a
    prompt-completion row - with the template's own end of turn in place of an appended EOS.
    A tokenizer without a chat template refuses them, naming the row (`file:line` for rows
    from `read_prompt_completion`)."""
    out = []
    for i, row in enumerate(rows):
        where = where_of(row, f"{source}: row {i + 1}")
        if sft_kind(row)[0] != "prompt-completion":
            problem = sft_row_problem(row)
            if problem:
                raise ValueError(f"{where}: field {problem[0]!r}: {problem[1]}")
            full, learnt = sft_ids(tokenizer, row, where)
            ids = full[:max_len]
            labels = [t if keep else IGNORE for t, keep in zip(full, learnt)][:max_len]
            if any(l != IGNORE for l in labels):
                out.append(SFTExample(ids, labels))
            continue
        for key in ("prompt", "completion"):
            if not isinstance(row.get(key), str):
                raise ValueError(f"{where}: field {key!r}: expected a string, got {row.get(key)!r}")
        p = tokenizer(format_prompt(tokenizer, row["prompt"]), add_special_tokens=False)["input_ids"]
        c = tokenizer(row["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = (p + c)[:max_len]
        labels = ([IGNORE] * len(p) + c)[:max_len]
        if any(l != IGNORE for l in labels):
            out.append(SFTExample(ids, labels))
    return out


def collate(examples: list[SFTExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of examples into input_ids / attention_mask / labels of shape (B, T)."""
    T = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), T), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), T), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def completion_loss(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """Mean next-token cross-entropy over the micro-batch's completion tokens (0 when it has
    none). logits (B, T, V), labels (B, T).

    Its stats carry the token count as `LOSS_TOKENS`, so the training loop makes the step's
    loss the token mean over all the step's micro-batches (and processes) rather than the mean
    of the micro-batches' means, which over-weights the tokens of short micro-batches (the
    gradient accumulation bug transformers fixed in v4.46; see train/loop.py)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    logits = logits[:, :-1]
    total = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    valid = targets != IGNORE
    count = int(valid.sum())
    loss = total / max(count, 1)
    with torch.no_grad():
        acc = ((logits.argmax(-1) == targets) & valid).sum() / max(count, 1)
    return loss, {"loss": loss.item(), "token_acc": acc.item(), "tokens": count, LOSS_TOKENS: count}


def make_batch_at(examples: list, batch_size: int, grad_accum: int, pad_id: int, seed: int, collate_fn=None):
    """batch_at(step) -> micro-batches: a fixed, seeded shuffle per epoch, so a resumed run
    sees the same data at the same step as an uninterrupted one. `collate_fn(examples,
    pad_id)` builds a micro-batch (default: SFT's `collate`)."""
    collate_fn = collate_fn or collate
    per_step = batch_size * grad_accum
    order = EpochOrder(len(examples), seed)

    def batch_at(step: int):
        picks = order.take(step * per_step, per_step)
        return [collate_fn([examples[i] for i in picks[k:k + batch_size]], pad_id)
                for k in range(0, per_step, batch_size)]

    return batch_at


def reference_rows(task, n: int, seed: int) -> list[dict]:
    """Prompt-completion rows from the reference solutions of `n` training problems."""
    rows = []
    for p in task.problems("train", n=n, seed=seed):
        completion = task.reference(p)
        if completion:
            rows.append({"prompt": task.prompt(p), "completion": completion})
    if not rows:
        raise ValueError(f"task {task.name!r} has no reference solutions to train on; pass a prompt-completion file")
    return rows


def read_prompt_completion(path: str | Path) -> list[dict]:
    """Rows of a prompt-completion file (JSONL, JSON array or Parquet); a bad row fails with
    its file:line and field. Rows are TRL's prompt-completion strings, or its conversational
    forms (https://huggingface.co/docs/trl/dataset_formats): `{"messages": [...]}` or
    `{"prompt": [messages], "completion": [one assistant message]}`; one format per file, as
    the first row sets it. Each row keeps its `file:line` (`chat_rows.Row`), so tokenizing
    can still name it, e.g. when the model has no chat template for a conversation."""
    rows, first = [], None
    for where, row in read_rows(path):
        kind = sft_kind(row)
        first = first or (kind, where)
        check_same_format(kind, where, *first)
        if kind[0] != "prompt-completion":
            problem = sft_row_problem(row)
            if problem:
                raise ValueError(f"{where}: field {problem[0]!r}: {problem[1]}")
            rows.append(located(row, where))
            continue
        for key in ("prompt", "completion"):
            value = row.get(key)  # read_rows has checked every row is an object
            if not isinstance(value, str):
                hint = ""
                if {"question", "answer"} <= set(row) or "problem" in row:
                    hint = (f" (this row looks like a task dataset: pass it as --task {Path(path)}, which "
                            "builds the prompts and reference solutions)")
                got = "nothing (the row has " + ", ".join(sorted(row)) + ")" if key not in row else repr(value)
                raise ValueError(f"{where}: field {key!r}: expected a string (rows of prompt and completion), "
                                 f"got {got}{hint}")
        rows.append(located(row, where))
    return rows


def save_model_fn(model, tokenizer, lora: dict | None, lora_merge: bool = True, seed: int = 0):
    """The training loop's `save_fn` for a causal LM: `save_pretrained` of the model and its
    tokenizer; with `lora`, adapters are injected into `model` now, and saved merged or
    beside the base at the end (train/lora.py)."""
    if not lora:
        def save(m, out: Path):
            m.save_pretrained(out)
            tokenizer.save_pretrained(out)

        return save

    peft = add_lora(model, seed=seed, **lora)
    return lambda m, out: save_lora(peft, tokenizer, out, lora_merge)


class SFTTrainer:
    """Fine-tunes `model` on prompt-completion `rows` (TRL's SFTTrainer shape):

        SFTTrainer(model, tokenizer, rows, SFTConfig(steps=600), "runs/sft").train()

    The final model and tokenizer are saved under run_dir/model in Hugging Face format; a run
    resumes from run_dir/checkpoint if present. With `cfg.lora_r` only LoRA adapters train,
    saved merged into the model or beside it (`lora_merge`, train/lora.py). `eval_fn(model)`,
    if given, runs every `eval_every` steps and at the end. `tracking`: where the metrics go
    besides metrics.jsonl, when not `cfg.report_to`'s trackers in `run_dir` (train/tracking.py)."""

    def __init__(self, model, tokenizer, rows: list[dict], cfg: SFTConfig, run_dir: str | Path, eval_fn=None,
                 progress: bool = True, tracking=None):
        self.examples = tokenize_pairs(tokenizer, rows, cfg.max_len)
        if not self.examples:
            raise ValueError("no SFT examples left after tokenisation (empty data or max_len too small)")
        batch_at = make_batch_at(self.examples, cfg.batch_size, cfg.grad_accum, tokenizer.pad_token_id, cfg.seed)
        save = save_model_fn(model, tokenizer, cfg.lora(), cfg.lora_merge, cfg.seed)
        self.loop = TrainLoop(model, cfg, run_dir, batch_at, completion_loss, eval_fn=eval_fn, save_fn=save,
                              progress=progress, tracking=tracking)

    def train(self) -> dict:
        """Run (or resume) to `cfg.steps`; the final logged metrics."""
        return self.loop.run()
