"""Data-parallel training across the processes of a `torchrun` launch (gloo on CPU, NCCL on GPU).

`torchrun --nproc_per_node N -m ponder sft ...` starts N copies of a command. accelerate reads
torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT), but on a machine
without an accelerator it starts the gloo process group only when asked for CPU training
(`Accelerator(cpu=True)`); otherwise every copy believes it is alone and trains on the whole
batch. `make_accelerator` asks for it exactly when the command was launched that way, so a
plain `ponder sft` builds the same `Accelerator` as before. On GPUs accelerate starts NCCL
itself. (`accelerate launch --cpu` starts a single process: use torchrun.)

What accelerate does not do for this loop, done here with `torch.distributed`:

- Gradients are summed over processes after each has accumulated its share of the step
  (`sum_gradients`), instead of DDP's average inside backward: DDP needs every process to run
  a backward over the same parameters at every step, but here a process may hold no
  micro-batch of a step, or an empty RL mini-batch, and the shares need not be equal.
- Python objects (RL rows, logged stats, an evaluation's result) are gathered or broadcast.
- `on_main` runs a function on rank 0 only (writing a run's config) and gives every process
  its result, or raises its error everywhere.

Every function is a no-op (or the identity) in a single process, so a run without torchrun
does exactly what it did before.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Iterable

import torch
from ponder.generation.base import mark_weights_changed
from ponder.models.device import resolve_device


def launched() -> bool:
    """Whether this process is one of several started by torchrun (or another launcher that
    sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _cpu_only() -> bool:
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and hasattr(accelerator, "is_available"):
        return not accelerator.is_available()
    return not torch.cuda.is_available()


def train_device(spec: str = "auto") -> torch.device:
    """The device this process trains on: `spec` resolved (models/device.py), and under
    torchrun a bare `cuda` (or auto on a GPU machine) becomes this rank's GPU, cuda:LOCAL_RANK."""
    device = resolve_device(spec)
    if device.type == "cuda" and device.index is None and launched():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def make_accelerator(device: torch.device | None = None, mixed_precision: str = "no", log_with: list | None = None):
    """The training loop's `Accelerator` for a model on `device` (which the loop places
    itself). Training on the CPU under torchrun makes accelerate start the gloo process group
    (on GPUs it starts NCCL). `mixed_precision` (no, bf16, fp16) autocasts the forward. The
    scheduler steps once per optimiser step: accelerate's default steps it once per process,
    which suits a per-process batch of its own, not the shares of one global batch used here.
    `log_with`: accelerate's trackers (train/tracking.py)."""
    from accelerate import Accelerator

    if mixed_precision not in ("no", "bf16", "fp16"):
        raise ValueError(f"mixed_precision must be no, bf16 or fp16, got {mixed_precision!r}")
    on_cpu = _cpu_only() if device is None else device.type in ("cpu", "lazy")
    if device is not None and device.type == "lazy":
        mixed_precision = "no"  # the lazy test device has no autocast
    if not launched():
        # accelerate keeps one state per process and refuses another precision later: a process
        # that trains twice (expert iteration, the demo, tests) may change it between runs
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state()
    return Accelerator(cpu=on_cpu and (launched() or device is not None), device_placement=False,
                       mixed_precision=mixed_precision, step_scheduler_with_optimizer=False, log_with=log_with or None)


def init() -> None:
    """Start the process group now (commands call it before they write their run directory,
    so that rank 0 alone writes it); `make_accelerator` later reuses the same state."""
    if launched():
        from accelerate import PartialState

        PartialState(cpu=_cpu_only())


def _active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    return torch.distributed.get_rank() if _active() else 0


def world_size() -> int:
    return torch.distributed.get_world_size() if _active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if world_size() > 1:
        torch.distributed.barrier()


def share(n: int) -> range:
    """The indices of n items (micro-batches, prompts, rows) this process takes: a contiguous
    block, the first n % world blocks one item longer, as `torch.tensor_split` cuts."""
    world, r = world_size(), rank()
    size, extra = divmod(n, world)
    start = r * size + min(r, extra)
    return range(start, start + size + (1 if r < extra else 0))


def gather_objects(obj: Any) -> list:
    """Every process's `obj`, in rank order (pickled; keep tensors on the CPU)."""
    if world_size() == 1:
        return [obj]
    out: list = [None] * world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's `obj`, on every process."""
    if world_size() == 1:
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn: Callable[[], Any]) -> Any:
    """`fn()` run on rank 0 alone; every process returns its result, or raises its error (as
    the same exception type with the same message, where that type takes a message)."""
    if world_size() == 1:
        return fn()
    result, error = None, None
    if is_main():
        try:
            result = fn()
        except Exception as e:
            error = e
    kind, message, result = broadcast_object(
        (type(error) if error is not None else None, str(error) if error is not None else None, result))
    if error is not None:
        raise error
    if kind is not None:
        try:
            raise kind(message)
        except TypeError:
            raise RuntimeError(message) from None
    return result


def broadcast_parameters(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every process (as DDP does when it wraps a
    model), so that the processes start from the same weights whatever their seeds."""
    if world_size() == 1:
        return

    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            torch.distributed.broadcast(t.data, src=0)
    mark_weights_changed(module)  # writes through .data bump no version counters


def sum_gradients(params: Iterable[torch.nn.Parameter], bucket_elems: int = 1 << 24) -> None:
    """Sum `.grad` over processes, in place. A parameter keeps `grad is None` only when it has
    no gradient in any process, as in one process that ran every micro-batch (AdamW skips
    such a parameter: no momentum, no weight decay). Gradients travel in flat buckets of at
    most `bucket_elems` elements per dtype and device."""
    if world_size() == 1:
        return
    params = [p for p in params if p.requires_grad]
    if not params:
        return
    dev = params[0].device
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=dev)
    torch.distributed.all_reduce(has)  # the number of processes holding a gradient
    live = [p for p, h in zip(params, has.tolist()) if h > 0]
    for p in live:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    groups: dict[tuple, list[torch.nn.Parameter]] = {}
    for p in live:
        groups.setdefault((p.grad.dtype, p.grad.device), []).append(p)
    for group in groups.values():
        bucket: list[torch.nn.Parameter] = []
        size = 0
        for p in group + [None]:
            if p is not None and (size + p.numel() <= bucket_elems or not bucket):
                bucket.append(p)
                size += p.numel()
                continue
            flat = torch.cat([q.grad.reshape(-1) for q in bucket])
            torch.distributed.all_reduce(flat)
            offset = 0
            for q in bucket:
                q.grad.copy_(flat[offset:offset + q.numel()].view_as(q.grad))
                offset += q.numel()
            if p is not None:
                bucket, size = [p], p.numel()
