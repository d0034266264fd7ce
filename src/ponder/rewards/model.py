"""Outcome and process reward models: a causal-LM backbone with a scalar head.

A solution is encoded as

    prompt  step_1 <sep>  step_2 <sep>  ...  step_K <sep>

where <sep> is the step delimiter's single token (a newline by default) and each step is
tokenised on its own, so the sep positions are exact whatever the tokenizer merges. The
head maps the last hidden state at a position to a logit; sigmoid gives P(correct).

- PRM (Lightman et al. 2023; Wang et al. 2023): a score at every <sep>, the probability
  that the solution is still correct after that step. `score_steps` returns them.
- ORM (Cobbe et al. 2021): one score at the final <sep>, the probability that the whole
  solution is correct. `score_outcomes` returns it.

Saved format (a directory; `load_reward_model` reads it, `load_prm` insists on a PRM):

    config.json, model.safetensors     the backbone (`AutoModel.save_pretrained`)
    tokenizer files                    `save_pretrained` of its tokenizer
    reward_head.safetensors            `weight` (1, hidden), `bias` (1,)
    reward_config.json                 {"kind": "prm"|"orm", "separator": "\\n",
                                        "aggregation": "last", "threshold": 0.5}
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ponder.models.hub import hub_snapshot, is_hub_id, trust_remote_code
from ponder.models.load import format_prompt, load_model
from ponder.rewards.base import AGGREGATIONS, Scorer, ScorerUsage, aggregate
from ponder.tasks.base import split_steps

CONFIG_FILE = "reward_config.json"
HEAD_FILE = "reward_head.safetensors"


class RewardModel(torch.nn.Module, Scorer):
    """Backbone + linear head; `kind` "prm" scores every step, "orm" the whole solution."""

    def __init__(self, backbone, tokenizer, kind: str = "prm", separator: str = "\n",
                 aggregation: str = "last", threshold: float = 0.5):
        torch.nn.Module.__init__(self)
        if kind not in ("prm", "orm"):
            raise ValueError(f"reward model kind must be 'prm' or 'orm', got {kind!r}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}: expected one of {', '.join(AGGREGATIONS)}")
        self.backbone, self.tokenizer = backbone, tokenizer
        self.kind, self.separator, self.aggregation, self.threshold = kind, separator, aggregation, threshold
        self.head = torch.nn.Linear(backbone.config.hidden_size, 1)
        torch.nn.init.zeros_(self.head.weight)
        torch.nn.init.zeros_(self.head.bias)
        sep = tokenizer(separator, add_special_tokens=False)["input_ids"]
        if len(sep) != 1:
            raise ValueError(f"the step separator {separator!r} must be one token for this tokenizer, got {sep}")
        self.sep_id = sep[0]
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        self.usage = ScorerUsage()

    # -- encoding -----------------------------------------------------------------------
    def encode(self, prompt: str, steps: list[str]) -> tuple[list[int], list[int]]:
        """(token ids, positions of the <sep> after each step)."""
        ids = self.tokenizer(format_prompt(self.tokenizer, prompt), add_special_tokens=not self.chat)["input_ids"]
        positions = []
        for s in steps:
            ids = ids + self.tokenizer(s, add_special_tokens=False)["input_ids"] + [self.sep_id]
            positions.append(len(ids) - 1)
        return ids, positions

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits of shape (B, T): the head at every position."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden).squeeze(-1)

    @torch.no_grad()
    def _step_probs(self, prompts: list[str], steps: list[list[str]], batch_size: int = 32) -> list[list[float]]:
        encoded = [self.encode(p, s) for p, s in zip(prompts, steps, strict=True)]
        out: list[list[float]] = [[] for _ in encoded]
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
        device = self.head.weight.device
        was_training = self.training
        self.eval()
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            T = max(len(encoded[i][0]) for i in idx)
            ids = torch.full((len(idx), T), self.tokenizer.pad_token_id or 0, dtype=torch.long)
            mask = torch.zeros((len(idx), T), dtype=torch.long)
            for r, i in enumerate(idx):
                n = len(encoded[i][0])
                ids[r, :n] = torch.tensor(encoded[i][0])
                mask[r, :n] = 1
            probs = torch.sigmoid(self(ids.to(device), mask.to(device)).float()).cpu()
            for r, i in enumerate(idx):
                out[i] = probs[r, encoded[i][1]].tolist()
            self.usage.tokens += int(mask.sum())
        self.usage.calls += 1
        self.train(was_training)
        return out

    # -- the scorer contract ---------------------------------------------------------------
    def score_steps(self, prompts: list[str], steps: list[list[str]]) -> list[list[float]]:
        if self.kind != "prm":
            raise NotImplementedError("an ORM scores whole solutions only; use score_outcomes")
        return self._step_probs(prompts, steps)

    def split(self, completion: str) -> list[str]:
        """A completion's steps as this model scores them (the whole text if it has no separator)."""
        return split_steps(completion, self.separator) or [completion]

    def score_outcomes(self, prompts: list[str], completions: list[str]) -> list[float]:
        split = [self.split(c) for c in completions]
        if self.kind == "orm":
            probs = self._step_probs(prompts, split)
            return [p[-1] for p in probs]
        return [aggregate(p, self.aggregation) for p in self._step_probs(prompts, split)]

    # -- persistence -----------------------------------------------------------------------
    def save(self, out: str | Path) -> None:
        from safetensors.torch import save_file

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        save_file({"weight": self.head.weight.detach().cpu().contiguous(),
                   "bias": self.head.bias.detach().cpu().contiguous()}, str(out / HEAD_FILE))
        (out / CONFIG_FILE).write_text(json.dumps({"kind": self.kind, "separator": self.separator,
                                                   "aggregation": self.aggregation, "threshold": self.threshold},
                                                  indent=2))


def backbone_from(model_name: str):
    """(backbone without its LM head, tokenizer) from any causal LM ponder can load."""
    lm, tokenizer = load_model(model_name)
    tokenizer.padding_side = "right"
    return getattr(lm, lm.base_model_prefix), tokenizer


def new_reward_model(model_name: str, kind: str, separator: str = "\n", aggregation: str = "last") -> RewardModel:
    """A reward model initialised from a causal LM (e.g. the SFT policy), head at zero."""
    backbone, tokenizer = backbone_from(model_name)
    return RewardModel(backbone, tokenizer, kind, separator, aggregation)


def load_reward_model(path: str | Path, aggregation: str | None = None) -> RewardModel:
    """A reward model saved by `RewardModel.save` (a folder, or a Hub ID of one); a clear
    error if `path` is not one."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer


    path = Path(path) if Path(path).exists() or not is_hub_id(str(path)) else hub_snapshot(str(path))
    cfg_file = path / CONFIG_FILE
    if not path.is_dir() or not cfg_file.exists() or not (path / HEAD_FILE).exists():
        raise ValueError(f"{path} is not a ponder reward model (PRM or ORM): expected a directory with {CONFIG_FILE} and "
                         f"{HEAD_FILE} (written by `ponder train-rm`)")
    cfg = json.loads(cfg_file.read_text())
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code())
    tokenizer.padding_side = "right"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    backbone = AutoModel.from_pretrained(path, dtype=torch.float32, trust_remote_code=trust_remote_code())
    rm = RewardModel(backbone, tokenizer, cfg["kind"], cfg.get("separator", "\n"),
                     aggregation or cfg.get("aggregation", "last"), cfg.get("threshold", 0.5))
    state = load_file(str(path / HEAD_FILE))
    rm.head.weight.data.copy_(state["weight"])
    rm.head.bias.data.copy_(state["bias"])
    rm.eval()
    return rm


def load_prm(path: str | Path, aggregation: str | None = None) -> RewardModel:
    """A saved PRM; `ValueError` if `path` holds no reward model or an ORM."""
    rm = load_reward_model(path, aggregation)
    if rm.kind != "prm":
        raise ValueError(f"{path} is an outcome reward model (ORM), not a PRM: it cannot score steps")
    return rm
