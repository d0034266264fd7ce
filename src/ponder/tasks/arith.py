"""`arith`: procedural arithmetic whose every step can be checked exactly.

A problem is an integer expression such as `(3+4)*5-2`. A solution rewrites the whole
expression once per line, performing exactly one operation each time, and ends with the
answer:

    7*5-2
    35-2
    33
    Answer: 33

This is the task the CPU path of ponder is built on: a ~4M-parameter character-level model
learns it in minutes, and because a step is right or wrong by construction, `check_steps`
gives *ground-truth* process labels — the yardstick for Monte Carlo / OmegaPRM labelling
and for PRMs (the role the synthetic tasks play in Lightman et al. 2023, "Let's Verify Step
by Step", is played here by an exact checker instead of human raters).

Rules, stated once:

- An operation may be performed when both its operands are numbers and precedence,
  parentheses and left-associativity allow it now. That is exactly a node of the parse tree
  whose two children are numbers: in `2*3+4*5` both products qualify, in `8-3-2` only `8-3`
  (the tree is `(8-3)-2`), in `1+2*3` only `2*3`.
- The result replaces the operation in the text; parentheses left around a single number are
  dropped (`(3+4)*5` -> `7*5`), all other parentheses stay as written.
- The reference (canonical) solution always performs the leftmost such operation. The
  checker accepts any of them, so a different valid order is not an error.
- `Answer: N` is correct only once the expression has been reduced to the single number N.
  We are strict here on purpose: accepting the answer one step early would make the label of
  the answer line depend on arithmetic the model never wrote down.
"""
from __future__ import annotations

import random
import re
from fractions import Fraction
from dataclasses import replace

from ponder.tasks.answers import answers_equal
from ponder.tasks.base import Problem, StepCheck, Task, draw_problems, register_task
from ponder.tasks.safe_arith import (
    BinOp,
    ExpressionError,
    Node,
    Num,
    apply,
    evaluate,
    parse,
    render,
    subtrees,
)

_ANSWER = re.compile(r"answer:(.*)", re.IGNORECASE)  # matched after removing all whitespace
SPLITS = ("train", "test")


def next_states(node: Node) -> list[Node]:
    """Every tree reachable by performing one permissible operation, leftmost first.
    An operation whose result is not a non-negative integer (it cannot be written as a
    literal in this grammar) is not offered; generated problems never contain one."""
    if isinstance(node, Num):
        return []
    if isinstance(node.left, Num) and isinstance(node.right, Num):
        try:
            value = apply(node.op, Fraction(node.left.value), Fraction(node.right.value))
        except ExpressionError:
            return []
        if value.denominator != 1 or value < 0:
            return []
        return [Num(int(value))]  # parens=0: the parentheses around the result are dropped
    return [replace(node, left=left) for left in next_states(node.left)] + [
        replace(node, right=right) for right in next_states(node.right)
    ]


def solve(expr: str) -> list[str]:
    """The canonical solution steps of `expr` (leftmost operation first), answer line last."""
    tree = parse(expr)
    steps = []
    while isinstance(tree, BinOp):
        tree = next_states(tree)[0]
        steps.append(render(tree))
    return steps + [f"Answer: {tree.value}"]


def _as_range(name: str, value, low: int) -> tuple[int, int]:
    """Accept an int or a (min, max) pair for a difficulty knob."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and low <= value[0] <= value[1]
    ):
        return int(value[0]), int(value[1])
    raise ValueError(
        f"arith: {name} must be an int >= {low} or a (min, max) pair with {low} <= min <= max, "
        f"got {value!r}"
    )


@register_task("arith")
class Arith(Task):
    """Procedural arithmetic. Difficulty knobs:

    num_ops: operations per problem, an int or a (min, max) range; `meta["difficulty"]`.
    digits: digits per operand, an int or a (min, max) range. The default, 1, keeps every
        fact a tiny model must learn small (single-digit operands, results below 100).
    operators: which of `+-*/` may appear (`/` only where it divides exactly).
    parens: whether to wrap random sub-expressions in parentheses (some of them redundant,
        which is deliberate: the model must learn when parentheses matter).
    max_value: bound on every intermediate value (default: 10**(max digits + 1) - 1, i.e.
        99 for single digits); problems exceeding it, or going negative, are redrawn.
    instruction: prompt with a one-line instruction (for pretrained models); off, the prompt
        is the bare expression, which saves a character-level model most of its sequence.
    """

    def __init__(
        self,
        num_ops: int | tuple[int, int] = (2, 4),
        digits: int | tuple[int, int] = 1,
        operators: str = "+-*",
        parens: bool = True,
        max_value: int | None = None,
        instruction: bool = True,
    ):
        self.instruction = bool(instruction)
        self.num_ops = _as_range("num_ops", num_ops, 1)
        self.digits = _as_range("digits", digits, 1)
        if not operators or set(operators) - set("+-*/"):
            raise ValueError(
                f"arith: operators must be a non-empty subset of '+-*/', got {operators!r}"
            )
        self.operators = "".join(sorted(set(operators), key="+-*/".index))
        self.parens = bool(parens)
        self.max_value = 10 ** (self.digits[1] + 1) - 1 if max_value is None else int(max_value)
        if self.max_value < 1:
            raise ValueError(f"arith: max_value must be >= 1, got {max_value!r}")

    # --- problems ---------------------------------------------------------------------------

    def problems(self, split: str = "test", n: int | None = None, seed: int = 0) -> list[Problem]:
        """`n` problems (default 1000) of `split`. Problem i depends only on (split, seed, i)
        and the knobs: a longer list extends a shorter one. Each expression belongs to one
        split by a hash rule (`stable_split`), so train and test never share a problem;
        duplicates within a split are skipped."""
        if split not in SPLITS:
            raise ValueError(f"arith: split must be one of {SPLITS}, got {split!r}")

        def sample(rng: random.Random) -> tuple[str, str] | None:
            expr = self._sample(rng)
            return None if expr is None else (f"arith:{expr}", expr)

        knobs = f"num_ops={self.num_ops}, digits={self.digits}, operators={self.operators!r}"
        exprs = draw_problems("arith", split, 1000 if n is None else n, seed, sample, knobs)
        out = []
        for i, expr in enumerate(exprs):
            steps = solve(expr)
            num_ops = sum(expr.count(op) for op in "+-*/")
            out.append(
                Problem(
                    id=f"arith-{split}-{i}",
                    question=expr,
                    answer=steps[-1].removeprefix("Answer: "),
                    meta={"expr": expr, "steps": steps, "num_ops": num_ops, "difficulty": num_ops},
                )
            )
        return out

    def _sample(self, rng: random.Random) -> str | None:
        """One random expression, or None when it breaks the value bounds."""
        k = rng.randint(*self.num_ops)
        operands = []
        for _ in range(k + 1):
            d = rng.randint(*self.digits)
            operands.append(rng.randint(0 if d == 1 else 10 ** (d - 1), 10**d - 1))
        ops = [rng.choice(self.operators) for _ in range(k)]
        spans = self._spans(rng, k) if self.parens else []
        parts = []
        for i, operand in enumerate(operands):
            parts.append("(" * sum(1 for s in spans if s[0] == i))
            parts.append(str(operand))
            parts.append(")" * sum(1 for s in spans if s[1] == i))
            if i < k:
                parts.append(ops[i])
        expr = "".join(parts)
        try:
            values = [evaluate(node) for node in subtrees(parse(expr))]
        except ExpressionError:  # division by zero
            return None
        if all(v.denominator == 1 and 0 <= v <= self.max_value for v in values):
            return expr
        return None

    @staticmethod
    def _spans(rng: random.Random, k: int) -> list[tuple[int, int]]:
        """Up to two well-nested parenthesised operand ranges [i, j] (i < j), never the whole
        expression and never the same range twice."""
        spans: list[tuple[int, int]] = []
        for _ in range(rng.randint(0, min(2, k - 1))):
            i = rng.randint(0, k - 1)
            j = rng.randint(i + 1, k)
            if (i, j) == (0, k) or (i, j) in spans:
                continue
            nested_or_disjoint = all(
                j < a or b < i or (a <= i and j <= b) or (i <= a and b <= j) for a, b in spans
            )
            if nested_or_disjoint:
                spans.append((i, j))
        return spans

    def prompt(self, problem: Problem) -> str:
        # Short on purpose: the tiny model reads it one character at a time.
        if not self.instruction:  # tiny models: the instruction is constant, so it costs compute only
            return f"{problem.question}\n"
        return f"Compute {problem.question}. One operation per line, then 'Answer: N'.\n"

    def is_correct(self, problem: Problem, text: str) -> bool:
        return answers_equal(self.extract_answer(text), problem.answer)

    # --- exact step checking ----------------------------------------------------------------

    def check_steps(self, problem: Problem, steps: list[str]) -> StepCheck:
        """Label each step: True iff it performs one permissible operation on the current
        expression (any permissible one, not just the canonical), or is the `Answer: N` line
        once the expression is the number N. Whitespace inside a step is ignored. Every step
        after the first wrong one is False ("after first error"). Blank steps (which
        `split_steps` never yields) leave the state alone and are labelled like their
        neighbours (True before the first error), so labels stay aligned with `steps`."""
        tree = parse(problem.meta.get("expr", problem.question))
        labels: list[bool] = []
        reasons: list[str] = []
        answered = failed = False
        for step in steps:
            text = "".join(step.split())
            if failed:
                reason = "after first error"
            elif not text:
                reason = ""
            elif answered:
                reason = "step after the answer"
            else:
                reason, tree = self._judge(tree, text)
                answered = not reason and _ANSWER.fullmatch(text) is not None
            failed = failed or bool(reason)
            labels.append(not reason)
            reasons.append(reason)
        first_error = labels.index(False) if False in labels else None
        return StepCheck(labels=labels, first_error=first_error, reasons=reasons)

    @staticmethod
    def _judge(tree: Node, text: str) -> tuple[str, Node]:
        """Why a whitespace-free step is wrong ("" when it is right), and the state after it."""
        answer = _ANSWER.fullmatch(text)
        if answer:
            if isinstance(tree, BinOp):
                return "answer given before the expression was fully reduced", tree
            if answer.group(1) != str(tree.value):
                return f"wrong answer {answer.group(1)!r}: the expression equals {tree.value}", tree
            return "", tree
        for candidate in next_states(tree):
            if render(candidate) == text:
                return "", candidate
        try:
            value = evaluate(parse(text))
        except ExpressionError as e:
            return f"cannot parse step: {e}", tree
        expected = evaluate(tree)
        if value != expected:
            reason = f"wrong value: step evaluates to {value}, but the expression equals {expected}"
            return reason, tree
        if isinstance(tree, Num):
            return f"not a valid next step: already reduced, expected 'Answer: {tree.value}'", tree
        return "not a valid next step", tree

    def next_step(self, problem: Problem, prefix: list[str]) -> str | None:
        """The canonical next step (the leftmost permissible operation) after a correct
        prefix; the answer line once the expression is a number; None after the answer line.
        A wrong prefix is a ValueError: no step can make it right."""
        tree = parse(problem.meta.get("expr", problem.question))
        for i, step in enumerate(prefix):
            text = "".join(step.split())
            if not text:
                continue
            reason, tree = self._judge(tree, text)
            if reason:
                raise ValueError(f"arith: step {i} of the prefix is wrong ({reason}): {step!r}")
            if _ANSWER.fullmatch(text):
                return None
        if isinstance(tree, Num):
            return f"Answer: {tree.value}"
        return render(next_states(tree)[0])

    def is_complete(self, problem: Problem, steps: list[str]) -> bool:
        """True iff every step is correct and the last non-blank one is the answer line."""
        steps = [s for s in steps if s.strip()]
        if not steps or not _ANSWER.fullmatch("".join(steps[-1].split())):
            return False
        return self.check_steps(problem, steps).first_error is None
