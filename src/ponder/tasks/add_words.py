"""`add_words`: two-number addition phrased as a one-sentence word problem.

    Mia has 2 stickers. Then she gets 4 more stickers. How many stickers does Mia have now?
    Answer with a single number.
    -> 6

A small real-language task for pretrained instruction models (SmolLM2-135M-Instruct solves
some of these and not others, which is what test-time scaling needs: room to improve by
sampling and choosing). The answer is the last number of the completion, or what follows
`Answer:` when the model writes it. No step checker: a model's steps are free text.
"""
from __future__ import annotations

import random

from ponder.tasks.answers import answers_equal
from ponder.tasks.base import Problem, Task, draw_problems, register_task

NAMES = ("Mia", "Tom", "Ava", "Sam", "Lily", "Ben", "Zoe", "Leo")
THINGS = ("stickers", "apples", "marbles", "books", "coins", "shells", "pencils", "cards")
TEMPLATES = (
    "{name} has {a} {things}. Then {pron} gets {b} more {things}. How many {things} does {name} have now?",
    "There are {a} {things} in a box and {b} {things} on the table. How many {things} are there in total?",
    "{name} collected {a} {things} on Monday and {b} {things} on Tuesday. How many {things} did {name} collect?",
)
PRONOUN = {"Mia": "she", "Ava": "she", "Lily": "she", "Zoe": "she", "Tom": "he", "Sam": "he", "Ben": "he", "Leo": "he"}


@register_task("add_words")
class AddWords(Task):
    """Difficulty knob: `digits`, the number of digits of each addend (1 to 4). The default,
    1, is where SmolLM2-135M-Instruct is right about 40% of the time greedily (5 of 12
    test problems; 1 of 12 with two digits)."""

    def __init__(self, digits: int = 1):
        if not isinstance(digits, int) or not 1 <= digits <= 4:
            raise ValueError(f"add_words: digits must be an int from 1 to 4, got {digits!r}")
        self.digits = digits

    def problems(self, split: str = "test", n: int | None = None, seed: int = 0) -> list[Problem]:
        """`n` problems (default 500) of `split`; problem i depends only on (split, seed, i)."""
        if split not in ("train", "test"):
            raise ValueError(f"add_words: split must be 'train' or 'test', got {split!r}")
        low, high = (0 if self.digits == 1 else 10 ** (self.digits - 1)), 10**self.digits - 1

        def sample(rng: random.Random) -> tuple[str, tuple[str, int, int]]:
            a, b = rng.randint(low, high), rng.randint(low, high)
            name, things, template = rng.choice(NAMES), rng.choice(THINGS), rng.choice(TEMPLATES)
            question = template.format(name=name, pron=PRONOUN[name], a=a, b=b, things=things)
            return f"add_words:{question}", (question, a, b)

        drawn = draw_problems("add_words", split, 500 if n is None else n, seed, sample, f"digits={self.digits}")
        return [Problem(f"add_words-{split}-{i}", question, str(a + b),
                        meta={"a": a, "b": b, "steps": [f"{a} + {b} = {a + b}", f"Answer: {a + b}"],
                              "difficulty": self.digits})
                for i, (question, a, b) in enumerate(drawn)]

    def prompt(self, problem: Problem) -> str:
        # Asking for "Answer: N" makes SmolLM2-135M write a literal "N"; this it follows.
        return f"{problem.question}\nAnswer with a single number."

    def is_correct(self, problem: Problem, text: str) -> bool:
        return answers_equal(self.extract_answer(text), problem.answer)
