"""The scoring routes of `ponder serve --scorer PRM`: the server's PRM for other processes.

    GET  /ponder/scorer         the PRM's name, format, step delimiter and aggregation
    POST /v1/score_steps        {"prompts": [str], "steps": [[str]]}   -> a score per step
    POST /v1/score_outcomes     {"prompts": [str], "completions": [str]} -> a score per completion
    POST /pooling               vLLM's pooling API: {"input": str | [str] | [ids] | [[ids]]}
                                -> per-token rows, as `vllm serve PRM --runner pooling` answers

Two shapes, for two reasons:

- `/v1/score_steps` and `/v1/score_outcomes` are the scorer contract (rewards/base.py) over
  HTTP: the server lays each solution out exactly as the PRM reads it in process (ponder's
  PRM tokenises every step on its own; a published PRM has its own template), so a remote
  search gets the very step scores an in-process one would. Each row reports the tokens it
  read (`data[i].tokens`), so a batched search can charge every problem its own scorer
  tokens (search/batch.py), and `usage.prompt_tokens` is their sum.
- `/pooling` follows vLLM's pooling API (vllm/entrypoints/pooling/pooling/protocol.py:
  `PoolingResponse` with `data: [{index, object: "pooling", data}]` and `usage`), so one
  client speaks to ponder serve and to vLLM serving a PRM. A row per input token holds what
  the PRM reads there, in the column order vLLM gives the same model: a Qwen2.5-Math-PRM's
  two label probabilities [P(label 0), P(label 1)]; a Math-Shepherd PRM's [P(+), P(-)] (vLLM's
  `returned_token_ids` [good, bad], softmaxed); ponder's PRM its one [P(correct)]. Like vLLM
  without a `step_tag_id`, every token gets a row; the caller reads the rows at its markers.
  Input text is tokenised with the PRM's tokenizer (its special tokens added unless
  `add_special_tokens` is false, vLLM's default).

The PRM is named in requests by its served name (`/ponder/scorer`'s `model`; the server's
policy name is accepted too, as is no name); `/tokenize` with the PRM's name tokenises with
the PRM's tokenizer (vLLM's /tokenize uses the served model's), which is what a client of
`/pooling` needs to find the step markers in its input. The PRM is not listed in
`/v1/models`: clients that take a server's only model there keep getting the policy.

Scoring runs on the engine thread as a batcher `call` job (batcher.py), so it never overlaps
a generation, and counts against `--max-pending`. Bounds (guard.py): the body size, at most
`--max-n` solutions or inputs per request, and each one within the PRM's context. A server
whose `--scorer` is a URL (a remote PRM for its search extension) serves no scoring routes:
it does not relay.
"""
from __future__ import annotations

import time
import uuid
from typing import Callable

import torch

from ponder.rewards.base import Scorer
from ponder.serve.batcher import Batcher
from ponder.serve.guard import Guard
from ponder.serve.protocol import APIError, _is_int, bad, check_ids, get_bool, parse_tokenize

# The pooling tasks a request may name for what these routes compute (vLLM's names, old and new).
POOLING_TASKS = (None, "token_classify", "reward", "encode")
BATCH = 16
"""rows per forward pass of `/pooling`"""


def scorer_format(scorer: Scorer | None) -> str | None:
    """"ponder", "math_shepherd" or "qwen_prm" for a PRM in this process; None otherwise."""
    from ponder.rewards.model import RewardModel
    from ponder.rewards.published import MathShepherdPRM, QwenPRM

    if isinstance(scorer, RewardModel):
        return "ponder"
    if isinstance(scorer, MathShepherdPRM):
        return "math_shepherd"
    if isinstance(scorer, QwenPRM):
        return "qwen_prm"
    return None


class Scoring:
    """The scoring routes over one PRM (None: every route says the server has none)."""

    def __init__(self, scorer: Scorer | None, name: str | None, policy_name: str, batcher: Batcher, guard: Guard):
        self.scorer, self.batcher, self.guard, self.policy_name = scorer, batcher, guard, policy_name
        self.format = scorer_format(scorer)
        self.name = name or "prm"
        if self.format is not None:
            model = scorer.backbone if self.format == "ponder" else scorer.model
            self.tokenizer = scorer.tokenizer
            self.max_len = int(getattr(model.config, "max_position_embeddings", None) or
                               self.tokenizer.model_max_length)
            self.vocab = model.get_input_embeddings().num_embeddings
            self.delimiter = scorer.separator if self.format == "ponder" else scorer.delimiter

    # ----- who is asked -----

    def _need(self, body: dict | None = None) -> None:
        if self.format is None:
            why = ("its --scorer is a remote PRM, which it uses for its search extension but does not relay"
                   if self.scorer is not None else "it was started without one")
            raise APIError(404, f"this server has no PRM to score with ({why}): start it with ponder serve --scorer "
                                "PRM_DIR", code="no_scorer")
        name = (body or {}).get("model")
        if name is not None and name not in (self.name, self.policy_name):
            raise APIError(404, f"The model `{name}` does not exist. This server scores with `{self.name}`.",
                           param="model", code="model_not_found")

    def serves(self, body: dict) -> bool:
        """Whether a request names this PRM (and not the policy), e.g. on /tokenize."""
        return self.format is not None and body.get("model") == self.name and self.name != self.policy_name

    # ----- routes -----

    def routes(self) -> dict:
        """The route table entries (server.py's shape: path -> (method, handler))."""
        return {"/ponder/scorer": ("GET", self.info), "/pooling": ("POST", self.pooling),
                "/v1/score_steps": ("POST", self.score_steps), "/v1/score_outcomes": ("POST", self.score_outcomes)}

    def info(self) -> dict:
        self._need()
        return {"object": "scorer", "model": self.name, "kind": "prm", "format": self.format,
                "step_delimiter": self.delimiter, "aggregation": self.scorer.aggregation,
                "max_model_len": self.max_len}

    def tokenize(self, body: dict) -> dict:
        ids = parse_tokenize(body, self.tokenizer)
        return {"count": len(ids), "max_model_len": self.max_len, "tokens": ids, "token_strs": None}

    def score_steps(self, body: dict, alive: Callable[[], bool]) -> dict:
        self._need(body)
        prompts = self._texts(body, "prompts")
        steps = body.get("steps")
        if not isinstance(steps, list) or len(steps) != len(prompts) or not all(
                isinstance(s, list) and all(isinstance(x, str) for x in s) for s in steps):
            raise bad("steps", f"'steps' must be a list of {len(prompts)} lists of strings (a solution's steps per "
                               "prompt)")
        return self._score("score_steps", prompts, steps, alive)

    def score_outcomes(self, body: dict, alive: Callable[[], bool]) -> dict:
        self._need(body)
        prompts = self._texts(body, "prompts")
        completions = self._texts(body, "completions")
        if len(completions) != len(prompts):
            raise bad("completions", f"'completions' must have one string per prompt ({len(prompts)}), got "
                                     f"{len(completions)}")
        return self._score("score_outcomes", prompts, completions, alive)

    def pooling(self, body: dict, alive: Callable[[], bool]) -> dict:
        self._need(body)
        task = body.get("task")
        if task not in POOLING_TASKS:
            raise bad("task", f"'task' must be one of {', '.join(t for t in POOLING_TASKS if t)} (a PRM scores "
                              f"every token), got {task!r}")
        if "messages" in body:
            raise bad("messages", "/pooling here takes 'input' (strings or token ids), not 'messages'")
        inputs = body.get("input")
        special = get_bool(body, "add_special_tokens", True)
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and all(_is_int(t) for t in inputs)):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            raise bad("input", "'input' must be a string, a list of strings, a list of token ids or a list of "
                               "lists of token ids")
        self._check_rows(len(inputs), "input")

        def run():
            ids = [self.tokenizer(x, add_special_tokens=special)["input_ids"] if isinstance(x, str)
                   else check_ids(x, self.vocab, "input") for x in inputs]
            self._check_lengths([len(x) for x in ids], "input")
            return ids, token_rows(self.scorer, self.format, ids)

        ids, rows = self.batcher.call(run, alive)
        tokens = sum(len(x) for x in ids)
        return {"id": f"pool-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()), "model": self.name,
                "data": [{"index": i, "object": "pooling", "data": r} for i, r in enumerate(rows)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}}

    # ----- helpers -----

    def _texts(self, body: dict, field: str) -> list[str]:
        v = body.get(field)
        if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
            raise bad(field, f"'{field}' must be a non-empty list of strings")
        self._check_rows(len(v), field)
        return v

    def _check_rows(self, rows: int, field: str) -> None:
        if rows > self.guard.max_n:
            raise bad(field, f"'{field}': the request has {rows} rows to score; this server scores at most "
                             f"{self.guard.max_n} per request (--max-n)")

    def _check_lengths(self, lengths: list[int], field: str) -> None:
        longest = max(lengths)
        if longest > self.max_len:
            raise bad(field, f"'{field}': a row is {longest} tokens as the PRM reads it; its context holds "
                             f"{self.max_len}")

    def _score(self, method: str, prompts: list[str], items: list, alive: Callable[[], bool]) -> dict:
        scorer = self.scorer

        def run():
            steps = items if method == "score_steps" else [scorer.split(c) for c in items]
            lengths = [len(scorer.encode(p, s)[0]) for p, s in zip(prompts, steps)]
            self._check_lengths(lengths, "steps" if method == "score_steps" else "completions")
            before = scorer.usage.tokens
            out = getattr(scorer, method)(prompts, items)
            return out, lengths, scorer.usage.tokens - before

        try:
            out, lengths, tokens = self.batcher.call(run, alive)
        except ValueError as e:  # a solution the PRM cannot lay out (e.g. its tokenizer merged a step marker)
            raise bad("steps" if method == "score_steps" else "completions", f"the PRM cannot score it: {e}") from None
        key = "scores" if method == "score_steps" else "score"
        return {"id": f"score-{uuid.uuid4().hex}", "object": "list", "created": int(time.time()), "model": self.name,
                "data": [{"index": i, key: s, "tokens": n} for i, (s, n) in enumerate(zip(out, lengths))],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}}


@torch.inference_mode()
def token_rows(scorer, fmt: str, inputs: list[list[int]]) -> list[list[list[float]]]:
    """Per input, a row per token: what the PRM reads there, in vLLM's column order (module
    docstring). Batched longest first, right-padded, as the PRM's own scoring is."""
    if fmt == "ponder":
        model, pad = scorer, scorer.tokenizer.pad_token_id or 0
        device = scorer.head.weight.device
    else:
        model, pad = scorer.model, scorer.pad_id
        device = next(scorer.model.parameters()).device
    out: list = [None] * len(inputs)
    order = sorted(range(len(inputs)), key=lambda i: -len(inputs[i]))
    was_training = model.training
    model.eval()
    for start in range(0, len(order), BATCH):
        idx = order[start:start + BATCH]
        T = max(len(inputs[i]) for i in idx)
        ids = torch.full((len(idx), T), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), T), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, :len(inputs[i])] = torch.tensor(inputs[i])
            mask[r, :len(inputs[i])] = 1
        ids, mask = ids.to(device), mask.to(device)
        if fmt == "ponder":
            probs = torch.sigmoid(scorer(ids, mask).float()).cpu()
            good = [probs[r, :len(inputs[i])] for r, i in enumerate(idx)]
        else:
            good = [p.float().cpu() for p in scorer._probs(ids, mask, [list(range(len(inputs[i]))) for i in idx])]
        for r, i in enumerate(idx):
            p = good[r].tolist()
            out[i] = ([[x] for x in p] if fmt == "ponder" else
                      [[x, 1.0 - x] for x in p] if fmt == "math_shepherd" else [[1.0 - x, x] for x in p])
    model.train(was_training)
    return out
