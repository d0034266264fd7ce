"""The evaluation recipes `gsm8k_cot` and `math500` (ponder.tasks.recipes): prompts as the
published evaluations write them, their answer extraction, math-verify's equivalences on
MATH-style answers, and `ponder eval` end to end - offline, on real GSM8K rows, a MATH-500
style JSONL written here and a Hugging Face cache laid out as `hf download` leaves it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ponder.tasks import get_task
from ponder.tasks.files import DatasetError
from ponder.tasks.recipes import BOXED_INSTRUCTION, GSM8K_COT_EXEMPLARS

GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k"
HASH = "0123456789abcdef0123456789abcdef01234567"

# MATH-500 style rows (HuggingFaceH4/MATH-500's columns); answers in the forms MATH uses
MATH_ROWS = [
    {"problem": "What is $\\frac{3}{6}$ in lowest terms?",
     "solution": "Divide by 3:\n$\\frac{3}{6} = \\boxed{\\frac{1}{2}}$.",
     "answer": "\\frac{1}{2}", "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/1.json"},
    {"problem": "Simplify $\\sqrt{18}$.", "solution": "$\\sqrt{18} = \\sqrt{9 \\cdot 2} = \\boxed{3\\sqrt{2}}$.",
     "answer": "3\\sqrt{2}", "subject": "Algebra", "level": 2, "unique_id": "test/algebra/2.json"},
    {"problem": "Where do $y = x + 1$ and $y = 3 - x$ meet?", "solution": "$x + 1 = 3 - x$, so $x = 1$, $y = 2$: "
     "$\\boxed{(1,2)}$.", "answer": "(1,2)", "subject": "Algebra", "level": 3, "unique_id": "test/algebra/3.json"},
    {"problem": "What is $7 \\cdot 8$?", "solution": "$7 \\cdot 8 = \\boxed{56}$.", "answer": "56",
     "subject": "Prealgebra", "level": 1, "unique_id": "test/prealgebra/4.json"},
    {"problem": "Find the angle whose sine is $1$, in radians.", "solution": "It is $\\boxed{\\frac{\\pi}{2}}$.",
     "answer": "\\frac{\\pi}{2}", "subject": "Precalculus", "level": 5, "unique_id": "test/precalculus/5.json"},
]


@pytest.fixture(scope="module")
def gsm8k_dir() -> Path:
    if not (GSM8K / "train.jsonl").is_file() or not (GSM8K / "test.jsonl").is_file():
        pytest.skip(f"GSM8K rows not found at {GSM8K} (train.jsonl, test.jsonl)")
    return GSM8K


@pytest.fixture
def math_jsonl(tmp_path) -> Path:
    path = tmp_path / "math500.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in MATH_ROWS))
    return path


def offline_env(home: Path) -> dict:
    """The environment of a subprocess with no Hub: an HF_HOME of its own, offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HF_HOME=str(home), HF_DATASETS_CACHE=str(home / "datasets"), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return env


# --- gsm8k_cot: prompts ------------------------------------------------------------------------


def test_eight_shot_prompt_is_wei_et_al_exemplars_then_the_question(gsm8k_dir):
    task = get_task("gsm8k_cot", path=str(gsm8k_dir))
    problem = task.problems("test", n=1, seed=0)[0]
    prompt = task.prompt(problem)
    blocks = prompt.split("\n\n")
    assert len(blocks) == 9 and prompt.count("Q: ") == 9
    # Wei et al. 2022, Table 20: the exemplars' questions open and answers close like this
    assert blocks[0].startswith("Q: There are 15 trees in the grove.")
    assert blocks[7].startswith("Q: Olivia has $23.")
    assert blocks[:8] == [f"Q: {q}\nA: {a}" for q, a in GSM8K_COT_EXEMPLARS]
    assert blocks[1] == ("Q: If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in "
                         "the parking lot?\nA: There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. "
                         "The answer is 5.")
    assert [task.extract_answer(b.split("\nA: ")[1]) for b in blocks[:8]] == ["6", "5", "39", "8", "9", "29", "33", "8"]
    assert blocks[8] == f"Q: {problem.question}\nA:" and prompt.endswith("A:")


def test_fewer_shots_take_the_first_exemplars(gsm8k_dir):
    task = get_task("gsm8k_cot", path=str(gsm8k_dir), shots=2)
    prompt = task.prompt(task.problems("test", n=1)[0])
    assert prompt.count("Q: ") == 3 and "3 + 2 = 5. The answer is 5." in prompt and "Leah" not in prompt


def test_zero_shot_prompt_is_the_question_and_the_boxed_instruction(gsm8k_dir):
    task = get_task("gsm8k_cot", path=str(gsm8k_dir), shots=0)
    problem = task.problems("test", n=1)[0]
    assert task.prompt(problem) == (f"{problem.question}\n"
                                    "Please reason step by step, and put your final answer within \\boxed{}.")
    assert BOXED_INSTRUCTION in task.prompt(problem) and "Q:" not in task.prompt(problem)


# --- gsm8k_cot: answers ------------------------------------------------------------------------


def test_few_shot_extraction_reads_the_answer_is_before_the_next_question(gsm8k_dir):
    task = get_task("gsm8k_cot", path=str(gsm8k_dir))
    assert task.extract_answer("She has 8 * 9 = 72 apples. The answer is 72.") == "72"
    assert task.extract_answer("In all 1,080 dollars. The answer is $1,080.") == "1080"
    assert task.extract_answer("So -3 degrees. The answer is -3.") == "-3"
    # a base model goes on inventing the next exemplar: its answers are not this one's
    assert task.extract_answer("9 * 8 = 72. The answer is 72.\n\nQ: Tom has 5 pens. How many?\nA: The answer is 5.") \
        == "72"
    # no "The answer is": the last number, as lm-eval's flexible-extract; still cut at "Q:"
    assert task.extract_answer("She makes 9 * 2 = $18 every day.\n\nQ: What is 3 + 4?") == "18"
    assert task.extract_answer("I do not know.") is None


def test_zero_shot_extraction_reads_the_last_box(gsm8k_dir):
    task = get_task("gsm8k_cot", path=str(gsm8k_dir), shots=0)
    assert task.extract_answer("First \\boxed{7}, no: 8 * 9 = 72, so \\boxed{72}.") == "72"
    assert task.extract_answer("The total is $1,080.") == "1080"  # no box: the last number


def test_is_correct_compares_numbers_with_gsm8ks_gold(gsm8k_dir):
    few, zero = (get_task("gsm8k_cot", path=str(gsm8k_dir), shots=s) for s in (8, 0))
    problem = few.problems("test")[0]  # Janet's ducks: 16 - 3 - 4 = 9 eggs at $2
    assert problem.answer == "18"
    assert few.is_correct(problem, "9 * 2 = 18. The answer is $18.")
    assert few.is_correct(problem, "9 * 2 = 18. The answer is 18.00.")
    assert not few.is_correct(problem, "16 - 3 = 13. The answer is 26.")
    assert not few.is_correct(problem, "The answer is 26.\n\nQ: Ann has 18 cats.\nA: The answer is 18.")
    assert zero.is_correct(problem, "She sells 9 eggs for $\\boxed{\\$18}$.")
    assert zero.is_correct(problem, "\\boxed{18 \\text{ dollars}}")  # units in the box: math-verify
    assert not zero.is_correct(problem, "\\boxed{26}, not 18")  # the box wins over the last number


def test_gsm8k_problems_are_the_gsm8k_tasks_with_the_recipes_reference(gsm8k_dir):
    """Same ids and gold as the `gsm8k` file task; the reference steps end in the recipe's own
    answer format, so SFT on the train split teaches what the recipe reads."""
    plain = get_task("gsm8k", path=str(gsm8k_dir)).problems("train", n=5, seed=3)
    for shots in (8, 0):
        task = get_task("gsm8k_cot", path=str(gsm8k_dir), shots=shots)
        problems = task.problems("train", n=5, seed=3)
        assert [(p.id, p.question, p.answer) for p in problems] == [(p.id, p.question, p.answer) for p in plain]
        for p, q in zip(problems, plain):
            assert p.meta["steps"][:-1] == q.meta["steps"][:-1]
            reference = task.reference(p)
            assert task.is_correct(p, reference)
            last = f"The answer is {p.answer}." if shots else f"The answer is \\boxed{{{p.answer}}}."
            assert reference.endswith(last)


def test_bad_shots_and_unknown_knobs_are_refused(gsm8k_dir):
    for bad in (9, -1, "eight", True):
        with pytest.raises(ValueError, match=r"task 'gsm8k_cot': shots must be a whole number from 0 .* to 8"):
            get_task("gsm8k_cot", path=str(gsm8k_dir), shots=bad)
    with pytest.raises(ValueError, match=r"task 'gsm8k_cot' has no knob 'shot' \(did you mean 'shots'\?\)"):
        get_task("gsm8k_cot", path=str(gsm8k_dir), shot=8)


# --- math500 -----------------------------------------------------------------------------------


def test_math500_rows_become_problems_with_level_as_difficulty(math_jsonl):
    task = get_task("math500", path=str(math_jsonl))
    problems = task.problems("test")
    assert [p.id for p in problems] == [r["unique_id"] for r in MATH_ROWS]
    assert [p.answer for p in problems] == [r["answer"] for r in MATH_ROWS]
    assert [p.meta["difficulty"] for p in problems] == [1, 2, 3, 1, 5]
    assert problems[1].meta["subject"] == "Algebra"
    assert problems[0].meta["steps"] == ["Divide by 3:", "$\\frac{3}{6} = \\boxed{\\frac{1}{2}}$."]
    assert task.prompt(problems[0]) == ("What is $\\frac{3}{6}$ in lowest terms?\n"
                                        "Please reason step by step, and put your final answer within \\boxed{}.")
    assert all(task.is_correct(p, task.reference(p)) for p in problems)


def test_math500_answers_are_equal_as_math_verify_finds_them(math_jsonl):
    task = get_task("math500", path=str(math_jsonl))
    half, root, point, _, angle = task.problems("test")
    accepted = [(half, "\\boxed{0.5}"), (half, "\\boxed{\\frac12}"), (half, "\\boxed{\\dfrac{2}{4}}"),
                (half, "\\boxed{1/2}"), (root, "\\boxed{\\sqrt{18}}"), (root, "\\boxed{3\\sqrt2}"),
                (point, "\\boxed{(1, 2)}"), (point, "\\boxed{\\left(1,2\\right)}"), (angle, "\\boxed{\\pi/2}")]
    refused = [(root, "\\boxed{4.24}"),  # a decimal near 3*sqrt(2) is not 3*sqrt(2)
               (root, "\\boxed{2\\sqrt{3}}"), (point, "\\boxed{(2,1)}"), (point, "\\boxed{[1,2]}"),
               (half, "the answer is 0.5"),  # no box: no answer (no last-number guess on MATH)
               (half, "\\boxed{0.5} at first, then \\boxed{2}")]  # the last box counts
    for problem, text in accepted:
        assert task.is_correct(problem, text), (problem.answer, text)
    for problem, text in refused:
        assert not task.is_correct(problem, text), (problem.answer, text)


def test_math500_has_no_train_split(math_jsonl):
    task = get_task("math500", path=str(math_jsonl))
    with pytest.raises(DatasetError, match=r"no 'train' split: MATH-500 is a test set .* has only 'test'"):
        task.problems("train")


DUMP = """
import json
from ponder.tasks import get_task
task = get_task("math500")
problems = task.problems("test")
try:
    task.problems("train")
    error = None
except ValueError as e:
    error = str(e)
print(json.dumps({"ids": [p.id for p in problems], "answers": [p.answer for p in problems], "train": error}))
"""


def test_math500_default_reads_huggingfaceh4_math500_from_the_hub_cache(tmp_path):
    """`get_task("math500")` with no path reads hf:HuggingFaceH4/MATH-500: here from a Hub
    cache laid out as `hf download HuggingFaceH4/MATH-500 --repo-type dataset` leaves it (the
    dataset is one test.jsonl), offline."""
    home = tmp_path / "hf-home"
    repo = home / "hub" / "datasets--HuggingFaceH4--MATH-500"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(HASH)
    snap = repo / "snapshots" / HASH
    snap.mkdir(parents=True)
    (snap / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MATH_ROWS))
    res = subprocess.run([sys.executable, "-c", DUMP], capture_output=True, text=True, env=offline_env(home),
                         timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["ids"] == [r["unique_id"] for r in MATH_ROWS]
    assert out["answers"] == [r["answer"] for r in MATH_ROWS]
    assert "no 'train' split: MATH-500 is a test set" in out["train"]


# --- the real CLI --------------------------------------------------------------------------------


def ponder(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ponder", *args], capture_output=True, text=True,
                          env=offline_env(home), timeout=300)


def test_cli_eval_gsm8k_cot_zero_shot_on_local_rows(gsm8k_dir, tiny_dir, tmp_path):
    """`ponder eval --task gsm8k_cot --task-arg path=... --task-arg shots=0` runs: 4 problems
    of GSM8K's test split with their `#### N` gold (a random model answers none right)."""
    out = tmp_path / "eval.json"
    res = ponder(tmp_path / "hf-home", "eval", "--task", "gsm8k_cot", "--task-arg", f"path={gsm8k_dir}",
                 "--task-arg", "shots=0", "--model", str(tiny_dir), "--n", "4", "--k", "0",
                 "--max-tokens", "8", "--output", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    result = json.loads(out.read_text())
    assert result["summary"]["problems"] == 4
    gold = {p.id: p.answer for p in get_task("gsm8k_cot", path=str(gsm8k_dir)).problems("test")}
    assert all(r["answer"] == gold[r["id"]] for r in result["records"])


def test_cli_default_gsm8k_not_cached_offline_is_one_line(tiny_dir, tmp_path):
    """The default source, hf:openai/gsm8k:main, in no cache and offline: the hub loader's one
    line naming the dataset and the command that fetches it, exit status 2."""
    res = ponder(tmp_path / "hf-home", "eval", "--task", "gsm8k_cot", "--model", str(tiny_dir),
                 "--n", "2", "--k", "0", "--max-tokens", "4")
    assert res.returncode == 2
    assert "Traceback" not in res.stdout + res.stderr
    errors = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stdout + res.stderr
    assert "'openai/gsm8k'" in errors[0] and "hf download openai/gsm8k --repo-type dataset" in errors[0]
