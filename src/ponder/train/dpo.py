"""DPO (Rafailov et al. 2023, "Direct Preference Optimization") on preference pairs.

Data is TRL's preference format: rows `{"prompt", "chosen", "rejected"}`. The prompt is a user
text, or a conversation in TRL's form: a user message, optionally followed by an assistant
message that the completions continue (what Step-DPO pairs use, see train/step_dpo.py); or
TRL's conversational preference rows, whose chosen and rejected are assistant messages
(chat_rows.py), which end with the chat template's own end of turn.
Whole completions get an EOS appended so the model learns where to stop; Step-DPO's single
steps do not. The loss is eq. 7 of the DPO paper:

    -log sigmoid(beta * ((log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x))))

The reference is the initial model; its log-probabilities are computed once before training
(a pure function of the data), so no second model is kept in memory. Each optimiser step takes
`cfg.grad_accum` micro-batches of `batch_size` pairs; under torchrun each process takes its share
of them (see loop.py) and computes its share of the reference log-probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ponder.eval.evaluate import greedy_accuracy
from ponder.models.device import place, step_done, to_device
from ponder.models.load import encode_prompts
from ponder.runs import write_json, write_jsonl
from ponder.tasks.files import read_rows
from ponder.train import distributed
from ponder.train.chat_rows import (
    check_same_format,
    completion_ids,
    located,
    preference_kind,
    preference_row_problem,
    where_of,
)
from ponder.train.config import DPOConfig
from ponder.train.loop import EpochOrder, TrainLoop
from ponder.train.sft import save_model_fn
from ponder.train.step_dpo import step_dpo_pairs


def dpo_loss(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1) -> tuple[torch.Tensor, dict]:
    """DPO eq. 7 averaged over pairs. All inputs are (B,) summed completion log-probs.
    Stats: the implicit rewards beta * (log pi - log ref) of chosen and rejected, their
    margin, and the share of pairs where chosen's implicit reward is higher."""
    chosen = beta * (pi_chosen - ref_chosen)
    rejected = beta * (pi_rejected - ref_rejected)
    loss = -F.logsigmoid(chosen - rejected).mean()
    with torch.no_grad():
        stats = {"reward_chosen": chosen.mean().item(), "reward_rejected": rejected.mean().item(),
                 "margin": (chosen - rejected).mean().item(), "pair_accuracy": (chosen > rejected).float().mean().item()}
    return loss, stats


def prompt_problem(prompt) -> str | None:
    """What is wrong with a row's prompt (None when nothing is): a string, or a conversation
    `[{"role": "user", ...}]` with at most one `{"role": "assistant", ...}` message after it."""
    if isinstance(prompt, str):
        return None
    roles = ["user", "assistant"]
    if not isinstance(prompt, list) or not 1 <= len(prompt) <= 2:
        return f"expected a string or a list of 1-2 messages, got {prompt!r}"
    for message, role in zip(prompt, roles):
        if not isinstance(message, dict) or message.get("role") != role or not isinstance(message.get("content"), str):
            return (f"expected a user message, optionally followed by an assistant message it continues, "
                    f"each {{'role', 'content': str}}; got {prompt!r}")
    return None


def read_preferences(path: str | Path) -> list[dict]:
    """Rows of a TRL preference file (JSONL, JSON array or Parquet); a bad row fails with its
    file:line and field. Completions are strings, or TRL's conversational form (one assistant
    message each, the prompt a message list: https://huggingface.co/docs/trl/dataset_formats);
    one format per file, as the first row sets it. Each row keeps its `file:line`
    (`chat_rows.Row`), so tokenizing can still name it."""
    rows, first = [], None
    for where, row in read_rows(path):
        kind = preference_kind(row)
        first = first or (kind, where)
        check_same_format(kind, where, *first)
        if kind[0] == "conversational":
            problem = preference_row_problem(row)
            if problem:
                raise ValueError(f"{where}: field {problem[0]!r}: {problem[1]}")
            rows.append(located(row, where))
            continue
        problem = prompt_problem(row.get("prompt"))
        if problem:
            raise ValueError(f"{where}: field 'prompt': {problem}")
        for key in ("chosen", "rejected"):
            if not isinstance(row.get(key), str):
                raise ValueError(f"{where}: field {key!r}: expected a string, got {row.get(key)!r}")
        rows.append(located(row, where))
    if not rows:
        raise ValueError(f"{path}: no preference rows")
    return rows


@dataclass
class PairExample:
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]


def prompt_ids(tokenizer, prompt: str | list[dict]) -> list[int]:
    """Model-ready ids of a row's prompt. The user text goes through `encode_prompts`, as in
    every engine (chat template applied when the tokenizer has one, the assistant header
    opened); a trailing assistant message follows as its own tokens, so the completion
    continues the assistant turn - the ids search and annotation continue a partial solution
    with (prompt ids of the question, then the steps' tokens). TRL renders such a prompt with
    `continue_final_message`, which gives the same text where the template writes a message
    verbatim (SmolLM2's does; a template that trims messages would drop the newline that ends
    the last step, which is why the assistant text is appended here rather than templated).
    Rows in TRL's conversational form (completions as assistant messages) are not read here:
    their prompt is rendered whole by the template, see `tokenize_preferences`."""
    problem = prompt_problem(prompt)
    if problem:
        raise ValueError(f"preference row: field 'prompt': {problem}")
    if isinstance(prompt, str):
        return encode_prompts(tokenizer, [prompt])[0]
    ids = encode_prompts(tokenizer, [prompt[0]["content"]])[0]
    if len(prompt) == 2 and prompt[1]["content"]:
        ids = ids + tokenizer(prompt[1]["content"], add_special_tokens=False)["input_ids"]
    return ids


def tokenize_preferences(tokenizer, rows: list[dict], max_len: int, append_eos: bool = True) -> list[PairExample]:
    """Token ids per pair; completions are cut so prompt + completion fits in max_len, and
    pairs left with an empty side are dropped.

    A conversational row (TRL's: prompt a message list, chosen and rejected one assistant
    message each) is rendered with the chat template (train/chat_rows.py): the prompt as
    `apply_chat_template(prompt, add_generation_prompt=True)`, each completion as its assistant
    turn's tokens with the template's own end of turn (up to EOS), so `append_eos` applies to
    string completions only. A tokenizer without a chat template refuses such rows, naming
    the row (`file:line` for rows from `read_preferences`)."""
    out = []
    eos = [tokenizer.eos_token_id] if append_eos else []
    for i, row in enumerate(rows):
        if preference_kind(row)[0] == "conversational":
            where = where_of(row, f"preference row {i + 1}")
            problem = preference_row_problem(row)
            if problem:
                raise ValueError(f"{where}: field {problem[0]!r}: {problem[1]}")
            p, c = completion_ids(tokenizer, row["prompt"], row["chosen"], where, "chosen")
            _, r = completion_ids(tokenizer, row["prompt"], row["rejected"], where, "rejected")
            c, r = c[: max(0, max_len - len(p))], r[: max(0, max_len - len(p))]
        else:
            p = prompt_ids(tokenizer, row["prompt"])
            c = (tokenizer(row["chosen"], add_special_tokens=False)["input_ids"] + eos)[: max(0, max_len - len(p))]
            r = (tokenizer(row["rejected"], add_special_tokens=False)["input_ids"] + eos)[: max(0, max_len - len(p))]
        if c and r and c != r:
            out.append(PairExample(p, c, r))
    return out


def collate_pairs(pairs: list[PairExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Chosen rows then rejected rows, right-padded: input_ids, attention_mask, and
    completion_mask marking the completion tokens as targets, each (2B, L)."""
    seqs = [(e.prompt, e.chosen) for e in pairs] + [(e.prompt, e.rejected) for e in pairs]
    L = max(len(p) + len(c) for p, c in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    attn = torch.zeros(len(seqs), L, dtype=torch.long)
    target = torch.zeros(len(seqs), L)
    for i, (p, c) in enumerate(seqs):
        ids[i, :len(p) + len(c)] = torch.tensor(p + c)
        attn[i, :len(p) + len(c)] = 1
        target[i, len(p):len(p) + len(c)] = 1.0
    return {"input_ids": ids, "attention_mask": attn, "completion_mask": target}


def sequence_logps(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed log-probability of each row's completion tokens: (2B, L) batch -> (2B,)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
    targets = batch["input_ids"][:, 1:]
    logp = torch.log_softmax(logits, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (logp * batch["completion_mask"][:, 1:]).sum(-1)


class DPOTrainer:
    """DPO on preference `rows`, or Step-DPO on pairs built from the policy's own samples
    (`rows=None`: train/step_dpo.py, with `generator` sampling `task`; the pairs are kept in
    run_dir/pairs.jsonl, so a resumed run trains on the pairs it built first). With `task` and
    `cfg.n_eval`, greedy accuracy on held-out problems is measured before training (kept in
    run_dir/initial_eval.json) and at the end. Saves run_dir/model; resumes from
    run_dir/checkpoint. With `cfg.lora_r` only LoRA adapters train (the reference log-probs
    are the model's before them).

        DPOTrainer(model, tokenizer, DPOConfig(beta=0.1), "runs/dpo", rows=pairs).train()
    """

    def __init__(self, model, tokenizer, cfg: DPOConfig, run_dir: str | Path, rows: list[dict] | None = None,
                 task=None, generator=None, progress: bool = True):

        run_dir = Path(run_dir)
        self.step_dpo = cfg.step or rows is None
        if rows is None:
            if task is None or generator is None:
                raise ValueError("Step-DPO pairs are built from a task and a generator: pass both, or rows")
            cache = run_dir / "pairs.jsonl"

            def build_pairs():  # on rank 0 alone under torchrun; the others get its pairs
                if cache.exists():
                    return read_preferences(cache)

                problems = task.problems("train", n=cfg.n_problems, seed=cfg.seed)
                built = step_dpo_pairs(task, problems, generator, cfg.samples, cfg.temperature, cfg.max_tokens,
                                       cfg.seed)
                if not built:
                    raise ValueError("the model made no step errors on the sampled problems: no Step-DPO pairs to "
                                     "learn from")
                write_jsonl(cache, built)
                return built

            rows = distributed.on_main(build_pairs)
        self.rows = rows
        eval_fn = None
        self.initial_path = run_dir / "initial_eval.json"
        if task is not None and generator is not None and cfg.n_eval:
            held_out = task.problems("test", n=cfg.n_eval, seed=cfg.seed)
            eval_fn = lambda m: {"accuracy": greedy_accuracy(generator, task, held_out, cfg.max_tokens, m)}  # noqa: E731

            def initial_eval():  # on rank 0 alone; kept, so a resumed run still reports where it started
                if not self.initial_path.exists():
                    write_json(self.initial_path, {"accuracy": eval_fn(model)["accuracy"]})

            distributed.on_main(initial_eval)
        self.pairs, self.loop = _dpo_loop(model, tokenizer, rows, run_dir, cfg, not self.step_dpo, eval_fn, progress)

    def train(self) -> dict:
        """Run (or resume) to `cfg.steps`: the final logged metrics, the number of pairs, and
        the accuracy before training when it was measured."""
        import json

        out = {"pairs": self.pairs, **self.loop.run()}
        if self.initial_path.exists():
            out["initial_eval/accuracy"] = json.loads(self.initial_path.read_text())["accuracy"]
        return out


def _dpo_loop(model, tokenizer, rows: list[dict], run_dir: Path, cfg: DPOConfig, append_eos: bool, eval_fn,
              progress: bool):
    """(number of pairs, the TrainLoop): the reference log-probs computed, the batches laid out."""
    pairs = tokenize_preferences(tokenizer, rows, cfg.max_len, append_eos)
    if not pairs:
        raise ValueError("no preference pairs left after tokenisation (empty data, identical sides, or max_len too small)")
    pad = tokenizer.pad_token_id
    ref = torch.zeros(len(pairs), 2)
    device = distributed.train_device(cfg.device)
    place(model, device)  # the reference log-probs are computed where the model trains
    was_training = model.training
    model.eval()
    starts = range(0, len(pairs), cfg.batch_size)
    mine = {}  # this process's share of the batches, the same batches in any number of processes
    with torch.no_grad():
        for s in [starts[i] for i in distributed.share(len(starts))]:
            lp = sequence_logps(model, to_device(collate_pairs(pairs[s:s + cfg.batch_size], pad), device)).cpu()
            n = len(pairs[s:s + cfg.batch_size])
            mine[s] = torch.stack([lp[:n], lp[n:]], dim=1)
            step_done(device)
    for part in distributed.gather_objects(mine):
        for s, lp in part.items():
            ref[s:s + len(lp)] = lp
    model.train(was_training)
    order = EpochOrder(len(pairs), cfg.seed)
    per_step = cfg.batch_size * cfg.grad_accum

    def batch_at(step: int):
        picks = order.take(step * per_step, per_step)
        out = []
        for k in range(0, per_step, cfg.batch_size):
            batch = collate_pairs([pairs[i] for i in picks[k:k + cfg.batch_size]], pad)
            batch["ref"] = ref[picks[k:k + cfg.batch_size]]
            out.append(batch)
        return out

    def loss_fn(m, batch):
        lp = sequence_logps(m, batch)
        n = batch["ref"].shape[0]
        loss, stats = dpo_loss(lp[:n], lp[n:], batch["ref"][:, 0], batch["ref"][:, 1], cfg.beta)
        return loss, {"loss": loss.item(), **stats, "tokens": int(batch["completion_mask"].sum())}

    save = save_model_fn(model, tokenizer, cfg.lora(), cfg.lora_merge, cfg.seed)
    return len(pairs), TrainLoop(model, cfg, run_dir, batch_at, loss_fn, eval_fn=eval_fn, save_fn=save, progress=progress)
