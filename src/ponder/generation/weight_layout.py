"""Column-major copies of a model's Linear weights, for fast small-batch matmuls on CPU.

`nn.Linear` computes x @ W.T with W stored (out, in) row-major, which MKL's sgemm runs as a
transposed-B product. For the row counts of decoding (16-48 rows, as rows finish and leave
the batch) that path costs about as much as 64 rows, while with W stored column-major, i.e. as
`W.t().contiguous().t()` (the same values; x @ W.T then becomes a plain product), a small batch
costs what its rows cost. The measured gain is in docs/engines.md.

The engine does not touch the caller's model: it keeps these copies (one more copy of the
Linear weights in memory) and passes them to the model per call with
`torch.func.functional_call`. A copy is rebuilt when its parameter changes - an optimizer
step or `load_state_dict` bumps the tensor's version counter, assigning `.data` changes its
storage - so an RL loop that trains the model between `generate` calls samples from the
current weights.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import partial

import torch
from torch import nn
from torch.func import functional_call


class ColumnMajorWeights:
    """Runs `model(**kwargs)` with every 2-D `nn.Linear` weight swapped for a column-major copy."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.linears = {f"{name}.weight": m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
        self._copies: dict[str, torch.Tensor] = {}
        self._stamps: dict[str, tuple[int, int]] = {}

    def invalidate(self) -> None:
        """Forget every copy's stamp: the next `refresh` rebuilds them all."""
        self._stamps.clear()

    def refresh(self) -> None:
        """Rebuild the copies whose source weight changed since they were made."""
        for name, module in _changed(self.linears, self._stamps):
            with torch.no_grad():
                self._copies[name] = module.weight.detach().t().contiguous().t()

    def __call__(self, **kwargs):
        # tie_weights=False: a tied lm_head gets the copy while the embedding lookup keeps
        # the row-major original (gathering rows from a column-major table is slow).
        return functional_call(self.model, self._copies, args=(), kwargs=kwargs, tie_weights=False, strict=False)


class PackedBF16Linears:
    """Runs `model(**kwargs)` with every `nn.Linear` computed in bfloat16 from a prepacked
    copy of its weight, the activations around it staying in the model's dtype.

    On CPUs with AVX512-BF16 / AMX a bf16 matmul in oneDNN's blocked weight layout is several
    times faster than fp32 in any layout (docs/engines.md has the measurement).
    What changes: the matmul inputs are rounded to bf16 (8 bits of mantissa), so greedy text
    departs from fp32's after some tokens - benchmarks/generation.py counts how often, and the
    accuracy effect on a task. The KV cache, norms, attention and logits stay in the model's
    dtype. This is the weight prepacking torch.compile's inductor does with freezing on CPU
    (and what vLLM's CPU backend runs), done here without a compiled graph.

    The copies are rebuilt when their parameter changes (version counter or storage, as with
    `ColumnMajorWeights`), so a trainer's updates reach the next call. Each Linear's `forward`
    is swapped for the packed one only inside `active()` and restored after.
    """

    def __init__(self, model: nn.Module, batch_size: int = 64):
        self.model = model
        self.batch_size = batch_size
        self.linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
        self._packed: dict[str, tuple] = {}
        self._stamps: dict[str, tuple[int, int]] = {}

    @staticmethod
    def supported() -> bool:
        """oneDNN with bf16 kernels on this CPU (else bf16 matmuls would be emulated, slowly)."""
        try:
            return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False

    def invalidate(self) -> None:
        """Forget every copy's stamp: the next `refresh` rebuilds them all."""
        self._stamps.clear()

    def refresh(self) -> None:
        for name, module in _changed(self.linears, self._stamps):
            with torch.no_grad():
                packed = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach().to(torch.bfloat16),
                                                                 self.batch_size)
                bias = module.bias.detach().to(torch.bfloat16) if module.bias is not None else None
            self._packed[name] = (packed, bias)

    def __call__(self, **kwargs):
        with self.active():
            return self.model(**kwargs)

    @contextmanager
    def active(self):
        own = {name: m.__dict__.get("forward") for name, m in self.linears.items()}  # e.g. a wrapper's
        for name, module in self.linears.items():
            module.forward = partial(_packed_linear, *self._packed[name])
        try:
            yield
        finally:
            for name, module in self.linears.items():
                if own[name] is None:
                    del module.forward  # back to the class's forward
                else:
                    module.forward = own[name]


def _changed(linears: dict[str, nn.Linear], stamps: dict[str, tuple[int, int]]):
    """The (name, module) pairs whose weight changed since its stamp (an optimizer step or
    `load_state_dict` bumps the version counter; assigning `.data` changes the storage),
    stamping them anew."""
    for name, module in linears.items():
        stamp = (module.weight.data_ptr(), module.weight._version)
        if stamps.get(name) != stamp:
            stamps[name] = stamp
            yield name, module


def _packed_linear(packed, bias, x: torch.Tensor) -> torch.Tensor:
    out = torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), packed, bias, "none", [], "")
    return out.to(x.dtype)
