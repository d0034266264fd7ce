"""Generation engines behind one contract (base.py), built by one factory (factory.py).

    from ponder.generation import make_engine, SamplingParams
    engine = make_engine("torch", "smollm2")   # or "vllm", or "http://127.0.0.1:8000/v1"
    engine.generate(["What is 2+3?"], SamplingParams(n=4, temperature=0.8, seed=0))

Engine classes are imported by the factory on first use, so code that only needs the
contract types does not pay for importing torch, transformers or vLLM.
"""
from ponder.generation.base import EngineError, Generator, Prompt, Sample, SamplingParams, Usage
from ponder.generation.factory import is_url, make_engine

__all__ = ["EngineError", "Generator", "Prompt", "Sample", "SamplingParams", "Usage", "is_url", "make_engine"]
