"""GGUF -> Hugging Face folder, once, for engines that load only Hugging Face folders (vLLM).

    folder = hf_folder("smollm2")   # a model directory, a .gguf or an alias -> a directory

transformers dequantises a GGUF on load, but the model it returns still carries the GGUF's
`quantization_config`; saved as it is, a loader such as vLLM's reads that as a quantised
checkpoint. So the conversion drops it, builds a plain model from the config, loads the
dequantised state dict into it and saves that, with the tokenizer (chat template included),
in float32. The folder is cached, keyed by the GGUF's path, size and mtime, so the conversion
(~10 s for SmolLM2-135M) runs once; it is written beside its final name and renamed into
place, so a killed conversion leaves no half-written folder behind.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from ponder.models.load import load_model, resolve_model_path


def cache_root() -> Path:
    """Where converted folders live: $PONDER_CACHE, else $XDG_CACHE_HOME/ponder, else
    ~/.cache/ponder (plus `converted/`)."""
    base = os.environ.get("PONDER_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ponder"
    return Path(base) / "converted"


def hf_folder(name: str, cache: str | Path | None = None) -> Path:
    """A Hugging Face model folder for `name`: a model directory as it is; a `.gguf` (or an
    alias that resolves to one) converted on first use into `cache` (default `cache_root()`)."""
    path = resolve_model_path(name)
    if path.suffix != ".gguf":
        return path
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = Path(cache) if cache is not None else cache_root()
    target = target / f"{path.stem}-{key}"
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        convert_gguf(path, tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished the same conversion first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def convert_gguf(gguf: Path, out: Path) -> None:
    """Write the GGUF model at `gguf` to `out` as a float32 Hugging Face folder (model,
    config, generation config, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM


    model, tokenizer = load_model(str(gguf))
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    # Tied embeddings: `lm_head.weight` is the input embedding, restored by tie_weights.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF {gguf}: state dict does not fit its config (missing {missing}, unexpected {unexpected})")
    plain.tie_weights()
    plain.generation_config = model.generation_config
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
