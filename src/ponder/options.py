"""Option dataclasses that several configs share, kept free of torch so that the command line
(whose flags are generated from the configs) starts without loading it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DeviceField:
    """Where a command's models run (the commands that only run models: eval, search, ...)."""

    device: str = "auto"
    """where models run: auto (CUDA when present), cpu, cuda, cuda:N, mps"""


@dataclass
class DeviceOptions(DeviceField):
    """Where a trainer runs: the fields every training config shares (TrainConfig, RLConfig,
    the training commands). Under torchrun a bare cuda (or auto on a GPU machine) is each
    rank's own GPU."""

    mixed_precision: str = "no"
    """no, bf16 or fp16: autocast of the forward, fp32 weights and optimiser"""
    gradient_checkpointing: bool = False
    """recompute activations in the backward instead of keeping them (less memory, more compute)"""

    def device_options(self) -> dict:
        """These fields, checked (a bad or missing device fails now, in one line)."""
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        from ponder.models.device import resolve_device  # torch, only when a run starts

        resolve_device(self.device)
        return {"device": self.device, "mixed_precision": self.mixed_precision,
                "gradient_checkpointing": self.gradient_checkpointing}


@dataclass
class RunOptions:
    """Where a command writes: `<runs_dir>/<run>/`. A command redeclares `run` with its own
    default name only; the help text is this one."""

    run: str = "run"
    """run name: outputs go to <runs-dir>/<run>/ (a rerun with the same options resumes)"""
    runs_dir: str = "runs"
    """parent folder of run directories"""


@dataclass
class WorkerOptions:
    """Ray workers sharing a command's work (ponder.parallel)."""

    workers: int = 1
    """Ray workers sharing the work, each with its own engine (1: this process; see ponder.parallel)"""
    ray_address: str | None = None
    """Ray cluster to join (default: $RAY_ADDRESS, else a local Ray started here)"""
