"""Streamed responses: engine tokens as OpenAI chunk objects, for server-sent events.

With `"stream": true` a completions or chat request is answered with `data: {chunk}` lines
as its tokens are sampled, then `data: [DONE]` (OpenAI's streaming format, which vLLM's
server speaks too). Each chunk carries one choice, its `index` the same as in the
non-streamed response (prompt i's j-th sample is choice i * n + j), so the n samples of a
request arrive interleaved and a client sorts them by index:

    chat:         {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
                  ... {"index": 0, "delta": {"content": "3+4"}} ...
                  {"index": 0, "delta": {}, "finish_reason": "stop"}
    completions:  {"object": "text_completion", "choices": [{"index": 0, "text": "3+4", ...}]}

`stream_options: {"include_usage": true}` adds `"usage": null` to every chunk and a last
chunk with no choices and the request's usage.

Stop strings are matched on the decoded text, and a stop string cut from the response must
never have been sent: text that may be the start of a stop string (the longest end of the
text that is a prefix of one) is held back until the next tokens settle it. Each choice is
decoded incrementally in the prompt's context (generation/stops.py, as the engine decodes
it), and when the sample ends, the rest of its final text (cut at the stop) is sent. So the
concatenated chunks equal the non-streamed response's text.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from ponder.generation.base import Sample
from ponder.generation.stops import IncrementalDetokenizer
from ponder.serve.batcher import TokenStream
from ponder.serve.protocol import Request
from ponder.serve.responses import envelope, token_strings, usage


def held_back(text: str, stops: list[str]) -> int:
    """How many characters at the end of `text` could begin one of `stops` (the longest end
    of `text` that is a proper prefix of a stop string), so must not be sent yet."""
    best = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:k]):
                best = k
                break
    return best


@dataclass
class _Choice:
    """One streamed sample: its decoder, and how much of it the client has."""

    index: int
    detok: IncrementalDetokenizer
    sent: int = 0
    """characters of the text sent"""
    ids: list[int] = field(default_factory=list)
    """tokens received so far"""
    lps: list[float | None] = field(default_factory=list)
    """their logprobs"""
    reported: int = 0
    """tokens whose logprobs / ids were sent"""
    offset: int = 0
    """completions logprobs: text offset of the next token"""
    finished: bool = False


class ChunkWriter:
    """The chunks of one streamed request (`kind`: 'text_completion' or 'chat.completion')."""

    def __init__(self, kind: str, model: str, req: Request, tokenizer, include_usage: bool = False):
        self.chat = kind == "chat.completion"
        self.req, self.tokenizer, self.include_usage = req, tokenizer, include_usage
        head = envelope(kind, model)
        if self.chat:
            head["object"] = "chat.completion.chunk"
        self.head = head

    def chunk(self, choice: dict) -> dict:
        out = {**self.head, "choices": [choice]}
        if self.include_usage:
            out["usage"] = None
        return out

    def usage_chunk(self, usage: dict) -> dict:
        return {**self.head, "choices": [], "usage": usage}

    def choice(self, index: int, text: str, ids: list[int], lps: list[float | None] | None, ch: _Choice | None = None,
               finish: Sample | None = None, role: bool = False) -> dict:
        """One choice of a chunk: `text` new text, `ids` / `lps` the tokens it reports."""
        req = self.req
        out: dict = {"index": index}
        if self.chat:
            delta = {"content": text} if text or ids or role else {}
            out["delta"] = {"role": "assistant", **delta} if role else delta
        else:
            out["text"] = text
        out["logprobs"] = None
        if req.logprobs is not None and lps:
            tokens = token_strings(self.tokenizer, ids)
            if self.chat:
                out["logprobs"] = {"content": [{"token": t, "logprob": lp, "bytes": list(t.encode("utf-8")),
                                                "top_logprobs": []} for t, lp in zip(tokens, lps)]}
            else:
                offsets = []
                for t in tokens:
                    offsets.append(ch.offset)
                    ch.offset += len(t)
                out["logprobs"] = {"tokens": tokens, "token_logprobs": list(lps),
                                   "top_logprobs": [None if lp is None else {t: lp} for t, lp in zip(tokens, lps)],
                                   "text_offset": offsets}
        if req.return_token_ids and ids:
            out["token_ids"] = list(ids)
        out["finish_reason"] = finish.finish_reason if finish is not None else None
        out["stop_reason"] = finish.stop_reason if finish is not None else None
        return out

    # ----- a generation -----

    def generation(self, stream: TokenStream, prompt_logprobs: list[list[float]] | None = None) -> Iterator[dict]:
        """The chunks of `stream`'s tokens: an opening chunk per choice (chat: the role;
        completions with echo: the prompt), text as it settles, a finishing chunk per choice,
        then the usage chunk if asked for."""
        req, n = self.req, self.req.params.n
        choices = {}
        for i, ids in enumerate(req.prompts):
            for j in range(n):
                ch = choices[i, j] = _Choice(i * n + j, IncrementalDetokenizer(self.tokenizer, ids))
                if self.chat:
                    yield self.chunk(self.choice(ch.index, "", [], None, role=True))
                elif req.echo:
                    text = req.texts[i] if req.texts[i] is not None else self.tokenizer.decode(ids)
                    lps = [None] + list(prompt_logprobs[i]) if prompt_logprobs is not None else None
                    first = self.choice(ch.index, text, ids if lps else [], lps, ch)
                    first.pop("token_ids", None)  # the prompt's ids are prompt_token_ids
                    yield self.chunk(first)
        stops = req.params.stop
        for tok in stream:
            ch = choices[tok.prompt, tok.sample]
            ch.ids.append(tok.token_id)
            ch.lps.append(tok.logprob)
            if tok.done is not None:
                yield from self._finish(ch, tok.done)
                continue
            ch.detok.push(tok.token_id)
            text = ch.detok.text
            safe = len(text) - held_back(text, stops)
            if safe > ch.sent:
                yield self.chunk(self._report(ch, text[ch.sent : safe]))
                ch.sent = safe
        # Samples the stream did not finish (an engine without a token hook) end here.
        for (i, j), ch in choices.items():
            if not ch.finished:
                yield from self._finish(ch, stream.result.samples[i][j])
        if self.include_usage:
            yield self.usage_chunk(usage(req.prompts, stream.result))

    def _report(self, ch: _Choice, text: str, sample: Sample | None = None) -> dict:
        """A choice with `text` and the tokens received since the last report (the finished
        `sample`'s, once there is one)."""
        ids = (sample.token_ids if sample is not None else ch.ids)[ch.reported :]
        lps = ((sample.logprobs or []) if sample is not None else ch.lps)[ch.reported :]
        choice = self.choice(ch.index, text, ids, lps, ch)
        if self.req.return_token_ids and ch.reported == 0:
            choice["prompt_token_ids"] = list(self.req.prompts[ch.index // self.req.params.n])
        ch.reported += len(ids)
        return choice

    def _finish(self, ch: _Choice, sample: Sample) -> Iterator[dict]:
        ch.finished = True
        rest = sample.text[ch.sent :]
        unreported = len(sample.token_ids) > ch.reported and (self.req.logprobs is not None or self.req.return_token_ids)
        if rest or unreported:
            yield self.chunk(self._report(ch, rest, sample))
            ch.sent = len(sample.text)
        yield self.chunk(self.choice(ch.index, "", [], None, ch, finish=sample))


def search_chunks(kind: str, response: dict, include_usage: bool) -> Iterator[dict]:
    """A search's response (its answer decided) as chunks: the answer at once, a finishing
    chunk carrying the `ponder` search record, and the usage chunk if asked for."""
    chat = kind == "chat.completion"
    head = {k: response[k] for k in ("id", "created", "model")}
    head["object"] = "chat.completion.chunk" if chat else "text_completion"
    extra = {"usage": None} if include_usage else {}
    text = response["choices"][0]["message"]["content"] if chat else response["choices"][0]["text"]
    body = {"delta": {"role": "assistant", "content": text}} if chat else {"text": text}
    yield {**head, "choices": [{"index": 0, **body, "logprobs": None, "finish_reason": None}], **extra}
    end = {"delta": {}} if chat else {"text": ""}
    yield {**head, "choices": [{"index": 0, **end, "logprobs": None, "finish_reason": "stop", "stop_reason": None}],
           "ponder": response["ponder"], **extra}
    if include_usage:
        yield {**head, "choices": [], "usage": response["usage"]}
