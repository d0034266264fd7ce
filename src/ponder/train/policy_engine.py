"""The engine a trainer samples its own policy with (RL rollouts, Step-DPO pairs, expert
iteration, held-out evaluation during training).

`torch` (and `torch-bf16`, its Linear layers in bf16) samples in this process from the
policy object itself, so it always sees the current weights. Any other engine holds its own copy of the weights: vLLM loads the initial
policy from a Hugging Face folder saved once in the run directory (this also covers
`tiny:<preset>` and GGUF starts), and a server serves whatever it was started with. Either
way the trainer calls `engine.update_weights(policy.named_parameters())` before it samples
after an optimiser step - the weight sync of TRL, verl and OpenRLHF - which costs nothing on
the torch engine (the tensors are already its own).

On a GPU, `vllm` is colocated: the sampler lives in the trainer's process, on the trainer's
GPU (TRL's `vllm_mode="colocate"`), and the two share its memory: vLLM takes the fraction
$PONDER_VLLM_GPU_MEMORY of it (default 0.3; vLLM's own default, 0.9, would leave the trainer
nothing) for its weights and KV cache, the trainer the rest. Splitting them (a vLLM server on
other GPUs) is the server-URL engine.
"""
from __future__ import annotations

import os
from pathlib import Path

from ponder.generation import Generator, is_url, make_engine


def policy_engine(spec: str, model, tokenizer, run_dir: str | Path, batch_size: int | None = None, seed: int = 0,
                  served_model: str | None = None) -> Generator:
    """An engine for `model` (being trained in this process): `spec` is torch, torch-bf16, vllm, or a
    server URL whose served model (`served_model`; None: its only one) starts from the same
    weights and takes new ones (`ponder serve` does)."""
    if spec in ("torch", "torch-bf16"):
        return make_engine(spec, model, tokenizer=tokenizer, batch_size=batch_size)
    if is_url(spec):
        return make_engine(spec, served_model, seed=seed)
    init = Path(run_dir) / "engine_init"
    if not (init / "config.json").exists():
        model.save_pretrained(init)
        tokenizer.save_pretrained(init)
    options = {}
    if spec == "vllm":
        import torch

        if torch.cuda.is_available():  # colocated with the trainer: a share of its GPU
            options["gpu_memory_utilization"] = float(os.environ.get("PONDER_VLLM_GPU_MEMORY", "0.3"))
    return make_engine(spec, str(init), batch_size=batch_size, seed=seed, **options)
