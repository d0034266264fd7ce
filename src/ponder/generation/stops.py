"""Incremental detokenization, stop strings and where a sequence ends, one sequence at a time.

A stop string is matched on decoded *text*, not tokens: with a subword tokenizer the string
"\\n\\n" may arrive inside one token, across two, or at the end of a token that also carries
more text. So each new token is decoded into a text delta, and only the tail of the text
where a new match can end is searched.

Decoding a token alone is wrong for many tokenizers (SentencePiece drops the leading space of
a sequence's first piece; a multi-byte character may be split over byte-level tokens), so
`IncrementalDetokenizer` follows vLLM's `detokenize_incrementally`
(vllm/transformers_utils/detokenizer_utils.py): decode a short window of previous tokens with
and without the new one and emit the difference, holding text back while it ends in an
incomplete UTF-8 character. The window starts in the last prompt tokens, so a completion's
first word keeps its leading space exactly as it would in the full text.
"""
from __future__ import annotations

# vLLM's INITIAL_INCREMENTAL_DETOKENIZATION_OFFSET: prompt tokens kept as decoding context.
CONTEXT_TOKENS = 5


class IncrementalDetokenizer:
    """The text of a growing completion, updated one token at a time in O(window) work."""

    def __init__(self, tokenizer, prompt_ids: list[int]):
        self.tokenizer = tokenizer
        self.ids = list(prompt_ids[-CONTEXT_TOKENS:])
        self.prefix_offset = 0  # start of the decoding window
        self.read_offset = len(self.ids)  # tokens before this are already in `text`
        self.text = ""

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        """Append one token; return the text it completes (possibly "" while a multi-byte
        character is still incomplete, or for a special token)."""
        self.ids.append(token_id)
        prefix_text = self._decode(self.ids[self.prefix_offset : self.read_offset])
        new_text = self._decode(self.ids[self.prefix_offset :])
        if len(new_text) <= len(prefix_text) or new_text.endswith("\ufffd"):
            return ""
        delta = new_text[len(prefix_text) :]
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        self.text += delta
        return delta


def decode_completion(tokenizer, prompt_ids: list[int], completion_ids: list[int]) -> str:
    """The whole completion's text in one go, decoded in the same prompt context as
    `IncrementalDetokenizer`, so both give the same string."""
    context = list(prompt_ids[-CONTEXT_TOKENS:])
    prefix = tokenizer.decode(context, skip_special_tokens=True)
    full = tokenizer.decode(context + list(completion_ids), skip_special_tokens=True)
    return full[len(prefix) :]


def find_stop(text: str, delta_len: int, stops: list[str]) -> tuple[str, int] | None:
    """The stop string that first completes within the last `delta_len` characters of
    `text`, as (stop, start index in text), or None.

    Only matches ending in the new delta are considered, since earlier ones were checked on
    earlier calls. Among several, the one that ends first wins (it would have stopped
    generation first had the text arrived a character at a time); on a tie, the longer one."""
    best: tuple[int, int, str] | None = None  # (end, -len, stop)
    old_len = len(text) - delta_len
    for stop in stops:
        start = text.find(stop, max(0, old_len - len(stop) + 1))
        if start < 0:
            continue
        key = (start + len(stop), -len(stop), stop)
        if best is None or key < best:
            best = key
    if best is None:
        return None
    end, _, stop = best
    return stop, end - len(stop)


def eos_ids(model, tokenizer) -> set[int]:
    """Token ids that end a sample: the model's generation config EOS (an int or a list)
    plus the tokenizer's EOS."""
    ids: set[int] = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (gen_eos, tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value is not None:
            ids.update(int(v) for v in value)
    return ids


def sequence_end(tok: int, count: int, eos: set[int], detok: IncrementalDetokenizer | None,
                 params) -> tuple[str, str | None, str | None] | None:
    """Whether `tok`, a sequence's `count`-th generated token, ends it - EOS, a stop string of
    `params.stop` (matched on `detok`'s text, which `tok` is pushed into) or `params.max_tokens`,
    checked in that order: (finish reason, the stop string, the text cut at it) with None for
    what does not apply, or None while the sequence goes on."""
    if tok in eos:
        return "stop", None, None
    if detok is not None:
        delta = detok.push(tok)
        match = find_stop(detok.text, len(delta), params.stop) if delta else None
        if match is not None:
            stop, start = match
            return "stop", stop, detok.text[: start + len(stop) if params.include_stop_str_in_output else start]
    if count >= params.max_tokens:
        return "length", None, None
    return None
