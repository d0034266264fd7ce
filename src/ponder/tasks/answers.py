"""Final answers: pull the answer out of a completion, and decide whether two answers agree.

`extract_answer` looks for the markers models are trained to emit, most explicit first:

1. `\\boxed{...}` (MATH, Qwen-Math and DeepSeek-R1 style; the last balanced one),
2. `<answer>...</answer>` (TinyZero / reasoning-gym style; the last one),
3. `#### N` (GSM8K, Cobbe et al. 2021),
4. `Answer: X` (ponder's own tasks; the last one, case-insensitive),
5. the last number in the text (as in lm-evaluation-harness's "flexible-extract" filter
   for GSM8K, which scores models that never write the marker).

`answers_equal` compares numbers exactly (as fractions) when both sides are plain numbers —
fast, and all GSM8K needs — and hands anything else (LaTeX, expressions, sets) to Hugging
Face's math-verify. math-verify bounds its work with `signal.alarm`, which Python allows only
in the main thread, so elsewhere (thread pools, Ray's threaded actors) we call it with the
timeouts switched off rather than let it raise.
"""
from __future__ import annotations

import re
import threading
from decimal import Decimal
from fractions import Fraction

# --- extraction ---------------------------------------------------------------------------

FINAL_MARKER = re.compile(r"answer\s*\**\s*:|\\boxed|</answer>|####", re.IGNORECASE)
"""A final-answer marker (`Answer:`, `\\boxed`, `</answer>`, `####`): a step carrying one ends
its solution (tree search stops growing it; a rollout verifier checks it instead of rolling on)"""
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOXED_BARE = re.compile(r"\\boxed\s+([^\s${}]+)")  # `\boxed 5`, legal LaTeX, seen in the wild
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
# Markdown bold around the marker ("**Answer:** 42") is common in chat-model output.
_ANSWER_LINE = re.compile(r"answer\s*\**\s*:\s*\**[ \t]*([^\n]*)", re.IGNORECASE)
# A number not glued to a word or a decimal point on its left, so "5-3" yields 3, not -3,
# and "x2" yields nothing; thousands separators only in groups of three ("1,000", not "3, 4").
_LAST_NUMBER = re.compile(
    r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?(?![\d,]\d)"
)


def extract_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` whose braces balance (nested braces allowed)."""
    for match in reversed(list(_BOXED.finditer(text))):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                return text[start:i].strip()
        # Unbalanced (e.g. generation cut off inside the box): try an earlier box.
    bare = _BOXED_BARE.findall(text)
    return bare[-1] if bare else None


def _clean(answer: str) -> str:
    """Trim what surrounds an answer in prose: spaces, a full stop, `$...$` math delimiters."""
    answer = answer.strip().rstrip(".").strip()
    if len(answer) >= 2 and answer[0] == answer[-1] == "$" and answer.count("$") == 2:
        answer = answer[1:-1].strip()
    return answer


def extract_answer(text: str, number_fallback: bool = True) -> str | None:
    """The final answer in `text`, or None. See the module docstring for the priority order;
    `number_fallback=False` skips the last-number fallback (for tasks with non-numeric
    answers, where "the last number" would be a wrong guess rather than an answer)."""
    if text is None:
        return None
    boxed = extract_boxed(text)
    if boxed:
        return boxed
    for pattern in (_ANSWER_TAG, _HASHES, _ANSWER_LINE):
        found = [_clean(m) for m in pattern.findall(text)]
        found = [f for f in found if f]
        if found:
            return found[-1]
    if number_fallback:
        return last_number(text)
    return None


def last_number(text: str) -> str | None:
    """The last number in `text`, thousands commas removed ("$1,080" -> "1080"), or None."""
    numbers = _LAST_NUMBER.findall(text)
    return numbers[-1].replace(",", "") if numbers else None


# --- numbers ------------------------------------------------------------------------------

_PLAIN_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|-?\.\d+")
_LATEX_FRAC = re.compile(r"\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}|\\[dt]?frac(\d)(\d)")
# Units after a number: "18 dollars", "5 eggs per day". Letters and spaces only, so an
# expression such as "18 \cdot 2" or "2x + 1" is never read as a bare number.
_NUMBER_WITH_UNITS = re.compile(r"(.*?\d)\s*[A-Za-z][A-Za-z ]*")


def parse_number(text: str) -> Fraction | None:
    """`text` as an exact number if it is a plain one — `1,000`, `-3`, `0.25`, `3/4`,
    `\\frac{3}{4}`, `$18`, `45%`, `18.00` — else None."""
    if text is None:
        return None
    s = text.strip().replace("\u2212", "-")  # Unicode minus sign
    # Dollar signs, percent signs (45% is answered as 45 in GSM8K), LaTeX thin spaces and
    # LaTeX-escaped thousands commas ("1{,}000").
    for junk in ("\\$", "$", "\\%", "%", "\\!"):
        s = s.replace(junk, "")
    s = s.replace("{,}", ",")
    s = s.strip().rstrip(".")
    if s.startswith("+"):
        s = s[1:]
    if not s:
        return None
    frac = _LATEX_FRAC.fullmatch(s)
    if frac:
        num, den = (frac.group(1), frac.group(2)) if frac.group(1) else frac.group(3, 4)
        return Fraction(int(num), int(den)) if int(den) != 0 else None
    parts = s.split("/")
    if len(parts) == 2 and all(re.fullmatch(r"-?\d+", p) for p in parts):
        return Fraction(int(parts[0]), int(parts[1])) if int(parts[1]) != 0 else None
    if len(parts) == 1 and _PLAIN_NUMBER.fullmatch(s):
        return Fraction(Decimal(s.replace(",", "")))
    return None


def normalize_number(text: str) -> str | None:
    """Canonical spelling of a plain number, or None if `text` is not one: integers without
    separators (`"1,000"` -> `"1000"`, `"18.00"` -> `"18"`), numbers with a finite decimal
    expansion as shortest decimals (`".50"` -> `"0.5"`, `"6/8"` -> `"0.75"`), the rest as
    reduced fractions (`"4/6"` -> `"2/3"`). Equal numbers get the same spelling, so it is a
    sound majority-vote key."""
    value = parse_number(text)
    if value is None:
        return None
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    if den == 1:  # terminating decimal
        return format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    return f"{value.numerator}/{value.denominator}"


# --- equality -----------------------------------------------------------------------------


def answers_equal(pred: str | None, gold: str | None) -> bool:
    """Whether predicted answer `pred` matches `gold`. Exact rational comparison when both are
    plain numbers (a number followed by unit words, "18 dollars", counts as that number when
    the gold is a number); otherwise math-verify, with `gold` parsed as the reference."""
    if pred is None or gold is None:
        return False
    pred, gold = str(pred).strip(), str(gold).strip()
    if not pred or not gold:
        return False
    gold_value = parse_number(gold)
    if gold_value is not None:
        pred_value = parse_number(pred)
        if pred_value is None:
            units = _NUMBER_WITH_UNITS.fullmatch(pred)
            pred_value = parse_number(units.group(1)) if units else None
        if pred_value is not None:
            return pred_value == gold_value
    if pred == gold:
        return True
    return _math_verify_equal(pred, gold)


def _math_verify_equal(pred: str, gold: str) -> bool:
    """math-verify on two bare answers. Answers are wrapped in `$...$` so they are read as
    LaTeX (bare `x+1` would otherwise be read as its last number, 1); the unwrapped reading is
    a fallback only when the wrapped one finds nothing."""
    from math_verify import parse, verify

    # signal.alarm only works in the main thread; elsewhere run without math-verify's timeout.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None

    def read(answer: str):
        parsed = parse(f"${answer}$", parsing_timeout=timeout)
        return parsed or parse(answer, parsing_timeout=timeout)

    try:
        gold_parsed, pred_parsed = read(gold), read(pred)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=timeout))
    except Exception:  # math-verify raises from deep inside sympy on odd input: not equal
        return False
