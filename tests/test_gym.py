"""reasoning-gym datasets as ponder tasks (optional extra `ponder[gym]`)."""
import importlib.util

import pytest

from ponder.tasks import get_task

HAVE_GYM = importlib.util.find_spec("reasoning_gym") is not None


@pytest.mark.skipif(HAVE_GYM, reason="reasoning-gym is installed; the error path is unreachable")
def test_missing_reasoning_gym_says_how_to_install():
    with pytest.raises(ImportError, match=r"pip install 'ponder\[gym\]'"):
        get_task("gym:chain_sum")


@pytest.mark.skipif(not HAVE_GYM, reason="reasoning-gym not installed (pip install 'ponder[gym]')")
def test_gym_task_splits_and_scoring():
    task = get_task("gym:chain_sum", size=30, seed=1, min_terms=2, max_terms=3)
    assert task.name == "gym:chain_sum"
    train, test = task.problems("train"), task.problems("test", n=20)
    assert (len(train), len(test)) == (30, 20)
    assert {p.question for p in train}.isdisjoint({p.question for p in test})
    assert test == task.problems("test", n=20)
    assert test[:5] == task.problems("test", n=5)
    p = test[0]
    assert p.id == "gym:chain_sum-test-0" and p.meta["entry"]["answer"] == p.answer
    assert task.is_correct(p, f"Let me add.\nAnswer: {p.answer}")
    assert task.is_correct(p, f"<answer>{p.answer}</answer>")
    assert not task.is_correct(p, f"Answer: {int(p.answer) + 1}")
    assert not task.is_correct(p, p.answer)  # no answer marker: nothing extracted
    assert task.prompt(p).startswith(p.question) and task.prompt(p).endswith("\n")


@pytest.mark.skipif(not HAVE_GYM, reason="reasoning-gym not installed (pip install 'ponder[gym]')")
def test_unknown_gym_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown reasoning-gym dataset 'no_such_thing': expected one of .*chain_sum"):
        get_task("gym:no_such_thing")
