"""Generation engines behind one `Generator` interface (see base.py).

`TorchGenerator` (torch_engine.py) is imported on first use, so code that only needs the
contract types (`SamplingParams`, `Sample`, ...) does not pay for importing torch and
transformers.
"""
from ponder.generation.base import Generator, Sample, SamplingParams, Usage

__all__ = ["Generator", "Sample", "SamplingParams", "TorchGenerator", "Usage"]


def __getattr__(name: str):
    if name == "TorchGenerator":
        from ponder.generation.torch_engine import TorchGenerator

        return TorchGenerator
    raise AttributeError(f"module 'ponder.generation' has no attribute {name!r}")
