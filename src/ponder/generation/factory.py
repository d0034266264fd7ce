"""`make_engine`: the one place an engine is constructed.

    engine = make_engine("torch", "runs/demo/sft/model")                # in this process
    engine = make_engine("torch", model, tokenizer=tokenizer)            # a model in memory (RL)
    engine = make_engine("torch-bf16", "smollm2")                        # Linear layers in bf16 (CPU)
    engine = make_engine("vllm", "smollm2")                              # vLLM's offline LLM
    engine = make_engine("http://127.0.0.1:8000/v1", "smollm2")          # any OpenAI-compatible server

`spec` is `torch` (default), `torch-bf16` (the same engine computing its Linear layers in
bfloat16 from prepacked weights: faster on CPUs with AVX512-BF16/AMX, not bit-equal to
fp32), `vllm`, or an `http(s)://host:port/v1` URL. `model` is a model
directory, a `.gguf`, an alias (`smollm2`) or a run's model folder for the in-process
engines; for a server it is the served model's name (None: the server's only model). Every
engine honours the contract in base.py; heavy engines are imported only when asked for.
"""
from __future__ import annotations

import os

from ponder.generation.base import EngineError, Generator

ENGINES = ("torch", "torch-bf16", "vllm", "http(s)://host:port/v1")


def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def make_engine(
    spec: str = "torch",
    model=None,
    *,
    tokenizer=None,
    batch_size: int | None = None,
    progress: bool = False,
    seed: int = 0,
    api_key: str | None = None,
    max_concurrency: int | None = None,
    timeout: float = 600.0,
    device: str | None = None,
    **options,
) -> Generator:
    """An engine for `model` (see the module docstring).

    `batch_size`, `progress`: rows decoded together (None: by the KV cache a call needs,
    see TorchGenerator.rows_for) and a progress bar (torch). `device`: where
    the torch engine's model runs (auto, cpu, cuda, cuda:N; None: where it is, a loaded model,
    or the CPU). `seed`: seeds
    the engine's own generator, used by calls without a seed (offline vLLM). `api_key` (default:
    $OPENAI_API_KEY), `max_concurrency` (requests in flight; default $PONDER_MAX_CONCURRENCY
    or 16) and `timeout` (seconds per request): server engines. Other `options` go to the engine class (e.g. `chat`,
    `column_major`, `continuous` for torch; `gpu_memory_utilization` for vLLM)."""
    spec = (spec or "torch").strip()
    if spec in ("torch", "torch-bf16"):
        from ponder.generation.torch_engine import TorchGenerator

        if spec == "torch-bf16":
            options["matmul_dtype"] = "bfloat16"
        if model is None:
            raise ValueError(f"engine {spec} needs a model (a path, an alias, or a loaded model with its tokenizer)")
        if isinstance(model, str):
            from ponder.models import load_model

            model, tokenizer = load_model(model, device=device)
        elif tokenizer is None:
            raise ValueError(f"engine {spec}: a loaded model needs its tokenizer (tokenizer=...)")
        elif device is not None:
            from ponder.models.device import place, resolve_device

            place(model, resolve_device(device))
        return TorchGenerator(model, tokenizer, batch_size=batch_size, progress=progress, **options)
    if spec == "vllm":
        from ponder.generation.vllm_engine import VLLMGenerator

        if model is None:
            raise ValueError("engine vllm needs a model (a path or an alias)")
        return VLLMGenerator(model, seed=seed, **options)
    if is_url(spec):
        from ponder.generation.http_engine import HTTPGenerator

        if model is not None and not isinstance(model, str):
            raise ValueError(f"engine {spec}: a server serves its own weights; give the served model's name, "
                             "not a loaded model")
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if max_concurrency is None:
            max_concurrency = int(os.environ.get("PONDER_MAX_CONCURRENCY", "16"))
        # no model named (None or ""): the server's only model
        return HTTPGenerator(spec, model or None, api_key=api_key, max_concurrency=max_concurrency, timeout=timeout,
                             progress=progress, **options)
    raise EngineError(f"unknown engine {spec!r}: expected one of {', '.join(ENGINES)}")
