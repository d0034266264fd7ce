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
"""
from __future__ import annotations

import random
import re
from collections import Counter

from ponder.tasks.base import Problem, Task, register_task, stable_split
from ponder.tasks.safe_arith import (
    BinOp,
    ExpressionError,
    Node,
    Num,
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
    """

    def __init__(
        self, count: int | tuple[int, int] = (3, 4), max_number: int = 99, max_target: int = 100
    ):
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
        n = 1000 if n is None else n
        rng = random.Random(f"countdown:{split}:{seed}")
        seen: set[str] = set()
        out: list[Problem] = []
        attempts = 0
        while len(out) < n:
            attempts += 1
            if attempts > 1000 * n + 10_000:
                raise ValueError(
                    f"countdown: found only {len(out)} distinct {split} problems of the {n} "
                    f"asked for with count={self.count}; widen the knobs or ask for fewer"
                )
            numbers, solution = self._sample(rng)
            if solution is None:
                continue
            target = int(evaluate(solution))
            key = f"countdown:{sorted(numbers)}->{target}"
            if key in seen or stable_split(key) != split:
                continue
            seen.add(key)
            out.append(
                Problem(
                    id=f"countdown-{split}-{len(out)}",
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


def _steps(node: Node) -> list[str]:
    """One line per operation of the solution tree, innermost first: `a+b=c`."""
    if isinstance(node, Num):
        return []
    value = evaluate(node)
    line = f"{evaluate(node.left)}{node.op}{evaluate(node.right)}={value}"
    return _steps(node.left) + _steps(node.right) + [line]
