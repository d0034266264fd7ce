"""The `arith` task: generation, reference solutions and the exact step checker.

The checker is tested against an independent brute force (`brute_next_states`) that works on
the token sequence — an operation `a op b` may be performed iff the operator on its left
binds strictly more loosely (or is a '(' or the start) and the one on its right binds no more
tightly (or is a ')' or the end) — rather than on the parse tree the checker uses.
"""
import re
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ponder.tasks import Problem, get_task
from ponder.tasks.arith import Arith
from ponder.tasks.base import stable_split

TOKEN = re.compile(r"\d+|[-+*/()]")
PREC = {"+": 1, "-": 1, "*": 2, "/": 2}
VOCAB = "0123456789+-*/()"

# Difficulty settings exercised by the property tests (each generates problems quickly).
CONFIGS = [
    {},
    {"num_ops": 1},
    {"num_ops": 5},
    {"digits": 2, "num_ops": (1, 3)},
    {"digits": (1, 2), "operators": "+-"},
    {"operators": "+-*/"},
    {"operators": "*", "num_ops": (1, 3)},
    {"operators": "-/", "num_ops": (2, 3)},
    {"parens": False},
]


def brute_next_states(state: str) -> list[str]:
    """Every expression one permissible operation away from `state`, in operator order."""
    toks = TOKEN.findall(state)
    assert "".join(toks) == state
    out = []
    for k in range(1, len(toks) - 1):
        op, a, b = toks[k], toks[k - 1], toks[k + 1]
        if op not in PREC or not (a.isdigit() and b.isdigit()):
            continue
        left = toks[k - 2] if k >= 2 else None
        right = toks[k + 2] if k + 2 < len(toks) else None
        if left in PREC and PREC[left] >= PREC[op]:
            continue
        if right in PREC and PREC[right] > PREC[op]:
            continue
        x, y = Fraction(int(a)), Fraction(int(b))
        if op == "/" and y == 0:
            continue
        value = {"+": x + y, "-": x - y, "*": x * y, "/": x / y if y else None}[op]
        if value.denominator != 1 or value < 0:
            continue
        start, end = k - 1, k + 2
        if left == "(" and right == ")":  # the parentheses would enclose a single number
            start, end = start - 1, end + 1
        out.append("".join(toks[:start] + [str(value.numerator)] + toks[end:]))
    return out


def corruptions(step: str):
    """Every single-character replacement, deletion and insertion over VOCAB."""
    for i, ch in enumerate(step):
        for c in VOCAB:
            if c != ch:
                yield step[:i] + c + step[i + 1 :]
        yield step[:i] + step[i + 1 :]
    for i in range(len(step) + 1):
        for c in VOCAB:
            yield step[:i] + c + step[i:]


def at(state: str) -> Problem:
    """A problem whose current expression is `state` (to check one step in isolation)."""
    return Problem(id="t", question=state, answer="", meta={"expr": state})


def one_problem(config: dict, split: str, seed: int) -> tuple[Arith, Problem]:
    task = Arith(**config)
    return task, task.problems(split, n=1, seed=seed)[0]


problem_args = dict(
    config=st.sampled_from(CONFIGS),
    split=st.sampled_from(["train", "test"]),
    seed=st.integers(0, 10**6),
)


@settings(max_examples=150, deadline=None)
@given(**problem_args)
def test_reference_solution_checks_clean_and_is_canonical(config, split, seed):
    task, problem = one_problem(config, split, seed)
    steps = problem.meta["steps"]
    check = task.check_steps(problem, steps)
    assert check.labels == [True] * len(steps)
    assert check.first_error is None and check.reasons == [""] * len(steps)
    assert task.is_complete(problem, steps)
    assert task.is_correct(problem, task.reference(problem))
    # Independently: each step is the leftmost brute-force reduction of the previous one.
    state = problem.question
    for step in steps[:-1]:
        assert step == brute_next_states(state)[0]
        state = step
    assert state == problem.answer and steps[-1] == f"Answer: {problem.answer}"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**problem_args)
def test_every_single_character_corruption_is_caught(config, split, seed):
    task, problem = one_problem(config, split, seed)
    state = problem.question
    for step in problem.meta["steps"]:
        valid = set(brute_next_states(state))
        for bad in corruptions(step):
            text = "".join(bad.split())
            if not text:  # deleting the only character leaves no step at all (split_steps drops it)
                continue
            if state.isdigit():  # the answer line
                m = re.fullmatch(r"(?i)answer:(.*)", text)
                expected = bool(m) and m.group(1) == state
            else:
                expected = text in valid
            check = task.check_steps(at(state), [bad])
            assert check.labels == [expected], (state, step, bad, check.reasons)
            assert (check.first_error is None) == expected
            assert (check.reasons[0] == "") == expected
        state = step if not step.startswith("Answer") else state


@settings(max_examples=150, deadline=None)
@given(data=st.data(), **problem_args)
def test_any_order_of_valid_reductions_is_accepted(data, config, split, seed):
    """A random walk through brute-force reductions, then the answer: all labelled True."""
    task, problem = one_problem(config, split, seed)
    state, steps = problem.question, []
    while not state.isdigit():
        options = brute_next_states(state)
        assert options, state  # generated problems never get stuck
        state = data.draw(st.sampled_from(options))
        steps.append(state)
    steps.append(f"Answer: {state}")
    assert state == problem.answer
    assert task.check_steps(problem, steps).labels == [True] * len(steps)
    assert task.is_complete(problem, steps)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.text(alphabet=VOCAB + " Answer:x\t", max_size=30), max_size=6))
def test_arbitrary_text_never_crashes(steps):
    task = Arith()
    problem = at("(3+4)*5-2")
    check = task.check_steps(problem, steps)
    assert len(check.labels) == len(check.reasons) == len(steps)
    if check.first_error is not None:
        assert not any(check.labels[check.first_error :])
        assert all(r == "after first error" for r in check.reasons[check.first_error + 1 :])


def test_worked_example_from_the_docs():
    task = Arith()
    problem = at("(3+4)*5-2")
    assert task.check_steps(problem, ["7*5-2", "35-2", "33", "Answer: 33"]).labels == [True] * 4


def test_any_valid_order_is_accepted():
    task = Arith()
    steps = ["2*3+20", "6+20", "26", "Answer: 26"]
    assert task.check_steps(at("2*3+4*5"), steps).labels == [True] * 4
    assert task.check_steps(at("(1+2)*(3+4)"), ["(1+2)*7", "3*7", "21"]).labels == [True] * 3


def test_left_associativity_is_enforced():
    check = Arith().check_steps(at("8-3-2"), ["8-1"])
    assert check.labels == [False]
    assert check.reasons == ["wrong value: step evaluates to 7, but the expression equals 3"]
    check = Arith().check_steps(at("1+2+3"), ["1+5"])  # true, but not left to right
    assert check.labels == [False] and check.reasons == ["not a valid next step"]


def test_skipped_and_wrong_steps_are_rejected_with_reasons():
    task = Arith()
    problem = at("(3+4)*5-2")
    skipped = task.check_steps(problem, ["35-2"])
    assert skipped.labels == [False] and skipped.reasons == ["not a valid next step"]
    reordered = task.check_steps(problem, ["5*7-2"])
    assert reordered.labels == [False] and reordered.reasons == ["not a valid next step"]
    wrong = task.check_steps(problem, ["7*5-3"])
    assert wrong.reasons == ["wrong value: step evaluates to 32, but the expression equals 33"]
    garbage = task.check_steps(problem, ["7*5-2=33"])
    assert garbage.reasons[0].startswith("cannot parse step: unexpected character '='")
    unparsable = task.check_steps(problem, ["__import__('os')"])
    assert unparsable.labels == [False] and "cannot parse" in unparsable.reasons[0]


def test_first_error_and_labels_after_it():
    task = Arith()
    problem = at("(3+4)*5-2")
    check = task.check_steps(problem, ["7*5-2", "35-2", "34", "Answer: 34"])
    assert check.labels == [True, True, False, False]
    assert check.first_error == 2
    assert check.reasons[2] == "wrong value: step evaluates to 34, but the expression equals 33"
    assert check.reasons[3] == "after first error"
    # A step that would have been right after the error is still False.
    check = task.check_steps(problem, ["7*5-2", "36-2", "35-2", "33"])
    assert check.labels == [True, False, False, False] and check.first_error == 1


def test_answer_line_rules():
    task = Arith()
    problem = at("(3+4)*5-2")
    early = task.check_steps(problem, ["7*5-2", "Answer: 33"])
    assert early.labels == [True, False]
    assert early.reasons[1] == "answer given before the expression was fully reduced"
    wrong = task.check_steps(problem, ["7*5-2", "35-2", "33", "Answer: 34"])
    assert wrong.labels == [True, True, True, False] and "wrong answer '34'" in wrong.reasons[3]
    padded = task.check_steps(problem, ["7*5-2", "35-2", "33", "answer:033"])
    assert padded.labels[3] is False
    after = task.check_steps(problem, ["7*5-2", "35-2", "33", "ANSWER:33", "33"])
    assert after.labels == [True, True, True, True, False]
    assert after.reasons[4] == "step after the answer"
    repeated = task.check_steps(problem, ["7*5-2", "35-2", "33", "33"])
    assert repeated.labels[3] is False and "expected 'Answer: 33'" in repeated.reasons[3]


def test_partial_solutions_and_blank_steps():
    task = Arith()
    problem = at("(3+4)*5-2")
    partial = task.check_steps(problem, ["7*5-2", "35-2"])
    assert partial.labels == [True, True] and partial.first_error is None
    assert not task.is_complete(problem, ["7*5-2", "35-2"])
    assert task.is_complete(problem, [" 7 * 5 - 2", "35-2", "33", "Answer: 33", ""])
    blanks = task.check_steps(problem, ["7*5-2", "", "35-2", "  "])
    assert blanks.labels == [True, True, True, True]
    text = "7*5-2\n\n35-2\n33\nAnswer: 33\n"
    assert task.split_steps(text) == ["7*5-2", "35-2", "33", "Answer: 33"]
    assert task.check_steps(problem, task.split_steps(text)).labels == [True] * 4


def test_is_correct_uses_the_final_answer():
    task = get_task("arith")
    problem = task.problems("test", n=1, seed=0)[0]
    assert task.is_correct(problem, task.reference(problem))
    assert not task.is_correct(problem, f"Answer: {int(problem.answer) + 1}")
    prompt = task.prompt(problem)
    assert problem.question in prompt and prompt.endswith("\n")


def test_problems_are_deterministic_and_extend_as_prefixes():
    task = Arith()
    a = task.problems("test", n=30, seed=3)
    assert a == task.problems("test", n=30, seed=3)
    assert a[:10] == task.problems("test", n=10, seed=3)
    assert [p.question for p in a] != [p.question for p in task.problems("test", n=30, seed=4)]
    assert [p.id for p in a[:2]] == ["arith-test-0", "arith-test-1"]
    assert len({p.question for p in a}) == 30


def test_train_and_test_are_disjoint():
    task = Arith()
    train = {p.question for seed in (0, 1) for p in task.problems("train", n=1500, seed=seed)}
    test = {p.question for p in task.problems("test", n=1000, seed=0)}
    assert train.isdisjoint(test)
    assert all(stable_split(f"arith:{q}") == "test" for q in test)
    assert all(stable_split(f"arith:{q}") == "train" for q in train)
    with pytest.raises(ValueError, match="split must be one of"):
        task.problems("validation", n=1)


def numbers_in(text: str) -> list[int]:
    return [int(t) for t in re.findall(r"\d+", text)]


def test_difficulty_knobs():
    three = Arith(num_ops=3).problems("train", n=50)
    assert all(sum(p.question.count(o) for o in "+-*/") == 3 for p in three)
    assert all(p.meta["difficulty"] == p.meta["num_ops"] == 3 for p in three)

    two_digit = Arith(digits=2, num_ops=(1, 2)).problems("train", n=50)
    assert all(10 <= x <= 99 for p in two_digit for x in numbers_in(p.question))
    assert all(x <= 999 for p in two_digit for s in p.meta["steps"] for x in numbers_in(s))

    default = Arith().problems("train", n=200)
    assert all(x <= 9 for p in default for x in numbers_in(p.question))
    assert all(x <= 99 for p in default for s in p.meta["steps"] for x in numbers_in(s))
    assert any("(" in p.question for p in default)
    assert {len(p.meta["steps"]) - 1 for p in default} == {2, 3, 4}

    plus = Arith(operators="+").problems("train", n=50)
    assert all(set(p.question) <= set("0123456789+()") for p in plus)
    flat = Arith(parens=False).problems("train", n=50)
    assert not any("(" in p.question for p in flat)
    capped = Arith(operators="*", max_value=20).problems("train", n=50)
    assert all(x <= 20 for p in capped for s in p.meta["steps"] for x in numbers_in(s))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_ops": 0}, "num_ops must be an int >= 1"),
        ({"num_ops": (3, 2)}, "num_ops must be"),
        ({"digits": "2"}, "digits must be"),
        ({"operators": "+^"}, "operators must be a non-empty subset"),
        ({"max_value": 0}, "max_value must be >= 1"),
    ],
)
def test_bad_knobs_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Arith(**kwargs)


def test_instruction_knob_only_changes_the_prompt():
    from ponder.tasks import get_task

    with_inst, bare = get_task("arith"), get_task("arith", instruction=False)
    p, q = with_inst.problems("test", n=3, seed=1), bare.problems("test", n=3, seed=1)
    assert [x.question for x in p] == [x.question for x in q]
    assert bare.prompt(q[0]) == q[0].question + "\n"
    assert with_inst.prompt(p[0]).startswith(f"Compute {p[0].question}.")


# --- next_step: a correct step after a correct prefix (what Step-DPO prefers) -------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), **problem_args)
def test_next_step_is_accepted_by_the_step_checker_after_any_correct_prefix(data, config, split, seed):
    task, problem = one_problem(config, split, seed)
    # a correct prefix along a random valid order of reductions, not only the canonical one
    prefix, state = [], problem.meta["expr"]
    for _ in range(data.draw(st.integers(0, len(problem.meta["steps"]) - 1))):
        state = data.draw(st.sampled_from(brute_next_states(state)))
        prefix.append(state)
    step = task.next_step(problem, prefix)
    assert step == (brute_next_states(state)[0] if brute_next_states(state) else f"Answer: {problem.answer}")
    assert task.check_steps(problem, prefix + [step]).labels == [True] * (len(prefix) + 1)


def test_next_step_walks_the_reference_solution_and_stops_after_the_answer():
    task = get_task("arith")
    problem = task.problems("train", n=1, seed=0)[0]
    steps = problem.meta["steps"]
    assert [task.next_step(problem, steps[:k]) for k in range(len(steps))] == steps
    assert task.next_step(problem, steps) is None
    with pytest.raises(ValueError, match="step 0 of the prefix is wrong"):
        task.next_step(problem, ["1000"])


# --- the registry and task knobs ----------------------------------------------------------------


def test_every_task_module_is_imported_by_the_registry():
    """A module of ponder.tasks that registers a task but is not imported by the package
    would be missing from `get_task` until something else happened to import it."""
    import ast
    import pathlib
    import subprocess
    import sys

    import ponder.tasks

    folder = pathlib.Path(ponder.tasks.__file__).parent
    registering = {
        f"ponder.tasks.{path.stem}"
        for path in folder.glob("*.py")
        if any(isinstance(node, ast.ClassDef) and any("register_task" in ast.unparse(d) for d in node.decorator_list)
               for node in ast.walk(ast.parse(path.read_text())))
    }
    assert {"ponder.tasks.arith", "ponder.tasks.countdown", "ponder.tasks.add_words"} <= registering
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, ponder.tasks; print(' '.join(sys.modules))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert registering - set(loaded) == set()


def test_every_task_class_is_registered_or_built_by_get_task():
    import importlib
    import pkgutil

    import ponder.tasks
    from ponder.tasks import TASKS, Task
    from ponder.tasks.files import FileTask
    from ponder.tasks.gym import GymTask
    from ponder.tasks.hub_data import HubDatasetTask

    classes = set()
    for module in pkgutil.iter_modules(ponder.tasks.__path__):
        mod = importlib.import_module(f"ponder.tasks.{module.name}")
        classes |= {c for c in vars(mod).values()
                    if isinstance(c, type) and issubclass(c, Task) and c is not Task and c.__module__ == mod.__name__}
    # GymTask is reached by "gym:<dataset>", FileTask by a path and HubDatasetTask by "hf:<name>" or a
    # saved dataset folder; every other task has a name
    assert classes - {GymTask, FileTask, HubDatasetTask} == set(TASKS.values())


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown task 'arithmetic': expected one of add_words, arith, countdown"):
        get_task("arithmetic")


def test_unknown_knob_is_named_with_the_task_knobs_and_defaults():
    with pytest.raises(ValueError) as e:
        get_task("arith", num_op=3)
    message = str(e.value)
    assert message.startswith("task 'arith' has no knob 'num_op' (did you mean 'num_ops'?)")
    assert "num_ops=(2, 4), digits=1, operators='+-*', parens=True, max_value=None, instruction=True" in message
    with pytest.raises(ValueError, match=r"task 'countdown' has no knob 'digits'; its knobs \(with defaults\): "
                                         r"count=\(3, 4\), max_number=99, max_target=100"):
        get_task("countdown", digits=2)


@pytest.mark.parametrize("value", ["maybe", "", 2, None, [True]])
def test_a_boolean_knob_refuses_what_is_not_a_boolean(value):
    with pytest.raises(ValueError, match=rf"task 'arith': knob 'instruction' must be true or false, got {re.escape(repr(value))}"):
        get_task("arith", instruction=value)


def test_a_boolean_knob_takes_booleans_spelled_as_text():
    assert get_task("arith", instruction="false").instruction is False
    assert get_task("arith", instruction="True").instruction is True
    assert get_task("arith", parens="no").parens is False
    assert get_task("arith", instruction=0).instruction is False
