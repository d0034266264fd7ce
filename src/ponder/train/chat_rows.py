"""Conversational training rows: TRL's message-list dataset formats turned into token ids.

TRL writes every dataset type in a standard form (strings) and a conversational one (lists
of `{"role", "content"}` messages), https://huggingface.co/docs/trl/dataset_formats:

    messages           {"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}
    prompt-completion  {"prompt": [messages...], "completion": [{"role": "assistant", ...}]}
    preference         {"prompt": [messages...], "chosen": [assistant message], "rejected": [...]}

A conversation becomes ids through the model's chat template. The template renders the
whole conversation to one string; an assistant turn to learn is found in it by rendering
prefixes: `messages[:k]` with `add_generation_prompt=True` ends where the turn's text
begins, `messages[:k + 1]` ends where the turn ends. Both must be prefixes of the whole
rendering. A template that rewrites earlier turns once later ones exist (Qwen3's drops the
reasoning of past assistant turns) is not prefix-stable: no span of the whole is the text
the model writes at that turn, so such a conversation is refused rather than mislabelled.
The pieces between those boundaries are tokenized one by one, without added special tokens,
and concatenated: the context before the first learnt turn is the rendered prompt tokenized
exactly as `encode_prompts` tokenizes an engine's prompt, and each turn continues the ids
before it as generated tokens would. So training ids are the ids the model sees in serving.

Which tokens are learnt (get labels): an assistant turn's tokens run from the end of the
generation prompt to the end of the message as the template renders it - the content and the
template's own end-of-turn (`<|im_end|>` in ChatML templates such as SmolLM2's), so the model
learns to stop; nothing is appended. When the tokenizer's EOS token is among them, the
learnt tokens end at its last occurrence: what a template writes after EOS (ChatML's newline)
is never generated, since engines stop at EOS, so it stays as masked context. Every other
token (system and user turns, the generation prompt's role header) is masked. This is the
span TRL's `assistant_only_loss` trains on (https://huggingface.co/docs/trl/sft_trainer),
which TRL finds through `{% generation %}` markers in the template; most published templates
lack them, and prefix rendering needs none.
"""
from __future__ import annotations

ROLES = ("system", "user", "assistant")
FORMATS_DOC = "https://huggingface.co/docs/trl/dataset_formats"


class Row(dict):
    """A data row that remembers where it was read (`where`: `file:line`, as `read_rows` names
    it), so a problem found later - when the tokenizer is known - still names the row. It
    compares equal to the plain dict it holds."""

    where: str = ""


def located(row: dict, where: str) -> Row:
    out = Row(row)
    out.where = where
    return out


def where_of(row: dict, fallback: str) -> str:
    """`file:line` of a row read from a file, else `fallback` (rows built in memory)."""
    return getattr(row, "where", "") or fallback


def _show(value, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def messages_problem(value) -> str | None:
    """What is wrong with a message list (None when nothing is): a non-empty list of
    `{"role": "system"|"user"|"assistant", "content": str}`."""
    if not isinstance(value, list) or not value:
        return (f"expected a non-empty list of messages {{'role': 'system'|'user'|'assistant', 'content': str}}, "
                f"got {_show(value)}")
    for i, message in enumerate(value, 1):
        if not (isinstance(message, dict) and message.get("role") in ROLES and isinstance(message.get("content"), str)):
            return (f"message {i}: expected {{'role': 'system'|'user'|'assistant', 'content': str}}, "
                    f"got {_show(message)}")
    return None


def completion_problem(value) -> str | None:
    """What is wrong with a conversational completion (None when nothing is): one assistant
    message in a list, as TRL writes completions."""
    if not (isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict)
            and value[0].get("role") == "assistant" and isinstance(value[0].get("content"), str)):
        return f"expected one assistant message [{{'role': 'assistant', 'content': str}}], got {_show(value)}"
    return None


def require_template(tokenizer, where: str) -> None:
    """Conversational rows need the model's chat template to become ids."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{where}: a conversational row (messages), but the model's tokenizer has no chat template "
                         "to render it: use a model with a chat template, or write the rows as strings "
                         "(prompt and completion)")


def _render(tokenizer, messages: list[dict], generation_prompt: bool, where: str, field: str) -> str:
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except Exception as e:  # a template's own checks (e.g. "roles must alternate") are jinja exceptions
        raise ValueError(f"{where}: field {field!r}: the model's chat template cannot render this conversation: "
                         f"{type(e).__name__}: {e}") from e


def _encode(tokenizer, text: str) -> list[int]:
    # no added special tokens: a rendered template spells its own (as in encode_prompts)
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def assistant_turns(tokenizer, messages: list[dict], learn: list[int], where: str,
                    field: str) -> list[tuple[list[int], list[int], int]]:
    """The conversation cut at the assistant messages `learn` (indices into `messages`): one
    (context ids, turn ids, learnt) per learnt turn, where context is everything since the
    previous turn (or the start), turn the message's tokens as rendered with its end of turn,
    and `learnt` how many of the turn's tokens get labels (up to and including its last EOS,
    else all; see the module docstring). Concatenated, contexts and turns spell the
    conversation up to the end of the last learnt message."""
    require_template(tokenizer, where)
    full = _render(tokenizer, messages, False, where, field)
    eos = tokenizer.eos_token_id
    out, done = [], 0  # done: characters of `full` already tokenized
    for k in sorted(learn):
        bounds = []
        for prefix, generation_prompt in ((messages[:k], True), (messages[:k + 1], False)):
            text = _render(tokenizer, prefix, generation_prompt, where, field)
            if not full.startswith(text) or len(text) < (bounds[-1] if bounds else done):
                raise ValueError(
                    f"{where}: field {field!r}: the model's chat template is not prefix-stable: rendering message "
                    f"1..{len(prefix)}{' with the generation prompt' if generation_prompt else ''} is not the start of "
                    f"the whole conversation's rendering (the template rewrites earlier turns once later ones exist), "
                    f"so assistant message {k + 1} cannot be located: split the conversation into prompt/completion "
                    "rows, one assistant turn each")
            bounds.append(len(text))
        start, end = bounds
        turn = _encode(tokenizer, full[start:end])
        learnt = len(turn) - turn[::-1].index(eos) if eos is not None and eos in turn else len(turn)
        out.append((_encode(tokenizer, full[done:start]), turn, learnt))
        done = end
    return out


def sft_kind(row: dict) -> tuple[str, str]:
    """(TRL format, the field that shows it) of an SFT row: "messages", "conversational
    prompt-completion" (prompt or completion a message list) or "prompt-completion" (strings)."""
    if "messages" in row:
        return "messages", "messages"
    for field in ("prompt", "completion"):
        if isinstance(row.get(field), list):
            return "conversational prompt-completion", field
    return "prompt-completion", "prompt"


def sft_row_problem(row: dict) -> tuple[str, str] | None:
    """(field, what is wrong) of a conversational SFT row, None when nothing is."""
    if sft_kind(row)[0] == "messages":
        problem = messages_problem(row["messages"])
        if problem is None and not any(m["role"] == "assistant" for m in row["messages"]):
            problem = "expected at least one assistant message to learn from, got none"
        return ("messages", problem) if problem else None
    for field, check in (("prompt", messages_problem), ("completion", completion_problem)):
        problem = check(row.get(field))
        if problem:
            return field, f"{problem} (a conversational prompt-completion row: prompt and completion are message lists)"
    return None


def sft_ids(tokenizer, row: dict, where: str) -> tuple[list[int], list[bool]]:
    """Ids of a conversational SFT row and which of them are learnt: every assistant message of
    a "messages" row (TRL's `assistant_only_loss`), the completion's message of a
    prompt-completion row (TRL's `completion_only_loss`); the prompt is rendered with the
    generation prompt, as `apply_chat_template(prompt, add_generation_prompt=True)`."""
    if sft_kind(row)[0] == "messages":
        messages, field = row["messages"], "messages"
        learn = [k for k, m in enumerate(messages) if m["role"] == "assistant"]
    else:
        messages, field = row["prompt"] + row["completion"], "completion"
        learn = [len(messages) - 1]
    ids, mask = [], []
    for context, turn, learnt in assistant_turns(tokenizer, messages, learn, where, field):
        ids += context + turn
        mask += [False] * len(context) + [True] * learnt + [False] * (len(turn) - learnt)
    return ids, mask


def completion_ids(tokenizer, prompt: list[dict], completion: list[dict], where: str,
                   field: str) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids) of a conversational prompt and a one-message completion:
    the prompt rendered with the generation prompt, then the assistant turn's learnt tokens
    (its content and end of turn, up to EOS). Tokens after them are left out: a DPO
    completion is exactly what the policy writes."""
    [(context, turn, learnt)] = assistant_turns(tokenizer, prompt + completion, [len(prompt)], where, field)
    return context, turn[:learnt]


def preference_kind(row: dict) -> tuple[str, str]:
    """(format, the field that shows it) of a preference row: "conversational" when a
    completion is a message list (TRL's conversational preference rows), else "string
    completion" (the prompt a string or ponder's Step-DPO conversation, see train/step_dpo.py)."""
    for field in ("chosen", "rejected"):
        if isinstance(row.get(field), list):
            return "conversational", field
    return "string completion", "chosen"


def preference_row_problem(row: dict) -> tuple[str, str] | None:
    """(field, what is wrong) of a conversational preference row, None when nothing is."""
    checks = (("prompt", messages_problem), ("chosen", completion_problem), ("rejected", completion_problem))
    for field, check in checks:
        problem = check(row.get(field))
        if problem:
            return field, f"{problem} (a conversational preference row: prompt, chosen and rejected are message lists)"
    return None


def check_same_format(kind: tuple[str, str], where: str, first: tuple[str, str], first_where: str) -> None:
    """Every row of a file has the format of its first row (`kind` and `first` as
    `sft_kind` / `preference_kind` give them), as TRL's trainers expect of one dataset."""
    if kind[0] != first[0]:
        raise ValueError(f"{where}: field {kind[1]!r}: a {kind[0]} row, but the file's first row ({first_where}) is a "
                         f"{first[0]} row: expected one format in one file (TRL's dataset formats, {FORMATS_DOC})")
