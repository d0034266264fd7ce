"""Where models and tensors live: `--device auto|cpu|cuda|cuda:N|mps`.

    device = resolve_device("auto")        # cuda when present, else mps, else cpu
    model.to(device); batch = to_device(batch, device)
    gen = make_generator(device, seed)     # per-row sampling noise on the right device

Every model a command runs (policy, reference, critic, reward model) and every tensor fed to
it goes to one device; code that builds a tensor next to a model's output builds it on that
output's device. Three places need the device itself:

- random generators: CUDA samples with a `torch.Generator(device="cuda")`; the CPU (and the
  lazy test device below) with a CPU generator;
- batches collated on the CPU move with `to_device` before the forward;
- the lazy device runs a step's graph when told (`step_done`).

The lazy device ("lazy") is torch's lazy-tensor backend over TorchScript: a real second
device that runs on the CPU, where any CPU tensor mixed into its ops raises ("Input tensor
is not a lazy tensor") just as it would fail on CUDA. The tests run trainers, the engine and
search on it to find every tensor that would stay behind on the CPU. It is for tests: it
is accepted only when `PONDER_LAZY_DEVICE=1` is set.
"""
from __future__ import annotations

import os

import torch

LAZY_ENV = "PONDER_LAZY_DEVICE"
_lazy_ready = False


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device for `spec`: auto (CUDA when present, else Apple's MPS, else the CPU),
    cpu, cuda, cuda:N, mps; a ValueError a user can act on for anything else."""
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps") if mps is not None and mps.is_available() else torch.device("cpu")
    if spec == "lazy":
        if os.environ.get(LAZY_ENV) != "1":
            raise ValueError(f"--device lazy is torch's lazy-tensor test device; set {LAZY_ENV}=1 to use it")
        _init_lazy()
        return torch.device("lazy")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ValueError(f"--device {spec!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {spec}: this torch sees no CUDA GPU (torch {torch.__version__}); "
                             "use --device cpu, or install a CUDA build of torch")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {spec}: there are {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {spec}: MPS is not available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {spec!r}: expected auto, cpu, cuda, cuda:N or mps")
    return device


def _init_lazy() -> None:
    global _lazy_ready
    if not _lazy_ready:
        import torch._lazy
        import torch._lazy.ts_backend

        torch._lazy.ts_backend.init()
        _lazy_ready = True


def place(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`model` moved to `device`, its tied weights (the LM head and the input embedding of
    small models) tied again: a move to a device whose tensors cannot share the CPU's
    storage type (the lazy device) makes new parameters one module at a time."""
    model.to(device)
    if hasattr(model, "tie_weights") and getattr(getattr(model, "config", None), "tie_word_embeddings", False):
        model.tie_weights()
    return model


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's parameters."""
    return next(model.parameters()).device


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    """A seeded generator that can draw noise for tensors on `device`. CUDA needs its own;
    the lazy device refuses one ("not an accelerator") and samples with a CPU generator."""
    where = device if device.type in ("cuda", "mps") else torch.device("cpu")
    return torch.Generator(device=where).manual_seed(seed)


def to_device(obj, device: torch.device):
    """`obj` with every tensor in it (through dicts, lists and tuples) on `device`."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def step_done(device: torch.device) -> None:
    """The end of a training step: the lazy device runs the graph it has recorded."""
    if device.type == "lazy":
        import torch._lazy

        torch._lazy.mark_step()


def no_grad(device: torch.device):
    """The cheapest no-gradient context for `device`: inference mode, or plain no_grad on the
    lazy device, whose backend has no inference-mode view kernels."""
    return torch.no_grad() if device.type == "lazy" else torch.inference_mode()
