"""The in-process PyTorch engine: batched sampling from any Hugging Face causal LM.

    gen = TorchGenerator(model, tokenizer)
    samples = gen.generate(["What is 2+3?"], SamplingParams(n=4, temperature=0.8, seed=0))
    gen.usage  # Usage(prefill_tokens=..., generated_tokens=..., calls=1)

How a call runs:

1. Prompts are tokenized (through the chat template when `chat` is on), sorted by length
   (longest first) and queued; the batch holds at most `batch_size` rows (n per prompt; one
   prompt's n rows when n > batch_size; by default, as many as the KV cache of the call's
   longest sequence fits in 1 GiB, 64 to 512: batch_rows.py).
2. Prefill (prefill.py): the prompts that fit are computed once each, their shared prefix
   once for all, and each prompt's cache row is repeated for its n samples. Only the last
   position's logits are computed (`logits_to_keep=1`).
3. Decode: one token per row per step, fed with the grown 2D attention mask and each row's
   own position id. A row that hits EOS, a stop string or `max_tokens` leaves the batch at
   once (the cache, mask and positions are cut down to the running rows), so finished rows
   cost nothing; `model.generate` keeps computing them until the batch's longest row ends.
4. Continuous batching (`continuous=True`, the default): once a quarter of the rows are free
   (`REFILL`), waiting prompts are prefilled and join the running batch (their cache rows
   appended, both right-aligned to the longer length, the padding masked:
   `GrowingLayer.extend`), so the batch stays full instead of thinning out chunk by chunk.
   Leading cache positions that no running row attends to any more are dropped
   (`GrowingLayer.trim`). `continuous=False` decodes in chunks: a chunk's prompts join only
   an empty batch.
   A caller may pass `abandoned` (a server whose clients hang up): prompts it names leave
   the batch at the next step, their samples cut short with finish_reason "abort". A caller
   may pass `on_token` (a server that streams): it is told each row's token as it is sampled.
   A server keeps one call running for all its requests with `more` (asked between steps
   while the batch has room: requests that arrived since join the call) and `on_done` (told
   each prompt's samples as soon as its rows end, so its request is answered at once).
5. Prefix cache across calls (prefix_cache.py, on by default): a finished row's keys and
   values are kept under its token ids, and a later prompt that extends one (the next depth
   of a step-level search, a rollout from a solution's prefix) prefills only its new
   tokens. Cleared whenever the model's parameters change.
6. `torch-bf16` (`matmul_dtype="bfloat16"`): every Linear layer runs in bf16 from a
   prepacked copy of its weight (weight_layout.PackedBF16Linears), the rest in the model's
   dtype - about 1.5x the fp32 engine's tokens/s on a CPU with AMX/AVX512-BF16, not
   bit-equal to fp32 (benchmarks/generation.py --headline counts the differences).

Its speed against `model.generate` and vLLM, and what continuous batching gains, are measured
by benchmarks/generation.py (docs/engines.md has the figures).

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
    load_named_tensors,
    sample_seed,
    seed_key,
    weights_version,
)
from ponder.generation.batch_rows import AUTO_ROWS, auto_rows
from ponder.generation.kv_cache import GROW_BY, fill_holes, growing_cache, join_batches
from ponder.generation.prefill import prefill
from ponder.generation.prefix_cache import PrefixCache
from ponder.generation.scoring import teacher_forced_logprobs
from ponder.generation.sampling import select_tokens, token_logprobs
from ponder.generation.stops import IncrementalDetokenizer, decode_completion, eos_ids, sequence_end
from ponder.generation.weight_layout import ColumnMajorWeights, PackedBF16Linears
from ponder.models import encode_prompts
from ponder.models.device import make_generator, no_grad

# `column_major=None` turns the weight copies on for CPU models whose Linear weights take
# less than this, so the extra copy never surprises a machine with a large model.
COLUMN_MAJOR_MAX_BYTES = 2 * 2**30
# Continuous batching: waiting prompts join the running batch once this share of its rows is
# free (or it is empty). Each join prefills them and copies the batch's cache once, so
# joining for every freed row would cost more than the idle rows it fills.
REFILL = 0.25
# Default memory of the cross-call prefix cache (prefix_cache.py).
PREFIX_CACHE_MB = 256


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
        batch_size: int | None = None,
        chat: bool | None = None,
        progress: bool = False,
        column_major: bool | None = None,
        continuous: bool = True,
        matmul_dtype: str | None = None,
        prefix_cache_mb: float = PREFIX_CACHE_MB,
    ):
        """`batch_size`: rows (prompts x n) decoded together (None: per call, by the KV cache
        its longest sequence needs; see `rows_for`). `chat`: wrap prompts in the
        tokenizer's chat template (None: iff it has one). `progress`: a tqdm bar over prompts.
        `column_major`: run with column-major copies of the Linear weights, 2x faster for
        small batches on CPU, at the cost of a second copy of them in memory (see
        weight_layout.py; None: on CPU when they take under 2 GiB). `continuous`: waiting
        prompts join the running batch as rows free up (continuous batching); False decodes
        in chunks, a chunk's prompts joining only an empty batch. `matmul_dtype`: "bfloat16"
        computes every Linear layer in bf16 from prepacked weight copies (CPU with oneDNN
        bf16 kernels; see weight_layout.PackedBF16Linears), the rest in the model's dtype;
        None: the model's dtype throughout. `prefix_cache_mb`: memory for keys/values of
        finished samples, reused by later prompts that extend them (prefix_cache.py; 0: no
        cache)."""
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if matmul_dtype not in (None, "bfloat16"):
            raise ValueError(f"matmul_dtype must be None or 'bfloat16', got {matmul_dtype!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.chat = bool(getattr(tokenizer, "chat_template", None)) if chat is None else chat
        self.progress = progress
        self.usage = Usage()
        self.eos_ids = eos_ids(model, tokenizer)
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
        if matmul_dtype == "bfloat16":
            if self.device.type != "cpu" or not PackedBF16Linears.supported():
                raise EngineError("engine torch: matmul_dtype='bfloat16' needs a CPU model and oneDNN bf16 kernels "
                                  "(AVX512-BF16 or AMX); this machine has none - leave matmul_dtype unset")
            self._weights = PackedBF16Linears(model, batch_size or AUTO_ROWS[0])
        # Prompts join a running batch only in ponder's own cache (kv_cache.py); models with
        # other layer kinds decode in chunks: a chunk's prompts join only an empty batch.
        self.continuous = continuous
        self._growing = growing_cache(model.config) is not None
        self._joins = continuous and self._growing
        self.prefix_cache = PrefixCache(int(prefix_cache_mb * 2**20)) if prefix_cache_mb > 0 else None
        self._weights_stamp = None
        self._weights_version = weights_version(model)

    @property
    def device(self) -> torch.device:
        """Where the model is now: a trainer may move it after the engine was built."""
        return next(self.model.parameters()).device

    def rows_for(self, longest: int) -> int:
        """Rows decoded together in a call whose longest sequence (prompt + max_tokens) has
        `longest` tokens: `batch_size` if set, else by the KV cache they need (batch_rows.py)."""
        return self.batch_size if self.batch_size is not None else auto_rows(self.model, longest)

    # ----- prompts -----

    def prompt_ids(self, prompts) -> list[list[int]]:
        ids = encode_prompts(self.tokenizer, list(prompts), self.chat)
        for i, row in enumerate(ids):
            if not row:
                raise ValueError(f"prompt {i} is empty after tokenization; give every prompt some text")
        return ids

    def tokenize(self, texts) -> list[list[int]]:
        texts = list(texts)
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []

    # ----- generation -----

    def generate(self, prompts: list[Prompt], params: SamplingParams,
                 seeds: list[PromptSeed] | None = None, abandoned=None, on_token=None, more=None,
                 on_done=None) -> list[list[Sample]]:
        """For each prompt, `params.n` samples (see the module docstring). `seeds`: one seed
        per prompt instead of `params.seed`, prompt i then sampled as if it were alone in a
        call seeded with seeds[i] (a server batching independent requests), or as prompt k of
        a call seeded s for seeds[i] = (s, k). `abandoned`: a callable, asked before every
        decoding step, returning the indices of prompts nobody waits for any more (a server's
        client hung up); their rows leave the batch at once and their samples come back with
        finish_reason "abort" (vLLM's word) and whatever they had generated. `on_token`: a
        callable `(prompt, sample, token_id, logprob, done)` called on this thread for every
        token as soon as it is sampled (logprob None unless `params.logprobs`; `done` the row's
        finished Sample when that token ended it, else None), so a server can stream tokens
        while the batch decodes; it must be quick (hand the token to another thread).
        `more`: a callable `more(rows) -> [(prompt, seed), ...]` asked between decoding steps
        while the batch has room for `rows` more rows (n per prompt): the prompts it returns
        join this call as prompts len(prompts), len(prompts) + 1, ..., each seeded as `seeds`
        are; every prompt's samples then go to `on_done` only, and the call returns [] (a call
        that keeps taking prompts must not keep all their samples). `on_done`: a callable
        `(prompt, samples, cached_tokens)` called as soon as a prompt's n samples are finished,
        with the prompt tokens of it served from cache (its share, by prompt tokens, when it
        was prefilled with others), so a server answers each request as its own rows end."""
        check_params(params)
        prompt_ids = dict(enumerate(self.encode(prompts)))  # prompt index -> token ids
        if seeds is not None and len(seeds) != len(prompt_ids):
            raise ValueError(f"got {len(seeds)} seeds for {len(prompt_ids)} prompts; give one seed per prompt")
        if more is not None and (seeds is None or on_done is None):
            raise ValueError("more: prompts that join a call bring their own seeds and are answered through "
                             "on_done; pass `seeds` and `on_done` too")
        seed = params.seed if params.seed is not None else int(torch.randint(0, 2**62, ()).item())
        if seeds is not None:
            keys = {i: seed_key(s) for i, s in enumerate(seeds)}
            row_seed = lambda i, j: sample_seed(*keys[i], j)  # noqa: E731
        else:
            row_seed = lambda i, j: sample_seed(seed, i, j)  # noqa: E731
        order = sorted(prompt_ids, key=lambda i: -len(prompt_ids[i]))
        results: list[list[Sample]] = [[] for _ in prompt_ids]
        joined = len(prompt_ids)  # the index of the next prompt that joins

        def joining(rows: int) -> list[int]:
            """The indices of the prompts `more` adds to the call, longest first."""
            nonlocal joined
            new = more(rows)
            added = range(joined, joined + len(new))
            joined += len(new)
            for i, ids, (_, s) in zip(added, self.encode([p for p, _ in new]) if new else [], new):
                prompt_ids[i], keys[i] = ids, seed_key(s)
            return sorted(added, key=lambda i: -len(prompt_ids[i]))

        with self._ready():
            for i, samples, cached in self._decode(prompt_ids, order, params, row_seed, abandoned, on_token,
                                                   joining if more is not None else None):
                if more is None:
                    results[i] = samples
                else:  # a call that keeps taking prompts holds nothing of those it has answered
                    del prompt_ids[i], keys[i]
                if on_done is not None:
                    on_done(i, samples, cached)
        self.usage.calls += 1
        return results if more is None else []

    def _decode(self, prompt_ids, queue: list[int], params: SamplingParams, row_seed, abandoned=None, on_token=None,
                joining=None):
        """Continuous batching: yields (prompt index, its n samples, its cached prompt tokens)
        as prompts finish. The prompts of `queue` join the batch in that order, a prompt's n
        rows at once, whenever at least `REFILL` of the batch's rows are free (or the batch is
        empty); rows leave it as they finish. `joining(rows)`, asked before each step while
        the batch has room beyond the queue's rows, returns prompts to queue too. A prompt's
        rows see only their own cache positions (the mask hides the left padding of the
        merged cache), at their own position ids."""
        n, sampling = params.n, params.temperature > 0 and params.top_k != 1
        longest = max((len(prompt_ids[i]) for i in queue), default=0) + params.max_tokens
        per_prompt = max(1, self.rows_for(longest) // n)  # prompts whose n rows fit the batch (1 if n > rows)
        queue = list(queue)
        rows: dict[int, _Row] = {}  # row id -> row; row id = prompt index * n + sample index
        active: list[int] = []  # batch position -> row id
        left = {i: n for i in queue}  # rows of each prompt still running
        cached: dict[int, int] = {}  # prompt -> its prompt tokens served from cache, once prefilled
        cache = logits = mask = next_pos = None
        bar = None
        if self.progress and len(queue) > per_prompt:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(queue), desc="generate", unit="prompt")
        while True:
            room = per_prompt * n - len(active) - len(queue) * n
            if joining is not None and room >= n:
                for i in joining(room):
                    queue.append(i)
                    left[i] = n
            if not queue and not active:
                break
            gone = abandoned() if abandoned is not None else None
            if gone:
                for i in [i for i in queue if i in gone]:  # never started: nothing generated
                    del left[i]
                    yield i, [Sample("", [], [] if params.logprobs else None, "abort", 0) for _ in range(n)], 0
                queue = [i for i in queue if i not in gone]
                leaving = [j for j, r in enumerate(active) if rows[r].prompt in gone]
                for i in {rows[active[j]].prompt for j in leaving}:
                    aborted = [self._abort(rows.pop(i * n + k), params, prompt_ids[i]) for k in range(n)]
                    yield i, aborted, cached.pop(i, 0)
                    del left[i]
                if len(leaving) == len(active):
                    active = []
                elif leaving:
                    active, mask, (next_pos, logits) = self._leave(cache, active, leaving, mask, next_pos, logits)
                if not active and not queue:
                    continue
            free = (per_prompt * n) - len(active)
            if queue and (not active or (self._joins and free >= max(n, REFILL * per_prompt * n))):
                take, queue = queue[: max(1, free // n)], queue[max(1, free // n) :]
                *new, saved = self._admit(prompt_ids, take, params, rows, sampling, row_seed)
                cached.update(zip(take, saved))
                if not active:
                    cache, logits, mask, next_pos = new
                else:
                    cache, logits, mask, next_pos = join_batches((cache, logits, mask, next_pos), new)
                active += [i * n + j for i in take for j in range(n)]
            gens = [rows[r].generator for r in active] if sampling else None
            tokens = select_tokens(logits, params.temperature, params.top_k, params.top_p, gens)
            lps = token_logprobs(logits, tokens, params.temperature).tolist() if params.logprobs else None
            done, finished = [], []
            for j, (r, tok) in enumerate(zip(active, tokens.tolist())):
                row = rows[r]
                row.token_ids.append(tok)
                if lps is not None:
                    row.logprobs.append(lps[j])
                ended = self._finish(row, tok, params, prompt_ids[row.prompt])
                if on_token is not None:
                    on_token(row.prompt, row.index, tok, lps[j] if lps is not None else None, row.sample)
                if ended:
                    done.append(j)
                    finished.append((j, prompt_ids[row.prompt] + row.token_ids[:-1]))
                    self.usage.generated_tokens += len(row.token_ids)
                    left[row.prompt] -= 1
                    if not left[row.prompt]:
                        del left[row.prompt]
                        if bar is not None:
                            bar.update()
                        samples = [rows.pop(row.prompt * n + k).sample for k in range(n)]
                        yield row.prompt, samples, cached.pop(row.prompt, 0)
            if finished and self.prefix_cache is not None and self._growing:
                self._remember(cache, mask, finished)
            if len(done) == len(active):
                active = []
                continue
            if done:  # finished rows leave the batch
                active, mask, (next_pos, tokens) = self._leave(cache, active, done, mask, next_pos, tokens)
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=1)
            logits = self._forward(tokens[:, None], mask, next_pos[:, None], cache)
            next_pos = next_pos + 1
        if bar is not None:
            bar.close()

    def _leave(self, cache, active: list[int], leaving: list[int], mask, *per_row):
        """The batch without the rows at positions `leaving`: (active, mask, per-row tensors),
        the cache cut down in place."""
        keep = torch.tensor(fill_holes(len(active), leaving), device=self.device)
        cache.reorder_cache(keep)
        mask, per_row = mask[keep], [t[keep] for t in per_row]
        active = [active[j] for j in keep.tolist()]
        dead = int(mask.any(0).int().argmax()) if self._growing else 0
        if dead:  # leading positions no running row attends to any more
            mask = mask[:, dead:]
            for layer in cache.layers:
                layer.trim(dead)
        return active, mask, per_row

    def _abort(self, row: _Row, params: SamplingParams, prompt_ids: list[int]) -> Sample:
        """A row's sample cut short because its caller left (or the row it already finished)."""
        if row.sample is not None:
            return row.sample
        self.usage.generated_tokens += len(row.token_ids)
        return Sample(text=decode_completion(self.tokenizer, prompt_ids, row.token_ids), token_ids=row.token_ids,
                      logprobs=row.logprobs if params.logprobs else None, finish_reason="abort",
                      num_tokens=len(row.token_ids))

    def _admit(self, prompt_ids, take: list[int], params: SamplingParams, rows: dict, sampling: bool, row_seed):
        """Prefill prompts `take` (prefill.py) and make their rows: (cache, logits, mask,
        next_pos) of n rows per prompt, in `take` order, and each prompt's cached tokens (the
        prefill's savings shared by prompt tokens, the remainder to the first)."""
        n = params.n
        ids = [prompt_ids[i] for i in take]
        spare = min(params.max_tokens, GROW_BY)
        hits = [self.prefix_cache.lookup(p) for p in ids] if self.prefix_cache is not None and self._growing else None
        cache, logits, mask, next_pos, computed = prefill(self._forward, self.model.config, ids, n, self.pad_id,
                                                          self.device, spare, hits)
        total = sum(len(p) for p in ids)
        self.usage.prefill_tokens += total  # once per prompt, not per sample
        self.usage.cached_tokens += total - computed  # a shared prefix once, cache hits not at all
        saved = [(total - computed) * len(p) // total for p in ids]
        saved[0] += total - computed - sum(saved)
        for i in take:
            for j in range(n):
                row = rows[i * n + j] = _Row(prompt=i, index=j)
                if params.stop:
                    row.detok = IncrementalDetokenizer(self.tokenizer, prompt_ids[i])
                if sampling:
                    row.generator = make_generator(self.device, row_seed(i, j))
        return cache, logits, mask, next_pos, saved

    def _remember(self, cache, mask: torch.Tensor, finished: list[tuple[int, list[int]]]) -> None:
        """Store finished rows' keys/values (every token fed: prompt and all generated but
        the last) in the prefix cache, for later calls whose prompts extend them."""
        for j, ids in finished:
            real = mask[j].bool()
            if int(real.sum()) != len(ids):  # not laid out as expected: store nothing rather than wrong keys
                continue
            self.prefix_cache.insert(ids, [layer.keys[j][:, real] for layer in cache.layers],
                                     [layer.values[j][:, real] for layer in cache.layers])

    def _finish(self, row: _Row, tok: int, params: SamplingParams, prompt_ids: list[int]) -> bool:
        """Whether `tok` ends the row - EOS, a stop string or max_tokens, checked in that
        order - recording `row.sample` if so."""
        end = sequence_end(tok, len(row.token_ids), self.eos_ids, row.detok, params)
        if end is None:
            return False
        reason, stop, text = end
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

    def logprobs(self, prompts: list[Prompt], completions: list[str] | list[list[int]],
                 temperature: float = 1.0) -> list[list[float]]:
        """Per-token log-probabilities of each completion given its prompt, teacher-forced in
        batches, with `generate`'s convention: log_softmax(logits / temperature) (0: raw
        logits). A completion is a string (tokenized without special tokens) or token ids;
        pass a `Sample.token_ids` to score exactly what was generated. No gradients (RL
        trainers recompute these with autograd); the tokens forwarded are added to
        `usage.prefill_tokens`."""
        return teacher_forced_logprobs(self, prompts, completions, temperature)

    # ----- weights -----

    def update_weights(self, named_tensors) -> None:
        """Copy tensors into the model by name (`load_named_tensors`); free for a tensor that
        already is the model's own (an RL trainer sharing this model)."""
        load_named_tensors(self.model, named_tensors)

    # ----- model plumbing -----

    @contextmanager
    def _ready(self):
        """Eval mode (no dropout) for the call, restoring the caller's mode after, and
        up-to-date weight copies (the model may have been trained since the last call)."""
        was_training = self.model.training
        self.model.eval()
        if self._weights is not None and self.device.type != "cpu":
            self._weights = None  # the CPU weight copies are of no use once the model moved off the CPU
        version = weights_version(self.model)
        with no_grad(self.device):
            if self._weights is not None:
                if version != self._weights_version:  # changed where version counters cannot tell
                    self._weights.invalidate()
                self._weights.refresh()
            if self.prefix_cache is not None:  # cached keys/values hold only for the weights that made them
                stamp = [version] + [(p.data_ptr(), p._version) for p in self.model.parameters()]
                if stamp != self._weights_stamp:
                    self.prefix_cache.clear()
                    self._weights_stamp = stamp
            self._weights_version = version
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
