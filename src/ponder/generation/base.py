"""The generation contract shared by every engine (in-process torch, vLLM, HTTP).

`Generator.generate(prompts, params) -> list[list[Sample]]`: for each prompt, `params.n`
samples. Every engine counts what it prefilled and generated in `usage`, so every search
strategy and trainer can report the compute it spent.
"""
from __future__ import annotations

from dataclasses import dataclass, field


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
    """seed for this call; the same seed and inputs give the same samples"""
    logprobs: bool = True
    """return the log-probability of each generated token"""


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
    """Cumulative token counts of an engine. `prefill_tokens` counts prompt tokens pushed
    through the model once (shared by the n samples of a prompt); `generated_tokens` counts
    sampled tokens."""

    prefill_tokens: int = 0
    generated_tokens: int = 0
    calls: int = 0

    def __sub__(self, other: "Usage") -> "Usage":
        return Usage(
            self.prefill_tokens - other.prefill_tokens,
            self.generated_tokens - other.generated_tokens,
            self.calls - other.calls,
        )

    def copy(self) -> "Usage":
        return Usage(self.prefill_tokens, self.generated_tokens, self.calls)


class Generator:
    """Engines implement `generate`; `usage` accumulates over calls."""

    usage: Usage

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Sample]]:
        raise NotImplementedError


def model_text(generator: Generator, text: str) -> str:
    """`text` as the model reads it: the engine's chat template applied when it has one
    (`format`), else unchanged. Continuations append to this string, never to `text`:
    formatting `prompt + partial` would close the user turn after the partial."""
    fmt = getattr(generator, "format", None)
    return fmt(text) if fmt is not None else text


def generate_verbatim(generator: Generator, texts: list[str], params: SamplingParams) -> list[list[Sample]]:
    """`generate` on model-ready texts (from `model_text`, plus any continuation): engines
    that format prompts themselves are told not to."""
    if hasattr(generator, "format"):
        return generator.generate(texts, params, formatted=True)
    return generator.generate(texts, params)
