"""LoRA adapters through `peft` (optional: `pip install ponder[lora]`), imported lazily."""
from __future__ import annotations


def add_lora(model, r: int = 8, alpha: int = 16, dropout: float = 0.0, target_modules: list[str] | None = None):
    """Wrap `model` in a peft LoRA model (Hu et al. 2021) with only the adapters trainable.
    The adapters are injected into `model` itself, so an engine holding `model` samples from
    the adapted weights; `peft_model.disable_adapter()` gives the frozen base as a reference."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ImportError("LoRA needs the `peft` package: pip install 'ponder[lora]' (or pip install peft)") from None
    targets = target_modules or ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, config)
