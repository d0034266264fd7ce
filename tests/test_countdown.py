"""The `countdown` task: generation with known solutions, and the equation verifier."""
import re
from collections import Counter
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ponder.tasks import Problem, get_task
from ponder.tasks.base import stable_split
from ponder.tasks.countdown import Countdown, check_equation, extract_equation


def make(numbers, target) -> Problem:
    return Problem(id="t", question="", answer=str(target), meta={"numbers": numbers, "target": target})


@pytest.mark.parametrize(
    "equation",
    ["(50-25)*3+7", "7+3*(50-25)", "3*(50-25)+7=82", " ( 50 - 25 ) * 3 + 7 "],
)
def test_valid_equations_are_accepted(equation):
    assert check_equation([3, 7, 25, 50], 82, equation) == (True, "")


def test_numbers_may_be_left_unused_and_repeats_need_repeated_numbers():
    assert check_equation([3, 7, 25, 50], 75, "(50-25)*3")[0]
    assert check_equation([5, 5, 2], 25, "5*5")[0]


REUSE = "uses numbers not available (each given number may be used once): "


@pytest.mark.parametrize(
    "numbers, target, equation, reason",
    [
        ([3, 7, 25, 50], 82, "(50-25)*3+7+0", REUSE + "0"),
        ([3, 7, 25], 75, "25*3+25-25", REUSE + "25, 25"),
        ([5, 2], 25, "5*5", REUSE + "5"),
        ([5, 2], 10, "5*2*1", REUSE + "1"),
    ],
)
def test_reused_or_foreign_numbers_are_rejected(numbers, target, equation, reason):
    assert check_equation(numbers, target, equation) == (False, reason)


@pytest.mark.parametrize(
    "equation, reason",
    [
        ("50+25+7", "equation equals 82, not the target 80"),
        ("50/3+7", "equation equals 71/3, not the target 80"),  # true division, not 16+7
        ("(50-25)*3+7=80", "equation equals 82, not the target 80"),
        ("50=80=80", "more than one '=' in the equation"),
        ("50+", "cannot parse equation: expression ends where a number or '(' was expected"),
        ("", "no equation found"),
        (None, "no equation found"),
    ],
)
def test_wrong_values_are_rejected(equation, reason):
    assert check_equation([3, 7, 25, 50], 80, equation) == (False, reason)


def test_division_by_zero_is_wrong_not_an_exception():
    ok, reason = check_equation([3, 3, 7], 1, "7/(3-3)")
    assert not ok and reason == "equation is undefined: division by zero"


def test_claimed_result_must_be_the_target():
    ok, reason = check_equation([3, 7, 25, 50], 82, "50+25+7=83")
    assert not ok and reason == "the equation claims '83', but the target is 82"


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('touch {marker}')",
        "Answer: __import__('os').system('touch {marker}')",
        "<answer>open('{marker}', 'w')</answer>",
        "<answer>(lambda: 82)()</answer>",
        "<answer>9**9**9</answer>",
        "<answer>" + "(" * 5000 + "1" + ")" * 5000 + "</answer>",
        "<answer>" + "1+" * 5000 + "1</answer>",
        "<answer>-82</answer>",
        "<answer>82.0</answer>",
        "<answer>\u0668\u0662</answer>",  # Arabic-Indic digits: not our digits
    ],
)
def test_malicious_or_odd_strings_are_rejected_without_running_anything(text, tmp_path):
    marker = tmp_path / "pwned"
    task = Countdown()
    problem = make([82, 1, 2], 82)
    assert not task.is_correct(problem, text.format(marker=marker))
    assert not marker.exists()


def test_extraction_prefers_the_last_answer_tag_then_the_answer_line():
    text = "<think>try 1+2</think>\n<answer>3+4</answer>\nAnswer: 9\n<answer> 50-25 </answer>"
    assert extract_equation(text) == "50-25"
    assert extract_equation("1+2=3\nAnswer: 1+2\nanswer: (1+2)*3") == "(1+2)*3"
    assert extract_equation("no equation here") is None
    task = Countdown()
    problem = make([1, 2, 3], 9)
    assert task.is_correct(problem, "<think>\n1+2=3\n3*3=9\n</think>\n<answer>(1+2)*3</answer>")
    assert not task.is_correct(problem, "(1+2)*3")  # no answer marker: nothing committed to


@settings(max_examples=60, deadline=None)
@given(split=st.sampled_from(["train", "test"]), seed=st.integers(0, 10**6), count=st.sampled_from([3, 4, (3, 4)]))
def test_generated_problems_have_a_checked_reference_solution(split, seed, count):
    task = Countdown(count=count)
    problem = task.problems(split, n=1, seed=seed)[0]
    numbers, target = problem.meta["numbers"], problem.meta["target"]
    assert len(numbers) in ((count, count) if isinstance(count, int) else count)
    assert problem.meta["difficulty"] == len(numbers)
    assert all(1 <= x <= 99 for x in numbers) and 1 <= target <= 100 and target not in numbers
    assert task.is_correct(problem, task.reference(problem))
    # The reference steps are true one-operation lines that consume the numbers as a multiset.
    steps = problem.meta["steps"]
    pool = Counter(numbers)
    for line in steps[:-1]:
        a, op, b, c = re.fullmatch(r"(\d+)([-+*/])(\d+)=(\d+)", line).groups()
        a, b, c = int(a), int(b), int(c)
        assert pool[a] > 0 and pool[b] - (a == b) > 0, (line, pool)
        pool -= Counter([a, b])
        exact = {"+": a + b, "-": a - b, "*": a * b, "/": Fraction(a, b)}[op]
        assert exact == c and c >= 1
        pool[c] += 1
    assert pool == Counter([target])
    assert steps[-1].startswith("Answer: ")


def test_problems_are_deterministic_and_splits_disjoint():
    task = get_task("countdown")
    a = task.problems("test", n=50, seed=1)
    assert a == task.problems("test", n=50, seed=1)
    assert a[:5] == task.problems("test", n=5, seed=1)

    def key(p):
        return f"countdown:{sorted(p.meta['numbers'])}->{p.meta['target']}"

    train = {key(p) for p in task.problems("train", n=1000, seed=0)}
    test = {key(p) for p in task.problems("test", n=300, seed=0)}
    assert train.isdisjoint(test) and len(train) == 1000 and len(test) == 300
    assert all(stable_split(k) == "test" for k in test)


def test_prompt_states_numbers_and_target():
    task = Countdown()
    problem = task.problems("test", n=1)[0]
    prompt = task.prompt(problem)
    assert str(problem.meta["numbers"]) in prompt and str(problem.meta["target"]) in prompt
    assert prompt.endswith("\n")


def test_instruction_knob_only_changes_the_prompt():
    with_inst, bare = Countdown(count=3), Countdown(count=3, instruction=False)
    a, b = with_inst.problems("train", n=5, seed=1), bare.problems("train", n=5, seed=1)
    assert a == b
    prompt = bare.prompt(b[0])
    assert prompt == f"numbers {b[0].meta['numbers']}, target {b[0].meta['target']}\n"
    assert len(prompt) < len(with_inst.prompt(a[0])) / 3
    steps = "\n".join(b[0].meta["steps"])
    assert bare.is_correct(b[0], steps) and with_inst.is_correct(a[0], steps)


def test_bad_knobs_are_reported():
    with pytest.raises(ValueError, match="count must be"):
        Countdown(count=1)
    with pytest.raises(ValueError, match="split must be one of"):
        Countdown().problems("dev", n=1)


# --- exact step checking and next_step ------------------------------------------------------


def test_step_checker_labels_by_availability_value_and_reachability():
    task = Countdown()
    problem = make([3, 5, 7], 56)  # (3+5)*7
    assert task.has_step_checker and task.has_next_step
    good = task.check_steps(problem, ["3+5=8", " 8 * 7 = 56", "Answer: (3+5)*7"])
    assert good.labels == [True, True, True] and good.first_error is None
    # another route is fine too, and the answer may be any right equation
    assert task.check_steps(problem, ["5+3=8", "7*8=56", "<answer>7*(5+3)</answer>"]).first_error is None

    def reason(steps):
        check = task.check_steps(problem, steps)
        return check.first_error, check.reasons[check.first_error]

    assert reason(["3+4=7"]) == (0, "uses a number not available: the numbers left are [3, 5, 7]")
    assert reason(["3+5=8", "3*8=24"]) == (1, "uses a number not available: the numbers left are [7, 8]")
    assert reason(["3+5=9"]) == (0, "wrong value: 3+5 is 8, not 9")
    assert reason(["7/3=2"]) == (0, "wrong value: 7/3 is 7/3, not 2")
    assert reason(["3*5=15"]) == (0, "dead end: 56 cannot be reached from [7, 15]")
    assert reason(["3+5+7=15"]) == (0, "expected one operation on two numbers, 'a op b = c'")
    assert reason(["3+5"]) == (0, "expected one operation 'a op b = c' or 'Answer: <equation>'")
    assert reason(["3+5=8", "Answer: (3+5)*7"]) == (1, "answer given before the steps reached the target")
    assert reason(["3+5=8", "8*7=56", "Answer: 8*7"]) == (
        2, "wrong answer: uses numbers not available (each given number may be used once): 8")
    assert reason(["3+5=8", "8*7=56", "Answer: (3+5)*7", "1+1=2"]) == (3, "step after the answer")
    assert task.check_steps(problem, ["3+5=9", "8*7=56"]).labels == [False, False]


def test_step_checker_takes_repeated_numbers_as_a_multiset():
    task = Countdown()
    assert task.check_steps(make([5, 5, 2], 15), ["5*2=10", "10+5=15", "Answer: 5*2+5"]).first_error is None
    assert task.check_steps(make([5, 5, 2], 50), ["5*5=25", "25*2=50", "Answer: 5*5*2"]).first_error is None
    check = task.check_steps(make([5, 2, 3], 25), ["5*5=25"])
    assert check.reasons == ["uses a number not available: the numbers left are [2, 3, 5]"]


@settings(max_examples=40, deadline=None)
@given(split=st.sampled_from(["train", "test"]), seed=st.integers(0, 10**6), count=st.sampled_from([2, 3, 4]),
       cut=st.integers(0, 4))
def test_next_step_is_accepted_by_the_step_checker(split, seed, count, cut):
    task = Countdown(count=count)
    problem = task.problems(split, n=1, seed=seed)[0]
    reference = problem.meta["steps"]
    assert task.check_steps(problem, reference).first_error is None
    prefix = reference[: min(cut, len(reference) - 1)]
    while (step := task.next_step(problem, prefix)) is not None:
        prefix = prefix + [step]
        assert task.check_steps(problem, prefix).labels == [True] * len(prefix), prefix
    assert prefix[-1].startswith("Answer: ") and task.is_correct(problem, "\n".join(prefix))


def test_next_step_builds_the_answer_from_the_lines_written():
    task = Countdown()
    problem = make([3, 5, 7], 56)
    assert task.next_step(problem, ["3+5=8", "8*7=56"]) == "Answer: (3+5)*7"
    assert task.next_step(problem, ["3+5=8", "8*7=56", "Answer: (3+5)*7"]) is None
    assert task.check_steps(problem, [task.next_step(problem, [])]).labels == [True]
    assert task.next_step(make([1, 1], 50), []) is None  # no solution at all
    with pytest.raises(ValueError, match=r"step 0 of the prefix is wrong \(dead end"):
        task.next_step(problem, ["3*5=15"])


def test_evaluation_counts_a_right_answer_over_wrong_lines_as_right_but_not_valid():
    """`greedy_valid`: the answer is right AND every line passes the step checker - the figure
    that shows whether RL's gain is in the reasoning or in answers written to fit the target."""
    from ponder.eval.evaluate import EvalConfig, evaluate_chunk, summarize
    from ponder.generation.base import Generator, Sample, SamplingParams, Usage

    task = get_task("countdown", count=3, instruction=False)
    problems = [Problem(id=f"p{i}", question="", answer="2", meta={"numbers": [6, 17, 13], "target": 2})
                for i in range(3)]
    texts = ["17-13=4\n6-4=2\nAnswer: 6-(17-13)",   # right, every line computed
             "17-13=6\n6-6=2\nAnswer: 6-(17-13)",   # right equation over a wrong first line
             "17-13=4\n6+4=10\nAnswer: 6+(17-13)"]  # wrong answer

    class Fixed(Generator):  # the three solutions above, one per prompt, greedy
        usage = Usage()

        def generate(self, prompts, params: SamplingParams, seeds=None):
            return [[Sample(t, [], None, "stop", len(t))] for t in texts[:len(prompts)]]

    chunk = evaluate_chunk(Fixed(), task, problems, EvalConfig(k=0, max_tokens=80))
    assert [r["greedy_correct"] for r in chunk["records"]] == [True, True, False]
    assert [r["greedy_valid"] for r in chunk["records"]] == [True, False, False]
    summary = summarize([chunk], k=0)["summary"]
    assert summary["greedy_accuracy"] == pytest.approx(2 / 3)
    assert summary["greedy_valid_accuracy"] == pytest.approx(1 / 3)
