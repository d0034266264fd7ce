"""The in-process PyTorch engine: batched sampling from any Hugging Face causal LM.

    gen = TorchGenerator(model, tokenizer, batch_size=64)
    samples = gen.generate(["What is 2+3?"], SamplingParams(n=4, temperature=0.8, seed=0))
    gen.usage  # Usage(prefill_tokens=..., generated_tokens=..., calls=1)

How a call runs:

1. Prompts are tokenized (through the chat template when `chat` is on), sorted by length and
   cut into chunks of `batch_size // n` prompts (at least one), i.e. at most `batch_size`
   rows - except when n > batch_size, where a chunk is one prompt's n rows.
2. Prefill (prefill.py): each prompt of the chunk is computed once, its shared prefix once
   for all, and its cache row is repeated for its n samples. Only the last position's logits
   are computed (`logits_to_keep=1`).
3. Decode: one token per row per step, fed with the grown 2D attention mask and each row's
   own position id. A row that hits EOS, a stop string or `max_tokens` leaves the batch at
   once (the cache, mask and positions are cut down to the running rows), so finished rows
   cost nothing; `model.generate` keeps computing them until the batch's longest row ends.

Speed (benchmarks/generation.py, 2-core CPU, SmolLM2-135M, 64 chat prompts, greedy, up to
128 tokens): 1.5x the tokens/s of `model.generate`, 1.8x with up to 256 tokens. The gains
come from the grouped, prefix-shared prefill (prefill.py), a KV cache appended in place
(kv_cache.py), column-major weights so that a batch thinned by finished rows really costs
less (weight_layout.py), and those rows leaving the batch.

Prompts passed to `generate` and `logprobs` are user texts (templated here) or model-ready
token ids (fed verbatim), as the engine contract (base.py) says; `prompt_ids(question) +
sample.token_ids` continues an assistant turn step by step. Build it with
`make_engine("torch", ...)` (factory.py), not directly.

Each `Sample` holds the generated token ids (EOS and the tokens that formed a stop string
included), their log-probabilities (log_softmax(logits / T) before top-k/top-p, see
sampling.py) and the text, decoded in the context of the prompt's last tokens and cut at the
stop string (stops.py).

Reproducibility: with `seed` set, row (prompt i, sample j) draws its noise from its own
`torch.Generator` seeded from (seed, i, j), so its sample does not depend on `batch_size`,
on the other prompts of the call or on when other rows finish. The caveat is floating point:
a matmul over a different number of rows may round differently in the last bit, which can
flip a draw or a greedy argmax that sits on a near-exact tie. Greedy outputs match
`model.generate(do_sample=False)` token for token in this project's tests and benchmark.
"""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from ponder.generation.base import (
    EngineError,
    Generator,
    Prompt,
    PromptSeed,
    Sample,
    SamplingParams,
    Usage,
    check_params,
    seed_key,
)
from ponder.generation.kv_cache import GROW_BY
from ponder.generation.prefill import left_pad, positions_of, prefill
from ponder.generation.sampling import select_tokens, token_logprobs
from ponder.generation.stops import IncrementalDetokenizer, decode_completion, find_stop
from ponder.generation.weight_layout import ColumnMajorWeights

# Teacher-forced scoring materialises (rows, positions, vocab) logits; one micro-batch holds
# at most this many floats (256 MB).
LOGITS_BUDGET = 64 * 2**20
# `column_major=None` turns the weight copies on for CPU models whose Linear weights take
# less than this, so the extra copy never surprises a machine with a large model.
COLUMN_MAJOR_MAX_BYTES = 2 * 2**30


@dataclass
class _Row:
    """One sample in flight: which prompt and sample it is, and what it has produced."""

    prompt: int
    index: int
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    detok: IncrementalDetokenizer | None = None
    generator: torch.Generator | None = None
    sample: Sample | None = None


class TorchGenerator(Generator):
    """Batched, KV-cached generation with a Hugging Face causal LM, in this process."""

    name = "torch"

    def __init__(
        self,
        model,
        tokenizer,
        batch_size: int = 64,
        chat: bool | None = None,
        progress: bool = False,
        column_major: bool | None = None,
    ):
        """`batch_size`: rows (prompts x n) decoded together. `chat`: wrap prompts in the
        tokenizer's chat template (None: iff it has one). `progress`: a tqdm bar over chunks.
        `column_major`: run with column-major copies of the Linear weights, 2x faster for
        small batches on CPU, at the cost of a second copy of them in memory (see
        weight_layout.py; None: on CPU when they take under 2 GiB)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.chat = bool(getattr(tokenizer, "chat_template", None)) if chat is None else chat
        self.progress = progress
        self.usage = Usage()
        self.device = next(model.parameters()).device
        self.eos_ids = _eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids, default=0)
        # transformers 5 renamed `past_key_values` to `cache`; accept models of either kind.
        params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._keeps_logits = "logits_to_keep" in params
        if column_major is None:
            linear_bytes = sum(
                m.weight.numel() * m.weight.element_size() for m in model.modules() if isinstance(m, torch.nn.Linear)
            )
            column_major = self.device.type == "cpu" and linear_bytes < COLUMN_MAJOR_MAX_BYTES
        self._weights = ColumnMajorWeights(model) if column_major else None

    # ----- prompts -----

    def prompt_ids(self, prompts) -> list[list[int]]:
        from ponder.models import encode_prompts

        ids = encode_prompts(self.tokenizer, list(prompts), self.chat)
        for i, row in enumerate(ids):
            if not row:
                raise ValueError(f"prompt {i} is empty after tokenization; give every prompt some text")
        return ids

    def tokenize(self, texts) -> list[list[int]]:
        texts = list(texts)
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []

    # ----- generation -----

    @torch.inference_mode()
    def generate(self, prompts: list[Prompt], params: SamplingParams,
                 seeds: list[PromptSeed] | None = None) -> list[list[Sample]]:
        """For each prompt, `params.n` samples (see the module docstring). `seeds`: one seed
        per prompt instead of `params.seed`, prompt i then sampled as if it were alone in a
        call seeded with seeds[i] (a server batching independent requests), or as prompt k of
        a call seeded s for seeds[i] = (s, k)."""
        check_params(params)
        prompt_ids = self.encode(prompts)
        if seeds is not None and len(seeds) != len(prompt_ids):
            raise ValueError(f"got {len(seeds)} seeds for {len(prompt_ids)} prompts; give one seed per prompt")
        seed = params.seed if params.seed is not None else int(torch.randint(0, 2**62, ()).item())
        if seeds is not None:
            keys = [seed_key(s) for s in seeds]
            row_seed = lambda i, j: _row_seed(*keys[i], j)  # noqa: E731
        else:
            row_seed = lambda i, j: _row_seed(seed, i, j)  # noqa: E731
        per_chunk = max(1, self.batch_size // params.n)
        order = sorted(range(len(prompt_ids)), key=lambda i: -len(prompt_ids[i]))
        chunks = [order[i : i + per_chunk] for i in range(0, len(order), per_chunk)]
        if self.progress and len(chunks) > 1:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc="generate", unit="chunk")
        results: list[list[Sample]] = [[] for _ in prompt_ids]
        with self._ready():
            for chunk in chunks:
                samples = self._generate_chunk([prompt_ids[i] for i in chunk], chunk, params, row_seed)
                for i, prompt_samples in zip(chunk, samples):
                    results[i] = prompt_samples
        self.usage.calls += 1
        return results

    def _generate_chunk(self, prompt_ids, prompt_index, params: SamplingParams, row_seed) -> list[list[Sample]]:
        n, sampling = params.n, params.temperature > 0 and params.top_k != 1
        cache, logits, mask, next_pos, shared = prefill(
            self._forward, self.model.config, prompt_ids, n, self.pad_id, self.device, min(params.max_tokens, GROW_BY)
        )
        self.usage.prefill_tokens += sum(len(p) for p in prompt_ids)  # once per prompt, not per sample
        self.usage.cached_tokens += shared * (len(prompt_ids) - 1)  # a shared prefix is computed once

        rows = [_Row(prompt=p, index=j) for p in range(len(prompt_ids)) for j in range(n)]
        for row in rows:
            if params.stop:
                row.detok = IncrementalDetokenizer(self.tokenizer, prompt_ids[row.prompt])
            if sampling:
                seed_ij = row_seed(prompt_index[row.prompt], row.index)
                row.generator = torch.Generator(self.device).manual_seed(seed_ij)
        active = list(range(len(rows)))  # batch position -> row

        for _ in range(params.max_tokens):
            gens = [rows[r].generator for r in active] if sampling else None
            tokens = select_tokens(logits, params.temperature, params.top_k, params.top_p, gens)
            lps = token_logprobs(logits, tokens, params.temperature).tolist() if params.logprobs else None
            done = []
            for j, (r, tok) in enumerate(zip(active, tokens.tolist())):
                row = rows[r]
                row.token_ids.append(tok)
                if lps is not None:
                    row.logprobs.append(lps[j])
                if self._finish(row, tok, params, prompt_ids[row.prompt]):
                    done.append(j)
            if len(done) == len(active):
                break
            if done:  # finished rows leave the batch
                order = torch.tensor(_fill_holes(len(active), done), device=self.device)
                cache.reorder_cache(order)
                mask, next_pos, tokens = mask[order], next_pos[order], tokens[order]
                active = [active[j] for j in order.tolist()]
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
            logits = self._forward(tokens[:, None], mask, next_pos[:, None], cache)
            next_pos = next_pos + 1

        self.usage.generated_tokens += sum(len(row.token_ids) for row in rows)
        return [[row.sample for row in rows[p * n : (p + 1) * n]] for p in range(len(prompt_ids))]

    def _finish(self, row: _Row, tok: int, params: SamplingParams, prompt_ids: list[int]) -> bool:
        """Whether `tok` ends the row - EOS, a stop string or max_tokens, checked in that
        order - recording `row.sample` if so."""
        reason, stop, text = None, None, None
        if tok in self.eos_ids:
            reason = "stop"
        elif row.detok is not None:
            delta = row.detok.push(tok)
            match = find_stop(row.detok.text, len(delta), params.stop) if delta else None
            if match is not None:
                stop, start = match
                reason = "stop"
                text = row.detok.text[: start + len(stop) if params.include_stop_str_in_output else start]
        if reason is None and len(row.token_ids) >= params.max_tokens:
            reason = "length"
        if reason is None:
            return False
        if text is None:
            text = row.detok.text if row.detok is not None else decode_completion(self.tokenizer, prompt_ids, row.token_ids)
        row.sample = Sample(
            text=text,
            token_ids=row.token_ids,
            logprobs=row.logprobs if params.logprobs else None,
            finish_reason=reason,
            num_tokens=len(row.token_ids),
            stop_reason=stop,
        )
        return True

    # ----- teacher-forced scoring -----

    @torch.inference_mode()
    def logprobs(
        self,
        prompts: list[Prompt],
        completions: list[str] | list[list[int]],
        temperature: float = 1.0,
    ) -> list[list[float]]:
        """Per-token log-probabilities of each completion given its prompt, teacher-forced in
        batches, with `generate`'s convention: log_softmax(logits / temperature) (0: raw
        logits). A completion is a string (tokenized without special tokens) or token ids;
        pass a `Sample.token_ids` to score exactly what was generated. No gradients (RL
        trainers recompute these with autograd); the tokens forwarded are added to
        `usage.prefill_tokens`."""
        if len(prompts) != len(completions):
            raise ValueError(f"got {len(prompts)} prompts but {len(completions)} completions; pass one completion per prompt")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = raw logits), got {temperature}")
        prompt_ids = self.encode(prompts)
        comp_ids = [
            self.tokenizer(c, add_special_tokens=False)["input_ids"] if isinstance(c, str) else list(c)
            for c in completions
        ]
        vocab = self.model.get_output_embeddings().weight.shape[0]
        # Longest completion first, so a batch's first row sets how many positions it keeps;
        # empty completions have nothing to score.
        order = sorted((i for i in range(len(prompts)) if comp_ids[i]), key=lambda i: -len(comp_ids[i]))
        results: list[list[float]] = [[] for _ in prompts]
        start = 0
        with self._ready():
            while start < len(order):
                keep = 1 + len(comp_ids[order[start]])
                batch = order[start : start + max(1, min(self.batch_size, LOGITS_BUDGET // (keep * vocab)))]
                start += len(batch)
                ids, mask = left_pad([prompt_ids[i] + comp_ids[i] for i in batch], self.pad_id, self.device)
                logits = self._forward(ids, mask, positions_of(mask), cache=None, keep=keep)  # (rows, keep, vocab)
                self.usage.prefill_tokens += int(mask.sum())
                for b, i in enumerate(batch):
                    c = len(comp_ids[i])
                    # Left padding puts the completion last: its c tokens are predicted by
                    # the logits at the c positions just before each of them.
                    target = torch.tensor(comp_ids[i], dtype=torch.long, device=self.device)
                    results[i] = token_logprobs(logits[b, keep - 1 - c : keep - 1], target, temperature).tolist()
        self.usage.calls += 1
        return results

    # ----- weights -----

    @torch.no_grad()
    def update_weights(self, named_tensors) -> None:
        """Copy tensors into the model's parameters and buffers by name. A tensor that already
        is the model's own (an RL trainer sharing this model) costs nothing."""
        own = dict(self.model.named_parameters())
        own.update(self.model.named_buffers())
        for name, tensor in named_tensors:
            if name not in own:
                if name == "lm_head.weight" and getattr(self.model.config, "tie_word_embeddings", False):
                    continue  # tied to the input embedding, loaded through it
                raise EngineError(f"engine torch: the model has no parameter {name!r}")
            target = own[name]
            if target.data_ptr() != tensor.data_ptr():
                target.copy_(tensor)

    # ----- model plumbing -----

    @contextmanager
    def _ready(self):
        """Eval mode (no dropout) for the call, restoring the caller's mode after, and
        up-to-date weight copies (the model may have been trained since the last call)."""
        was_training = self.model.training
        self.model.eval()
        if self._weights is not None:
            self._weights.refresh()
        try:
            yield
        finally:
            self.model.train(was_training)

    def _forward(self, ids, mask, positions, cache, keep: int = 1) -> torch.Tensor:
        """Float logits of the last `keep` positions: (rows, vocab) when keep is 1, else
        (rows, keep, vocab)."""
        kwargs = {"attention_mask": mask, "position_ids": positions, "use_cache": cache is not None}
        if cache is not None:
            kwargs[self._cache_arg] = cache
        if self._keeps_logits:
            kwargs["logits_to_keep"] = keep
        run = self._weights if self._weights is not None else self.model
        logits = run(input_ids=ids, **kwargs).logits[:, -keep:].float()
        return logits[:, -1] if keep == 1 else logits


def _fill_holes(rows: int, done: list[int]) -> list[int]:
    """The batch positions to keep, in their new order, when positions `done` of `rows`
    finish: the last running rows move into the holes, so the cache copies only them (see
    `GrowingLayer.reorder_cache`) rather than every row after the first hole."""
    keep = rows - len(done)
    finished = set(done)
    order = list(range(keep))
    movers = [j for j in range(keep, rows) if j not in finished]
    for hole, mover in zip(sorted(j for j in done if j < keep), movers):
        order[hole] = mover
    return order


def _eos_ids(model, tokenizer) -> set[int]:
    """Token ids that end a sample: the model's generation config EOS (an int or a list)
    plus the tokenizer's EOS."""
    ids: set[int] = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (gen_eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value is not None:
            ids.update(int(v) for v in value)
    return ids


def _row_seed(seed: int, prompt: int, sample: int) -> int:
    """A well-mixed 63-bit seed for sample `sample` of prompt `prompt` (numpy's SeedSequence
    hashing, so neighbouring triples give unrelated streams)."""
    state = np.random.SeedSequence([seed % 2**63, prompt, sample]).generate_state(1, np.uint64)[0]
    return int(state) >> 1
