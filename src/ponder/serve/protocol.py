"""Request bodies of the OpenAI-compatible API, parsed and checked into engine inputs.

`ponder serve` speaks vLLM's dialect of the OpenAI API, so one HTTP client drives both
`vllm serve` and `ponder serve`. Every field a request may carry is checked here, before
anything reaches the engine, and a bad one is answered with an OpenAI-style error object
naming the field and what was expected:

    {"error": {"message": "'temperature' must be a number >= 0 (0 = greedy), got -1",
               "type": "invalid_request_error", "param": "temperature", "code": null}}

Prompts leave this module as model-ready token ids, so the engine never re-templates or
re-tokenizes them: a completions text prompt is tokenized as is (the tokenizer's special
tokens added, as vLLM does), a chat request goes through the tokenizer's chat template
(`add_generation_prompt=True`, no extra special tokens: the template spells its own).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ponder.generation.base import SamplingParams

# OpenAI's default for /v1/completions; chat requests default to the room left in the context.
COMPLETIONS_MAX_TOKENS = 16

# Sampling fields that ponder's engine does not implement, with their neutral values: a
# request that sets one to anything else is refused rather than silently sampled without it.
UNSUPPORTED = {
    "presence_penalty": 0, "frequency_penalty": 0, "repetition_penalty": 1, "min_p": 0, "min_tokens": 0,
    "logit_bias": None, "stop_token_ids": None, "suffix": None, "tools": None,
    "response_format": None, "guided_json": None, "guided_regex": None, "guided_choice": None,
}


class APIError(Exception):
    """A request the server refuses, with its HTTP status and OpenAI-style error fields."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad(param: str, message: str) -> APIError:
    """A 400 about one field."""
    return APIError(400, message, param=param)


# ----- typed field access -----

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def get_int(body: dict, name: str, default=None, minimum: int | None = None):
    v = body.get(name)
    if v is None:
        return default
    if not _is_int(v) or (minimum is not None and v < minimum):
        bound = f" >= {minimum}" if minimum is not None else ""
        raise bad(name, f"'{name}' must be an integer{bound}, got {v!r}")
    return v


def get_number(body: dict, name: str, default=None):
    v = body.get(name)
    if v is None:
        return default
    if not _is_number(v) or not math.isfinite(v):  # json.loads accepts NaN and Infinity
        raise bad(name, f"'{name}' must be a finite number, got {v!r}")
    return float(v)


def get_bool(body: dict, name: str, default: bool = False) -> bool:
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise bad(name, f"'{name}' must be true or false, got {v!r}")
    return v


def check_model(body: dict, served: str) -> None:
    """`model` may be omitted; when given it must be the served name (404 otherwise)."""
    name = body.get("model")
    if name is not None and name != served:
        raise APIError(404, f"The model `{name}` does not exist. This server serves `{served}`.",
                       param="model", code="model_not_found")


# ----- sampling -----

@dataclass
class Request:
    """A generation request, checked: prompts as token ids and the engine's params."""

    prompts: list[list[int]]
    """model-ready token ids, one list per prompt"""
    texts: list[str | None]
    """each prompt's text as sent (None for a token-id prompt), for the search extension"""
    params: SamplingParams
    """engine params; `seed` left None: the request seed travels apart (see `seed`)"""
    seed: int | None
    """the request's seed; the batcher derives each prompt's seed from it"""
    logprobs: int | None
    """None: no logprobs; 0: the sampled tokens' logprobs"""
    echo: bool
    """completions: prepend the prompt (and its teacher-forced logprobs) to each choice"""
    return_token_ids: bool
    extension: dict | None
    """the `ponder` test-time search extension, unparsed (see extension.py)"""
    stream: bool = False
    """answer with server-sent events as tokens are sampled (streaming.py)"""
    include_usage: bool = False
    """streaming: end with a chunk holding the usage (`stream_options.include_usage`)"""


def sampling(body: dict, max_tokens: int) -> tuple[SamplingParams, int | None]:
    """The engine's SamplingParams (seed apart) from the OpenAI/vLLM sampling fields."""
    for name, neutral in UNSUPPORTED.items():
        v = body.get(name)
        if v is not None and v != neutral and v not in ({}, []):
            raise bad(name, f"'{name}' is not supported by ponder serve (got {_short(v)}); leave it out")
    n = get_int(body, "n", 1, minimum=1)
    if body.get("best_of") not in (None, n):
        raise bad("best_of", f"'best_of' is not supported by ponder serve beyond best_of = n; got {body['best_of']!r}")
    temperature = get_number(body, "temperature", 1.0)
    if temperature < 0:
        raise bad("temperature", f"'temperature' must be a number >= 0 (0 = greedy), got {body['temperature']!r}")
    top_p = get_number(body, "top_p", 1.0)
    if not 0 < top_p <= 1:
        raise bad("top_p", f"'top_p' must be a number in (0, 1], got {body['top_p']!r}")
    top_k = get_int(body, "top_k", 0)
    if top_k < -1:
        raise bad("top_k", f"'top_k' must be an integer >= 1, or -1 or 0 for no top-k, got {top_k!r}")
    stop = body.get("stop")
    stop = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise bad("stop", f"'stop' must be a non-empty string or a list of them, got {body['stop']!r}")
    seed = get_int(body, "seed")
    params = SamplingParams(n=n, temperature=temperature, top_p=top_p, top_k=max(top_k, 0), max_tokens=max_tokens,
                            stop=stop, include_stop_str_in_output=get_bool(body, "include_stop_str_in_output"),
                            seed=None, logprobs=True)
    return params, seed


def streaming(body: dict) -> tuple[bool, bool]:
    """(`stream`, `stream_options.include_usage`), checked."""
    stream = get_bool(body, "stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not stream:
        raise bad("stream_options", "'stream_options' is only allowed with stream=true")
    if not isinstance(options, dict) or set(options) - {"include_usage", "continuous_usage_stats"}:
        raise bad("stream_options", "'stream_options' must be an object like {\"include_usage\": true}, got "
                                    f"{_short(options)}")
    if options.get("continuous_usage_stats"):
        raise bad("stream_options", "'stream_options.continuous_usage_stats' is not supported by ponder serve; "
                                    "use include_usage for one usage chunk at the end")
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        raise bad("stream_options", f"'stream_options.include_usage' must be true or false, got {include!r}")
    return stream, include


def requested_max_tokens(body: dict) -> int | None:
    """`max_tokens` (or OpenAI's newer `max_completion_tokens`), checked, or None if absent."""
    for name in ("max_completion_tokens", "max_tokens"):
        v = get_int(body, name, minimum=1)
        if v is not None:
            return v
    return None


def check_length(prompts: list[list[int]], max_tokens: int | None, max_len: int, field: str) -> int:
    """The max_tokens to use (None: the room left after the longest prompt), or a 400 when a
    prompt does not fit the model's context (vLLM's rule: prompt + max_tokens <= max_len)."""
    longest = max(len(p) for p in prompts)
    if longest >= max_len:
        raise bad(field, f"'{field}': a prompt has {longest} tokens, but this model's maximum context length is "
                         f"{max_len} tokens (prompt plus at least one generated token)")
    if max_tokens is None:
        return max_len - longest
    if longest + max_tokens > max_len:
        raise bad("max_tokens", f"'max_tokens': this model's maximum context length is {max_len} tokens, but "
                                f"{longest + max_tokens} were requested ({longest} in the prompt, {max_tokens} in "
                                "the completion); reduce the prompt or max_tokens")
    return max_tokens


def check_ids(ids, vocab: int, field: str) -> list[int]:
    if not isinstance(ids, list) or not ids or not all(_is_int(t) and 0 <= t < vocab for t in ids):
        raise bad(field, f"'{field}' token ids must be a non-empty list of integers in [0, {vocab}), got {_short(ids)}")
    return ids


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


# ----- /v1/completions -----

def completion_prompts(body: dict, tokenizer, vocab: int) -> tuple[list[list[int]], list[str | None]]:
    """`prompt` as a str, list[str], list[int] or list[list[int]] -> (token ids, texts)."""
    p = body.get("prompt")
    if isinstance(p, str):
        p = [p]
    elif isinstance(p, list) and p and all(_is_int(t) for t in p):
        p = [p]
    if not isinstance(p, list) or not p:
        raise bad("prompt", "'prompt' must be a string, a list of strings, a list of token ids or a list of lists "
                            f"of token ids, got {_short(body.get('prompt'))}")
    ids, texts = [], []
    for i, item in enumerate(p):
        if isinstance(item, str):
            row = tokenizer(item, add_special_tokens=True)["input_ids"]
            if not row:
                raise bad("prompt", f"'prompt' {i} is empty after tokenization; give every prompt some text")
            ids.append(row)
            texts.append(item)
        else:
            ids.append(check_ids(item, vocab, "prompt"))
            texts.append(None)
    return ids, texts


def parse_completion(body: dict, tokenizer, vocab: int, max_len: int) -> Request:
    prompts, texts = completion_prompts(body, tokenizer, vocab)
    max_tokens = check_length(prompts, requested_max_tokens(body) or COMPLETIONS_MAX_TOKENS, max_len, "prompt")
    params, seed = sampling(body, max_tokens)
    logprobs = get_int(body, "logprobs", minimum=0)
    if logprobs:
        raise bad("logprobs", f"'logprobs': ponder serve returns the sampled tokens' logprobs only, not the top "
                              f"{logprobs} alternatives; send logprobs=0")
    return Request(prompts, texts, params, seed, logprobs, get_bool(body, "echo"), get_bool(body, "return_token_ids"),
                   _extension(body), *streaming(body))


# ----- /v1/chat/completions -----

def messages_of(body: dict) -> list[dict]:
    """`messages`: role/content dicts; content a string or a list of text parts."""
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise bad("messages", f"'messages' must be a non-empty list of {{role, content}} objects, got {_short(msgs)}")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise bad("messages", f"'messages'[{i}] must be an object with a string 'role', got {_short(m)}")
        content = m.get("content")
        if isinstance(content, list):  # OpenAI content parts; only text ones can be read here
            if not all(isinstance(c, dict) and c.get("type") == "text" and isinstance(c.get("text"), str)
                       for c in content):
                raise bad("messages", f"'messages'[{i}].content: only text parts are supported, got {_short(content)}")
            content = "".join(c["text"] for c in content)
        if not isinstance(content, str):
            raise bad("messages", f"'messages'[{i}].content must be a string, got {_short(content)}")
        out.append({**m, "content": content})
    return out


def render_chat(tokenizer, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """The chat template applied to `messages`; a 400 when the model has no template or the
    template rejects them (e.g. roles out of order)."""
    if not getattr(tokenizer, "chat_template", None):
        raise bad("messages", "the served model's tokenizer has no chat template; send a plain prompt to "
                              "/v1/completions instead")
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except Exception as e:  # jinja raises its own error types; the message is what matters
        raise bad("messages", f"'messages': the chat template rejected them: {e}") from None


def parse_chat(body: dict, tokenizer, max_len: int) -> Request:
    messages = messages_of(body)
    text = render_chat(tokenizer, messages)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    max_tokens = check_length([ids], requested_max_tokens(body), max_len, "messages")
    params, seed = sampling(body, max_tokens)
    top = get_int(body, "top_logprobs", 0, minimum=0)
    if top:
        raise bad("top_logprobs", f"'top_logprobs': ponder serve returns the sampled tokens' logprobs only, not the "
                                  f"top {top} alternatives; leave it out or send 0")
    # The search extension searches from the one user message (its text, for the engine to
    # template), after any system messages (applied by the same template: extension.py).
    one_user = messages[-1]["role"] == "user" and all(m["role"] == "system" for m in messages[:-1])
    user = messages[-1]["content"] if one_user else None
    return Request([ids], [user], params, seed, 0 if get_bool(body, "logprobs") else None, False,
                   get_bool(body, "return_token_ids"), _extension(body), *streaming(body))


def _extension(body: dict) -> dict | None:
    ext = body.get("ponder")
    if ext is not None and not isinstance(ext, dict):
        raise bad("ponder", f"'ponder' must be an object like {{\"strategy\": \"beam\", \"n\": 16}}, got {_short(ext)}")
    return ext


# ----- /tokenize, /detokenize -----

def parse_tokenize(body: dict, tokenizer) -> list[int]:
    """vLLM's two shapes: {"prompt", "add_special_tokens"=true} or {"messages",
    "add_generation_prompt"=true, "add_special_tokens"=false}."""
    if "messages" in body:
        text = render_chat(tokenizer, messages_of(body), get_bool(body, "add_generation_prompt", True))
        return tokenizer(text, add_special_tokens=get_bool(body, "add_special_tokens", False))["input_ids"]
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise bad("prompt", f"/tokenize needs 'prompt' (a string) or 'messages', got prompt={_short(prompt)}")
    return tokenizer(prompt, add_special_tokens=get_bool(body, "add_special_tokens", True))["input_ids"]


def parse_detokenize(body: dict, vocab: int) -> list[int]:
    tokens = body.get("tokens")
    if tokens == []:
        return []
    return check_ids(tokens, vocab, "tokens")
