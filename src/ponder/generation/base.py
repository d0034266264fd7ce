"""The engine contract: what every generation engine offers and every caller may use.

An engine (`Generator`) turns prompts into samples. Engines are built by one factory,
`ponder.generation.make_engine(spec, ...)` (factory.py): `torch` (in this process), `vllm`
(vLLM's offline `LLM`, in this process) or the URL of any OpenAI-compatible server (`vllm
serve`, SGLang, `ponder serve`, a hosted API). Callers hold a `Generator` and call only the
methods below; nothing else of an engine is theirs to touch.

Prompts come in two kinds (`Prompt`):

- a `str` is a *user text*: the engine wraps it in the model's chat template (when the model
  has one) and tokenizes it;
- a `list[int]` is a *model-ready prefix*: token ids fed to the model verbatim and continued.
  Step-level search, annotation rollouts and RL continue partial solutions this way:
  re-templating `prompt + partial` would close the user turn before the partial, and
  re-tokenising generated text can change its ids on BPE models (verl saw PPO diverge from
  exactly that). So a partial solution is carried as ids: `prompt_ids(...)` of the question
  plus the `Sample.token_ids` generated so far (plus `tokenize(...)` of any text a strategy
  inserts, such as s1's "Wait").

Capabilities an engine lacks raise `EngineError` with a message saying what is missing and
where, never a silent fallback (e.g. a hosted API that returns no logprobs, or a server with
no tokenizer endpoint asked to continue token ids).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence, Union

from ponder.seeds import derive

Prompt = Union[str, list[int]]
"""a user text (the engine applies the chat template) or model-ready token ids (verbatim)"""


class EngineError(RuntimeError):
    """An engine cannot do what was asked: a capability it lacks, a server that is down or
    refuses the request, an unknown model name. The message names the engine (and URL)."""


@dataclass
class SamplingParams:
    n: int = 1
    """samples per prompt; they share one prefill of the prompt"""
    temperature: float = 1.0
    """0 means greedy"""
    top_p: float = 1.0
    """nucleus sampling mass (1.0 = off)"""
    top_k: int = 0
    """keep the k most likely tokens (0 = off)"""
    max_tokens: int = 256
    """generated tokens per sample, at most"""
    stop: list[str] = field(default_factory=list)
    """stop strings, e.g. the step delimiter so search can generate one step at a time"""
    include_stop_str_in_output: bool = False
    """keep the matched stop string at the end of `Sample.text` (vLLM semantics)"""
    seed: int | None = None
    """seed for this call; the same seed and inputs give the same samples (on engines that
    honour seeds: torch, vLLM offline or served, ponder serve; a hosted API may not)"""
    logprobs: bool = True
    """return the log-probability of each generated token"""


def check_params(params: SamplingParams) -> None:
    """A ValueError naming the field for sampling parameters no engine can honour."""
    if params.n < 1:
        raise ValueError(f"SamplingParams.n must be >= 1, got {params.n}")
    if params.max_tokens < 1:
        raise ValueError(f"SamplingParams.max_tokens must be >= 1, got {params.max_tokens}")
    if params.temperature < 0:
        raise ValueError(f"SamplingParams.temperature must be >= 0 (0 = greedy), got {params.temperature}")
    if not 0 < params.top_p <= 1:
        raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {params.top_p}")
    if params.top_k < 0:
        raise ValueError(f"SamplingParams.top_k must be >= 0 (0 = off), got {params.top_k}")
    if isinstance(params.stop, str) or any(not isinstance(s, str) or not s for s in params.stop):
        raise ValueError(f"SamplingParams.stop must be a list of non-empty strings, got {params.stop!r}")


@dataclass
class Sample:
    text: str
    """decoded completion (without the stop string unless include_stop_str_in_output)"""
    token_ids: list[int]
    """generated token ids (including the tokens that formed a stop string)"""
    logprobs: list[float] | None
    """log-probability of each generated token under the sampling distribution's model logits"""
    finish_reason: str
    """'stop' (stop string or EOS) or 'length' (max_tokens reached)"""
    num_tokens: int
    """number of generated tokens"""
    stop_reason: str | None = None
    """the stop string that ended the sample, if any"""


@dataclass
class Usage:
    """Cumulative token counts of an engine. `prefill_tokens` counts prompt tokens, once per
    prompt (its n samples share them); `cached_tokens` is the part of them served from a
    prefix cache rather than computed; `generated_tokens` counts sampled tokens. A server
    engine takes these from the server's own `usage` (prompt, cached, completion tokens)."""

    prefill_tokens: int = 0
    generated_tokens: int = 0
    calls: int = 0
    cached_tokens: int = 0

    def __sub__(self, other: "Usage") -> "Usage":
        return Usage(
            self.prefill_tokens - other.prefill_tokens,
            self.generated_tokens - other.generated_tokens,
            self.calls - other.calls,
            self.cached_tokens - other.cached_tokens,
        )

    def copy(self) -> "Usage":
        return Usage(self.prefill_tokens, self.generated_tokens, self.calls, self.cached_tokens)


WEIGHTS_VERSION = "_ponder_weights_version"


def mark_weights_changed(model) -> None:
    """Tell engines built on `model` that its weights changed. An engine that shares a
    trainer's tensors (torch) notices most changes by the tensors' version counters, but a
    fused optimiser step and a write through `p.data` (e.g. `torch.distributed.broadcast`)
    leave them unchanged: trainers call this after every optimiser step, and the engine
    rebuilds its weight copies and forgets its prefix cache."""
    model.__dict__[WEIGHTS_VERSION] = model.__dict__.get(WEIGHTS_VERSION, 0) + 1


def load_named_tensors(model, named_tensors) -> None:
    """Copy tensors into the model's parameters and buffers by name (Hugging Face names); a
    tensor that already is the model's own costs nothing. A tied `lm_head.weight` is loaded
    through the input embedding. Then `mark_weights_changed`: shared tensors may have changed
    without a version bump (a fused optimiser step), so a sync always rebuilds what an engine
    derived from the weights."""
    import torch  # here, not at the top: the engine contract itself loads without torch

    own = dict(model.named_parameters())
    own.update(model.named_buffers())
    with torch.no_grad():
        for name, tensor in named_tensors:
            if name not in own:
                if name == "lm_head.weight" and getattr(model.config, "tie_word_embeddings", False):
                    continue
                raise EngineError(f"engine torch: the model has no parameter {name!r}")
            target = own[name]
            if target.data_ptr() != tensor.data_ptr():
                target.copy_(tensor)
    mark_weights_changed(model)


def weights_version(model) -> int:
    """How many times `mark_weights_changed(model)` was called."""
    return model.__dict__.get(WEIGHTS_VERSION, 0)


PromptSeed = Union[int, tuple[int, int]]
"""a per-prompt seed: `s` samples the prompt as if alone in a call seeded s; `(s, i)` as
prompt i of a call seeded s (so prompts gathered from several calls into one, e.g. search
batched across problems, keep the samples their own calls would have drawn)"""


def seed_key(seed: PromptSeed) -> tuple[int, int]:
    """(call seed, prompt index) of a per-prompt seed: an int s is (s, 0)."""
    if isinstance(seed, tuple):
        s, i = seed
        return int(s), int(i)
    return int(seed), 0


def prompt_seed(seed: int, index: int) -> int:
    """The seed of prompt `index` of a call (or request) seeded `seed` (ponder.seeds)."""
    return derive(seed, "prompt", index)


def sample_seed(seed: int, prompt: int, sample: int) -> int:
    """The seed of sample `sample` of prompt `prompt` of a call seeded `seed`: each row of the
    torch engine draws its noise from a generator seeded with it (ponder.seeds)."""
    return derive(seed, "sample", prompt, sample)


class Generator:
    """The engine contract. Subclasses implement `generate`, `prompt_ids` and `tokenize`;
    `logprobs` and `update_weights` where the engine can (else they raise `EngineError`).
    `usage` accumulates over calls. Engines are context managers (`close()` on exit)."""

    name: str = "engine"
    """what error messages call this engine (e.g. 'torch', 'vllm', the server URL)"""
    usage: Usage

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams,
                 seeds: Sequence[PromptSeed] | None = None) -> list[list[Sample]]:
        """For each prompt (user text or model-ready ids), `params.n` samples. `seeds`: one
        seed per prompt instead of `params.seed`, each prompt then sampled as if it were
        alone in a call with that seed (a server batching independent requests), or, for a
        pair (s, i), as if it were prompt i of a call seeded s (see `PromptSeed`)."""
        raise NotImplementedError

    def prompt_ids(self, prompts: Sequence[str]) -> list[list[int]]:
        """Model-ready token ids of user texts: the chat template applied (when the model has
        one) and tokenized exactly as `generate` would. Continuations append to these."""
        raise NotImplementedError

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of plain texts, no special tokens and no template (text a strategy
        inserts into a continuation, or a completion given as text)."""
        raise NotImplementedError

    def encode(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        """Token ids of each prompt: user texts through `prompt_ids` (one call for all of
        them), ids as they are. Every prompt must have a token."""
        texts = [i for i, p in enumerate(prompts) if isinstance(p, str)]
        out = [None if isinstance(p, str) else [int(t) for t in p] for p in prompts]
        for i, ids in zip(texts, self.prompt_ids([prompts[i] for i in texts])):
            out[i] = ids
        for i, row in enumerate(out):
            if not row:
                raise ValueError(f"prompt {i} has no tokens; give every prompt some text")
        return out

    def logprobs(self, prompts: Sequence[Prompt], completions: Sequence[str | list[int]],
                 temperature: float = 1.0) -> list[list[float]]:
        """Teacher-forced log-probability of each completion token given its prompt, under
        log_softmax(logits / temperature) (0: raw logits) - the convention of sampled
        `Sample.logprobs`, so an RL trainer's ratio is 1 on-policy."""
        raise EngineError(f"engine {self.name} cannot score completions (no teacher-forced logprobs)")

    def update_weights(self, named_tensors: Iterable[tuple[str, "object"]]) -> None:
        """Load new weights (Hugging Face parameter names -> tensors), e.g. the RL trainer's
        after an optimiser step; later samples come from them (prefix cache reset)."""
        raise EngineError(f"engine {self.name} cannot take new weights")

    def close(self) -> None:
        """Release what the engine holds (threads, connections, memory). Idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
