"""Character-level tokenizer for tiny models trained from scratch.

Built with `tokenizers` (one token per character, no normaliser, no whitespace stripping)
and wrapped as a `PreTrainedTokenizerFast`, so it saves and reloads with `save_pretrained` /
`AutoTokenizer.from_pretrained` like any Hugging Face tokenizer, spaces and newlines intact.
"""
from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
# Printable ASCII covers the procedural tasks and GSM8K-style text; unknown chars map to <unk>.
DEFAULT_CHARS = string.printable.replace("\x0b", "").replace("\x0c", "").replace("\r", "")


def build_char_tokenizer(chars: str = DEFAULT_CHARS) -> PreTrainedTokenizerFast:
    """A tokenizer with one id per character of `chars` plus <pad> <s> </s> <unk>."""
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in dict.fromkeys(chars):  # keep order, drop duplicates
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # Split into single characters, keeping every one of them (whitespace included).
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # "." misses newlines
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
    )
    fast.padding_side = "left"
    return fast
