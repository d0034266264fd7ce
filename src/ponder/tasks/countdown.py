"""`countdown`: reach a target number from a handful of given numbers with + - * /.

The task TinyZero (Pan et al. 2025, github.com/Jiayi-Pan/TinyZero) used to reproduce
DeepSeek-R1-Zero's "aha moment" at small scale: given 3-4 numbers and a target, write an
equation that uses each number at most once and equals the target. Many answers are right,
so correctness is checked by a verifier, not by comparing strings:

- the equation is the last `<answer>...</answer>` tag (TinyZero's format) or, failing that,
  the last `Answer:` line (ponder's format); a trailing `= <target>` is allowed;
- it is parsed by `safe_arith` — never `eval`, the model's text is untrusted;
- its numbers must come from the given ones, each used at most as often as it is given;
- its exact (Fraction) value must equal the target; division by zero is simply wrong.

TinyZero requires every number to be used exactly once; we follow the usual statement of the
game ("at most once") and say so in the prompt. Generated problems have a known solution
that uses all the numbers, with positive integer intermediates and exact divisions only.

Steps, checked exactly (`check_steps`): a solution writes one operation per line, `a op b = c`,
on numbers still available (the given ones, and the results of earlier lines; each is used up
once combined), and ends with `Answer: <equation>`. A line is correct iff its arithmetic is
exact, its operands are available, and the target can still be reached from what is left. That
last condition is Math-Shepherd's notion of a good step (Wang et al. 2023, §3.3: a step is good
iff some continuation reaches the right answer), computed exactly by search instead of
estimated by rollouts, so a true but hopeless line (a dead end) is a wrong step. Continuations
are searched over lines that can be written in this grammar: integer results only, no
negatives (an equation with a fractional intermediate still counts for `is_correct`).
"""
from __future__ import annotations

import random
import re
from collections import Counter
from fractions import Fraction
from functools import lru_cache

from ponder.tasks.base import Problem, StepCheck, Task, draw_problems, register_task
from ponder.tasks.safe_arith import (
    BinOp,
    ExpressionError,
    Node,
    Num,
    apply,
    evaluate,
    leaves,
    parse,
    render_minimal,
)

_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_ANSWER_LINE = re.compile(r"answer\s*:[ \t]*([^\n]*)", re.IGNORECASE)
SPLITS = ("train", "test")


def extract_equation(text: str) -> str | None:
    """The equation a completion commits to: the last `<answer>` tag, else the last
    `Answer:` line; None when there is neither."""
    if text is None:
        return None
    for pattern in (_ANSWER_TAG, _ANSWER_LINE):
        found = [m.strip() for m in pattern.findall(text) if m.strip()]
        if found:
            return found[-1]
    return None


def check_equation(numbers: list[int], target: int, equation: str | None) -> tuple[bool, str]:
    """(ok, reason): whether `equation` reaches `target` using `numbers` at most once each."""
    if not equation:
        return False, "no equation found"
    sides = equation.split("=")
    if len(sides) > 2:
        return False, "more than one '=' in the equation"
    try:
        tree = parse(sides[0])
        claimed = parse(sides[1]) if len(sides) == 2 else None
    except ExpressionError as e:
        return False, f"cannot parse equation: {e}"
    try:
        value = evaluate(tree)
        if claimed is not None and evaluate(claimed) != target:
            return False, f"the equation claims {sides[1].strip()!r}, but the target is {target}"
    except ExpressionError as e:  # division by zero
        return False, f"equation is undefined: {e}"
    overused = Counter(leaves(tree)) - Counter(numbers)
    if overused:
        extra = ", ".join(str(n) for n in sorted(overused.elements()))
        return False, f"uses numbers not available (each given number may be used once): {extra}"
    if value != target:
        return False, f"equation equals {value}, not the target {target}"
    return True, ""


@register_task("countdown")
class Countdown(Task):
    """Countdown problems.

    count: how many numbers are given, an int or a (min, max) range (default 3-4, as in
        TinyZero); also `meta["difficulty"]`.
    max_number: the given numbers are drawn from 1..max_number (default 99: 1-2 digits).
    max_target: targets lie in 1..max_target (default 100, as in TinyZero's data).
    instruction: prompt with the one-sentence instruction (for pretrained models); off, the
        prompt is the bare question (`numbers [3, 5, 7], target 22`), which saves a
        character-level model most of its sequence, as arith's knob of the same name does.
    """

    def __init__(
        self,
        count: int | tuple[int, int] = (3, 4),
        max_number: int = 99,
        max_target: int = 100,
        instruction: bool = True,
    ):
        self.instruction = bool(instruction)
        if isinstance(count, int):
            count = (count, count)
        if not (len(count) == 2 and 2 <= count[0] <= count[1]):
            raise ValueError(
                f"countdown: count must be an int >= 2 or a (min, max) range, got {count!r}"
            )
        if max_number < 1 or max_target < 1:
            raise ValueError(
                "countdown: max_number and max_target must be >= 1, "
                f"got {max_number}, {max_target}"
            )
        self.count = (int(count[0]), int(count[1]))
        self.max_number, self.max_target = int(max_number), int(max_target)

    def problems(self, split: str = "test", n: int | None = None, seed: int = 0) -> list[Problem]:
        """`n` problems (default 1000), deterministic in (split, seed, index); train and test
        are disjoint by a hash of (sorted numbers, target), and no instance repeats."""
        if split not in SPLITS:
            raise ValueError(f"countdown: split must be one of {SPLITS}, got {split!r}")

        def sample(rng: random.Random) -> tuple[str, tuple[list[int], Node]] | None:
            numbers, solution = self._sample(rng)
            if solution is None:
                return None
            return f"countdown:{sorted(numbers)}->{int(evaluate(solution))}", (numbers, solution)

        drawn = draw_problems("countdown", split, 1000 if n is None else n, seed, sample, f"count={self.count}")
        out = []
        for i, (numbers, solution) in enumerate(drawn):
            target = int(evaluate(solution))
            out.append(
                Problem(
                    id=f"countdown-{split}-{i}",
                    question=f"numbers {numbers}, target {target}",
                    answer=str(target),
                    meta={
                        "numbers": numbers,
                        "target": target,
                        "steps": _steps(solution) + [f"Answer: {render_minimal(solution)}"],
                        "difficulty": len(numbers),
                    },
                )
            )
        return out

    def _sample(self, rng: random.Random) -> tuple[list[int], Node | None]:
        """Random numbers and a random way of combining all of them, or None when the result
        is out of range, trivial (the target is one of the numbers), or not exact."""
        numbers = [rng.randint(1, self.max_number) for _ in range(rng.randint(*self.count))]
        pool: list[Node] = [Num(x) for x in numbers]
        while len(pool) > 1:
            a, b = (pool.pop(rng.randrange(len(pool))) for _ in range(2))
            va, vb = evaluate(a), evaluate(b)
            if va < vb:
                a, b, va, vb = b, a, vb, va
            ops = ["+", "*"]
            if va > vb:  # intermediates stay positive
                ops.append("-")
            if vb > 1 and va % vb == 0:  # exact division only, and never a useless /1
                ops.append("/")
            pool.append(BinOp(rng.choice(ops), a, b))
        value = evaluate(pool[0])
        if not (1 <= value <= self.max_target) or value in numbers:
            return numbers, None
        return numbers, pool[0]

    def prompt(self, problem: Problem) -> str:
        if not self.instruction:  # tiny models: the instruction is constant, so it costs compute only
            return f"{problem.question}\n"
        numbers, target = problem.meta["numbers"], problem.meta["target"]
        return (
            f"Using the numbers {numbers}, make {target} with + - * / and parentheses, each "
            "number at most once. One operation per line, then 'Answer: <equation>'.\n"
        )

    def extract_answer(self, text: str) -> str | None:
        return extract_equation(text)

    def is_correct(self, problem: Problem, text: str) -> bool:
        numbers, target = problem.meta["numbers"], problem.meta["target"]
        ok, _ = check_equation(numbers, target, extract_equation(text))
        return ok


    # --- exact step checking ----------------------------------------------------------------

    def check_steps(self, problem: Problem, steps: list[str]) -> StepCheck:
        """Label each step (see the module docstring): an operation line is True iff it is
        exact, uses available numbers and leaves the target reachable; the answer line is True
        iff the earlier lines have reached the target and its equation is right
        (`check_equation`) - strict, as `arith` is, so that the answer line's label never rests
        on arithmetic the solution did not write down. Whitespace is ignored; every step after
        the first wrong one is False; blank steps are labelled like their neighbours.
        Reachability is an exhaustive search, memoised: instant for up to 5 numbers, seconds
        for a hopeless line among 6 (it grows factorially with the numbers)."""
        numbers, target = problem.meta["numbers"], problem.meta["target"]
        pool: list[tuple[int, Node]] = [(x, Num(x)) for x in numbers]
        labels: list[bool] = []
        reasons: list[str] = []
        answered = failed = False
        for step in steps:
            if failed:
                reason = "after first error"
            elif not step.strip():
                reason = ""
            elif answered:
                reason = "step after the answer"
            else:
                reason, pool, answered = _judge(numbers, target, pool, step)
            failed = failed or bool(reason)
            labels.append(not reason)
            reasons.append(reason)
        first_error = labels.index(False) if False in labels else None
        return StepCheck(labels=labels, first_error=first_error, reasons=reasons)

    def next_step(self, problem: Problem, prefix: list[str]) -> str | None:
        """A correct next step after a correct prefix: the answer line (the equation built
        by the prefix's lines) once the target is reached, else the first operation line, in a
        fixed order, from which the target stays reachable. None after the answer line, or when
        the problem has no solution. A wrong prefix is a ValueError."""
        numbers, target = problem.meta["numbers"], problem.meta["target"]
        pool: list[tuple[int, Node]] = [(x, Num(x)) for x in numbers]
        for i, step in enumerate(prefix):
            if not step.strip():
                continue
            reason, pool, answered = _judge(numbers, target, pool, step)
            if reason:
                raise ValueError(f"countdown: step {i} of the prefix is wrong ({reason}): {step!r}")
            if answered:
                return None
        for value, node in pool:
            if value == target:
                return f"Answer: {render_minimal(node)}"
        for (i, (a, _)), (j, (b, _)), op, c in _moves(pool):
            rest = tuple(sorted([v for k, (v, _) in enumerate(pool) if k not in (i, j)] + [c]))
            if _reachable(rest, target):
                return f"{a}{op}{b}={c}"
        return None


def _judge(numbers: list[int], target: int, pool: list[tuple[int, Node]],
           step: str) -> tuple[str, list[tuple[int, Node]], bool]:
    """Why one non-blank step is wrong ("" when right), the pool of (value, expression)
    after it, and whether it was the answer line."""
    answer = _answer_of(step)
    if answer is not None:
        if all(value != target for value, _ in pool):
            return "answer given before the steps reached the target", pool, True
        ok, why = check_equation(numbers, target, answer)
        return ("" if ok else f"wrong answer: {why}"), pool, True
    text = "".join(step.split())
    sides = text.split("=")
    if len(sides) != 2:
        return "expected one operation 'a op b = c' or 'Answer: <equation>'", pool, False
    try:
        left, right = parse(sides[0]), parse(sides[1])
    except ExpressionError as e:
        return f"cannot parse step: {e}", pool, False
    if not (isinstance(left, BinOp) and isinstance(left.left, Num) and isinstance(left.right, Num)
            and isinstance(right, Num)):
        return "expected one operation on two numbers, 'a op b = c'", pool, False
    a, b = left.left.value, left.right.value
    values = [v for v, _ in pool]
    i = values.index(a) if a in values else None
    j = next((k for k, v in enumerate(values) if v == b and k != i), None)
    if i is None or j is None:
        return f"uses a number not available: the numbers left are {sorted(values)}", pool, False
    try:
        value = apply(left.op, Fraction(a), Fraction(b))
    except ExpressionError as e:
        return f"undefined: {e}", pool, False
    if value != right.value:
        return f"wrong value: {a}{left.op}{b} is {value}, not {right.value}", pool, False
    after = [e for k, e in enumerate(pool) if k not in (i, j)] + [
        (right.value, BinOp(left.op, pool[i][1], pool[j][1]))
    ]
    if not _reachable(tuple(sorted(v for v, _ in after)), target):
        return f"dead end: {target} cannot be reached from {sorted(v for v, _ in after)}", after, False
    return "", after, False


def _answer_of(step: str) -> str | None:
    """The equation of an answer line (`Answer: ...` or `<answer>...</answer>`), else None."""
    line = step.strip()
    if _ANSWER_TAG.fullmatch(line) or re.match(r"answer\s*:", line, re.IGNORECASE):
        return extract_equation(line) or ""
    return None


def _moves(pool: list[tuple[int, Node]]):
    """Every line that can be written next, in a fixed order: ((i, pool[i]), (j, pool[j]), op,
    result) with an integer result >= 0 (the grammar has no fractions or negatives)."""
    for i, x in enumerate(pool):
        for j, y in enumerate(pool):
            if i == j:
                continue
            for op in "+-*/":
                if op in "+*" and i > j:  # commutative: one order is enough
                    continue
                try:
                    value = apply(op, Fraction(x[0]), Fraction(y[0]))
                except ExpressionError:
                    continue
                if value.denominator == 1 and value >= 0:
                    yield (i, x), (j, y), op, int(value)


@lru_cache(maxsize=100_000)
def _reachable(pool: tuple[int, ...], target: int) -> bool:
    """Whether writable lines can turn the (sorted) pool into one holding `target`."""
    if target in pool:
        return True
    for (i, _), (j, _), _, c in _moves([(v, None) for v in pool]):
        if _reachable(tuple(sorted([v for k, v in enumerate(pool) if k not in (i, j)] + [c])), target):
            return True
    return False


def _steps(node: Node) -> list[str]:
    """One line per operation of the solution tree, innermost first: `a+b=c`."""
    if isinstance(node, Num):
        return []
    value = evaluate(node)
    line = f"{evaluate(node.left)}{node.op}{evaluate(node.right)}={value}"
    return _steps(node.left) + _steps(node.right) + [line]
