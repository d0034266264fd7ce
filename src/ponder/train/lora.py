"""LoRA adapters (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models") through
`peft`, in every trainer: `sft`, `dpo`, `train-rm`, `rl`, `iterate` (`--lora-r 8`).

    peft = add_lora(model, r=8, alpha=16)     # adapters injected into `model` itself
    ...train `model`: only the adapters (and a reward model's head) have requires_grad...
    save_lora(peft, tokenizer, out, merge=True)

The adapters are injected into the model object the trainer already holds, so the training
loop, the in-process engine (which samples from the adapted weights) and checkpoints need
nothing special. At the end the user chooses (`--lora-merge`, the default, or
`--no-lora-merge`):

- merged: the adapters are folded into the weights (W + B A alpha / r) and `out` is a plain
  Hugging Face model, loadable anywhere;
- beside the base: `out` holds the adapter alone in PEFT's format (`adapter_config.json`,
  `adapter_model.safetensors`, the tokenizer), whose `base_model_name_or_path` names the base
  model (a Hub ID, a folder, or, for a model built from scratch, its weights saved to
  `out/../base`); `ponder.models.load_model` loads such a folder as base + adapter, as
  `PeftModel.from_pretrained` does.

`peft` is optional (`pip install 'ponder[lora]'`), imported only when LoRA is asked for.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ponder.models.hub import is_hub_id

# The linear layers of a Llama/Qwen/Mistral block: attention and MLP (the QLoRA paper's
# finding, Dettmers et al. 2023: adapting all of them matters more than the rank).
DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraOptions:
    """The LoRA fields every training command shares."""

    lora_r: int = 0
    """LoRA rank (0: train every weight; >0 needs peft)"""
    lora_alpha: int = 16
    """LoRA alpha: the adapters' update is scaled by alpha / r"""
    lora_targets: list[str] = field(default_factory=list)
    """module names to adapt (default: q,k,v,o,gate,up,down projections)"""
    lora_merge: bool = True
    """save the model with the adapters merged into its weights; off: the adapter alone, beside the base"""

    def lora(self) -> dict | None:
        """`add_lora`'s arguments, or None without LoRA."""
        if self.lora_r < 0 or self.lora_alpha <= 0:
            raise ValueError(f"lora_r must be >= 0 and lora_alpha > 0, got {self.lora_r} and {self.lora_alpha}")
        if self.lora_r == 0:
            return None
        return {"r": self.lora_r, "alpha": self.lora_alpha, "target_modules": list(self.lora_targets) or None}


def add_lora(model, r: int = 8, alpha: int = 16, dropout: float = 0.0, target_modules: list[str] | None = None,
             task_type: str = "CAUSAL_LM", seed: int | None = None):
    """Wrap `model` in a peft LoRA model with only the adapters trainable. The adapters are
    injected into `model` itself, so an engine holding `model` samples from the adapted
    weights; `peft_model.disable_adapter()` gives the frozen base as a reference.
    `task_type`: CAUSAL_LM for a language model, FEATURE_EXTRACTION for a reward model's body.
    `seed`: seeds the adapters' random initialisation (A; B starts at zero), so a rerun
    starts from the same adapters."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise ImportError("LoRA needs the `peft` package: pip install 'ponder[lora]' (or pip install peft)") from None
    targets = target_modules or DEFAULT_TARGETS
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [t for t in targets if t not in present]
    if missing == targets:
        raise ValueError(f"--lora-targets {','.join(targets)}: the model has no such modules (it has e.g. "
                         f"{', '.join(sorted(present - {''})[:8])})")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=[t for t in targets
                                                                                     if t in present],
                        task_type=task_type)
    if seed is not None:
        import torch

        torch.manual_seed(seed)
    return get_peft_model(model, config)


def save_lora(peft, tokenizer, out: str | Path, merge: bool = True):
    """Save a LoRA-trained causal LM to `out` (see the module docstring); returns the model
    without its LoRA layers (merged into it, or the untouched base)."""
    out = Path(out)
    if merge:
        model = peft.merge_and_unload()
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        return model
    config = peft.peft_config["default"]
    base = config.base_model_name_or_path or ""
    if not base or not (os.path.isdir(base) or is_hub_id(base)):  # built from scratch: keep its weights too
        base = str((out.parent / "base").resolve())
    else:
        base = str(Path(base).resolve()) if os.path.isdir(base) else base
    config.base_model_name_or_path = base
    peft.save_pretrained(out)
    tokenizer.save_pretrained(out)
    model = peft.unload()  # the base again, its weights as they were before training
    if base == str((out.parent / "base").resolve()):
        model.save_pretrained(base)
        tokenizer.save_pretrained(base)
    return model
