"""A tiny, safe parser for arithmetic over non-negative integers: `+ - * /` and parentheses.

Model output is untrusted text, so it is never handed to `eval`: it is tokenised against a
whitelist (digits, four operators, parentheses, whitespace) and parsed by recursive descent
into a tree of `Num` and `BinOp` nodes. The tree keeps the parentheses the text had (as a
count on each node), so `render(parse(s))` gives back `s` without its whitespace: the `arith`
step checker relies on that to rewrite an expression one operation at a time. Values are
exact `Fraction`s, so `/` is true division and `7/2` is not silently 3.

Grammar (usual precedence, left-associative; no unary minus — no task here needs one, and
refusing it keeps `8--3` from quietly meaning 11):

    expr := term (("+" | "-") term)*
    term := atom (("*" | "/") atom)*
    atom := NUMBER | "(" expr ")"
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

# Bounds on untrusted input. Trees are walked recursively, so their depth must stay well
# under Python's recursion limit (1000): at most 500 tokens (~250 operations) and 100 levels
# of parentheses (three parser frames each). Longer "expressions" are rejected, not parsed.
MAX_LENGTH = 10_000  # characters
MAX_TOKENS = 500
MAX_DEPTH = 100
PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


class ExpressionError(ValueError):
    """Text that is not a well-formed expression, or one whose value is undefined (x/0)."""


@dataclass(frozen=True)
class Num:
    value: int
    parens: int = 0  # how many pairs of parentheses enclose this number in the source text


@dataclass(frozen=True)
class BinOp:
    op: str
    left: "Node"
    right: "Node"
    parens: int = 0


Node = Num | BinOp


def tokenize(text: str) -> list[str]:
    """Split into integer literals, operators and parentheses; reject anything else."""
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression too long ({len(text)} > {MAX_LENGTH} characters)")
    tokens: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "0123456789":  # not str.isdigit: that also accepts '²' and other digits
            j = i
            while j < len(text) and text[j] in "0123456789":
                j += 1
            tokens.append(text[i:j])
            i = j
        elif ch in "+-*/()":
            tokens.append(ch)
            i += 1
        else:
            raise ExpressionError(f"unexpected character {ch!r} at position {i}")
        if len(tokens) > MAX_TOKENS:
            raise ExpressionError(f"expression too long (more than {MAX_TOKENS} tokens)")
    return tokens


def parse(text: str) -> Node:
    """Parse `text` into a tree; raises `ExpressionError` saying what was wrong and where."""
    tokens = tokenize(text)
    if not tokens:
        raise ExpressionError("empty expression")
    parser = _Parser(tokens)
    node = parser.expr(depth=0)
    if parser.pos != len(tokens):
        raise ExpressionError(f"unexpected {tokens[parser.pos]!r} after a complete expression")
    return node


class _Parser:
    def __init__(self, tokens: list[str]):
        self.tokens, self.pos = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def expr(self, depth: int) -> Node:
        node = self.term(depth)
        while self.peek() in ("+", "-"):
            op = self.tokens[self.pos]
            self.pos += 1
            node = BinOp(op, node, self.term(depth))
        return node

    def term(self, depth: int) -> Node:
        node = self.atom(depth)
        while self.peek() in ("*", "/"):
            op = self.tokens[self.pos]
            self.pos += 1
            node = BinOp(op, node, self.atom(depth))
        return node

    def atom(self, depth: int) -> Node:
        token = self.peek()
        if token is None:
            raise ExpressionError("expression ends where a number or '(' was expected")
        self.pos += 1
        if token.isdigit():
            return Num(int(token))
        if token == "(":
            if depth >= MAX_DEPTH:
                raise ExpressionError(f"parentheses nested deeper than {MAX_DEPTH}")
            inner = self.expr(depth + 1)
            if self.peek() != ")":
                raise ExpressionError("missing ')'")
            self.pos += 1
            return replace(inner, parens=inner.parens + 1)
        raise ExpressionError(f"unexpected {token!r} where a number or '(' was expected")


def evaluate(node: Node) -> Fraction:
    """Exact value of the tree; division by zero raises `ExpressionError`."""
    if isinstance(node, Num):
        return Fraction(node.value)
    left, right = evaluate(node.left), evaluate(node.right)
    return apply(node.op, left, right)


def apply(op: str, left: Fraction, right: Fraction) -> Fraction:
    """One operation, exactly."""
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if right == 0:
        raise ExpressionError("division by zero")
    return left / right


def render(node: Node) -> str:
    """The tree as text, with exactly the parentheses it records and no spaces."""
    if isinstance(node, Num):
        body = str(node.value)
    else:
        body = render(node.left) + node.op + render(node.right)
    return "(" * node.parens + body + ")" * node.parens


def render_minimal(node: Node) -> str:
    """The tree as text with only the parentheses its structure needs (ignores `parens`):
    a left operand needs them when it binds more loosely than its parent, a right operand
    also when it binds equally (`a-(b-c)`, and `a+(b+c)` so that the tree survives)."""
    if isinstance(node, Num):
        return str(node.value)

    def side(child: Node, right: bool) -> str:
        text = render_minimal(child)
        if isinstance(child, BinOp):
            loose = PRECEDENCE[child.op] < PRECEDENCE[node.op]
            tie = right and PRECEDENCE[child.op] == PRECEDENCE[node.op]
            if loose or tie:
                return f"({text})"
        return text

    return side(node.left, False) + node.op + side(node.right, True)


def leaves(node: Node) -> list[int]:
    """The integer literals of the expression, left to right."""
    if isinstance(node, Num):
        return [node.value]
    return leaves(node.left) + leaves(node.right)


def subtrees(node: Node) -> list[Node]:
    """Every node of the tree, children before parents."""
    if isinstance(node, Num):
        return [node]
    return subtrees(node.left) + subtrees(node.right) + [node]
