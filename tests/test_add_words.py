"""`add_words`: problems are reproducible, split-disjoint, and graded by their sum."""
import pytest

from ponder.tasks import get_task


def test_add_words_problems_and_grading():
    task = get_task("add_words")
    test = task.problems("test", n=20, seed=1)
    assert [p.question for p in test] == [p.question for p in task.problems("test", n=20, seed=1)]
    assert not {p.question for p in test} & {p.question for p in task.problems("train", n=200, seed=1)}
    p = test[0]
    assert int(p.answer) == p.meta["a"] + p.meta["b"] and str(p.meta["a"]) in p.question
    assert task.is_correct(p, f"{p.meta['a']} + {p.meta['b']} = {p.answer}\nAnswer: {p.answer}")
    assert task.is_correct(p, f"So the total is {p.answer}.")  # the last number, without the marker
    assert not task.is_correct(p, f"Answer: {int(p.answer) + 1}")
    assert task.reference(p).endswith(f"Answer: {p.answer}")
    with pytest.raises(ValueError, match="digits must be an int from 1 to 4"):
        get_task("add_words", digits=7)
