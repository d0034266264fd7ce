"""Engine samples shaped into OpenAI/vLLM response bodies.

    completion_response(...)  ->  {"object": "text_completion", "choices": [{"text", "logprobs": {...}}]}
    chat_response(...)        ->  {"object": "chat.completion", "choices": [{"message": {...}}]}

Choices are prompt-major: prompt i's j-th sample is choice i * n + j. Logprobs are the
engine's (log_softmax(logits / T), see ponder.generation.sampling); `top_logprobs` holds the
sampled token only (alternatives are not computed, and the request parser refuses to ask for
them). With `echo`, a completion choice starts with the prompt, and its logprobs start with
the prompt tokens' teacher-forced ones, the first token's None (nothing predicts it): the
shape clients use to score a completion (`echo=true, logprobs=0, max_tokens=1`).

Usage counts each prompt's tokens once (its n samples share one prefill, as the engine's
own usage does) and every generated token.
"""
from __future__ import annotations

import time
import uuid

from ponder.serve.batcher import Generated
from ponder.serve.protocol import Request


def usage(prompts: list[list[int]], gen: Generated) -> dict:
    prompt = sum(len(p) for p in prompts)
    completion = sum(s.num_tokens for samples in gen.samples for s in samples)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": gen.cached_tokens}}


def envelope(kind: str, model: str) -> dict:
    """The fields every response starts with; `kind` is 'text_completion' or 'chat.completion'."""
    prefix = "cmpl" if kind == "text_completion" else "chatcmpl"
    return {"id": f"{prefix}-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": model}


def token_strings(tokenizer, ids: list[int]) -> list[str]:
    """Each token decoded on its own (vLLM's `tokens` field)."""
    return tokenizer.batch_decode([[t] for t in ids]) if ids else []


def _text_logprobs(tokens: list[str], lps: list[float | None]) -> dict:
    offsets, at = [], 0
    for tok in tokens:
        offsets.append(at)
        at += len(tok)
    return {"tokens": tokens, "token_logprobs": lps,
            "top_logprobs": [None if lp is None else {tok: lp} for tok, lp in zip(tokens, lps)],
            "text_offset": offsets}


def completion_response(model: str, req: Request, gen: Generated, tokenizer,
                        prompt_logprobs: list[list[float]] | None = None) -> dict:
    """`prompt_logprobs`: per prompt, the teacher-forced logprobs of its tokens 2..P (echo)."""
    choices = []
    n = req.params.n
    for i, (ids, samples) in enumerate(zip(req.prompts, gen.samples)):
        prompt_text = ""
        if req.echo:
            prompt_text = req.texts[i] if req.texts[i] is not None else tokenizer.decode(ids)
        prompt_tokens = token_strings(tokenizer, ids) if req.echo and req.logprobs is not None else []
        for j, s in enumerate(samples):
            choice = {"index": i * n + j, "text": prompt_text + s.text, "logprobs": None,
                      "finish_reason": s.finish_reason, "stop_reason": s.stop_reason}
            if req.logprobs is not None:
                tokens, lps = token_strings(tokenizer, s.token_ids), list(s.logprobs or [])
                if req.echo:
                    tokens, lps = prompt_tokens + tokens, [None] + list(prompt_logprobs[i]) + lps
                choice["logprobs"] = _text_logprobs(tokens, lps)
            if req.return_token_ids:
                choice["token_ids"] = list(s.token_ids)
                choice["prompt_token_ids"] = list(ids)
            choices.append(choice)
    return {**envelope("text_completion", model), "choices": choices, "usage": usage(req.prompts, gen)}


def chat_response(model: str, req: Request, gen: Generated, tokenizer) -> dict:
    [ids], [samples] = req.prompts, gen.samples
    choices = []
    for j, s in enumerate(samples):
        choice = {"index": j, "message": {"role": "assistant", "content": s.text}, "logprobs": None,
                  "finish_reason": s.finish_reason, "stop_reason": s.stop_reason}
        if req.logprobs is not None:
            content = [{"token": tok, "logprob": lp, "bytes": list(tok.encode("utf-8")), "top_logprobs": []}
                       for tok, lp in zip(token_strings(tokenizer, s.token_ids), s.logprobs or [])]
            choice["logprobs"] = {"content": content}
        if req.return_token_ids:
            choice["token_ids"] = list(s.token_ids)
            choice["prompt_token_ids"] = list(ids)
        choices.append(choice)
    out = {**envelope("chat.completion", model), "choices": choices, "usage": usage(req.prompts, gen)}
    if req.return_token_ids:
        out["prompt_token_ids"] = list(ids)  # where vLLM puts them for chat
    return out
