"""File datasets: the real GSM8K files, and MATH / generic / Parquet / malformed files."""
import json
import re
from pathlib import Path

import pytest

from ponder.tasks import get_task
from ponder.tasks.files import DatasetError, FileTask, file_task

GSM8K_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k"


def needs_gsm8k():
    if not (GSM8K_DIR / "test.jsonl").exists():
        pytest.skip(f"GSM8K not found at {GSM8K_DIR} (shared data directory absent)")


def fails(message: str):
    """Expect a DatasetError whose message contains `message` verbatim."""
    return pytest.raises(DatasetError, match=re.escape(message))


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# --- GSM8K ----------------------------------------------------------------------------------


def test_gsm8k_directory_loads_both_splits():
    needs_gsm8k()
    task = get_task("gsm8k", path=GSM8K_DIR)
    test, train = task.problems("test"), task.problems("train")
    assert (len(test), len(train)) == (1319, 7473)
    first = test[0]
    assert first.id == "gsm8k-test-0" and first.answer == "18"
    assert first.question.startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert first.meta["steps"] == [
        "Janet sells 16 - 3 - 4 = 9 duck eggs a day.",
        "She makes 9 * 2 = $18 every day at the farmer\u2019s market.",
        "Answer: 18",
    ]
    assert first.meta["source"].endswith("test.jsonl:1")
    # Calculator annotations are gone everywhere; golds are plain numbers without commas.
    assert not any("<<" in s for p in train for s in p.meta["steps"])
    assert all(re.fullmatch(r"-?\d+", p.answer) for p in test + train)
    assert any(p.answer == "-3" for p in test)  # a negative gold survives
    assert {p.id for p in train}.isdisjoint({p.id for p in test})


def test_gsm8k_single_file_is_sniffed_and_subsets_are_seeded():
    needs_gsm8k()
    task = get_task(str(GSM8K_DIR / "test.jsonl"))
    assert isinstance(task, FileTask) and task.format == "gsm8k" and task.name == "gsm8k"
    subset = task.problems("test", n=25, seed=7)
    assert len(subset) == 25
    assert subset == task.problems("test", n=25, seed=7)
    assert subset != task.problems("test", n=25, seed=8)
    index = [int(p.id.rsplit("-", 1)[1]) for p in subset]
    assert index == sorted(index)  # file order is kept
    assert len(task.problems("test", n=5000)) == 1319
    assert task.problems("train", n=3, seed=0) == task.problems("train", n=3, seed=0)


def test_gsm8k_task_needs_a_path():
    with pytest.raises(ValueError, match="task 'gsm8k' needs path="):
        get_task("gsm8k")


def test_gsm8k_malformed_rows_name_file_line_and_field(tmp_path):
    good = {"question": "What is 2+2?", "answer": "2+2=<<2+2=4>>4\n#### 4"}
    path = write_jsonl(tmp_path / "data.jsonl", [good] * 6 + [{"question": "Q?", "answer": "it is four"}])
    with pytest.raises(DatasetError) as err:
        get_task("gsm8k", path=path).problems("test")
    assert str(err.value) == (
        f"{path}:7: field 'answer': expected a string ending in '#### <number>', got 'it is four'"
    )
    missing = write_jsonl(tmp_path / "missing.jsonl", [good, {"question": "Q?", "solution": "#### 4"}])
    with fails(f"{missing}:2: missing field 'answer'"):
        get_task("gsm8k", path=missing).problems("test")
    empty_question = write_jsonl(tmp_path / "q.jsonl", [good, {"question": "  ", "answer": "#### 4"}])
    with fails(f"{empty_question}:2: field 'question': expected a non-empty string"):
        get_task("gsm8k", path=empty_question).problems("test")


def test_invalid_json_and_non_objects(tmp_path):
    good = {"question": "What is 2+2?", "answer": "#### 4"}
    path = write_jsonl(tmp_path / "data.jsonl", [good, "", '{"question": "Q", "answer": '])
    with fails(f"{path}:3: invalid JSON ("):
        file_task(path)
    listed = write_jsonl(tmp_path / "list.jsonl", [good, [1, 2]])
    with fails(f"{listed}:2: expected a JSON object, got list"):
        file_task(listed)
    assert issubclass(DatasetError, ValueError)


def test_missing_and_unrecognised_files(tmp_path):
    with pytest.raises(DatasetError, match="no such file or directory"):
        file_task(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with fails(f"{empty}: no rows"):
        file_task(empty)
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"text": "hello"}])
    with fails(f"{odd}:1: cannot tell the dataset format from the keys ['text']"):
        file_task(odd)
    with pytest.raises(ValueError, match="unknown task 'no-such-task'"):
        get_task("no-such-task")


# --- MATH -----------------------------------------------------------------------------------


def test_math_rows_gold_from_answer_or_last_box(tmp_path):
    rows = [
        {"problem": "Half of 1?", "solution": "We halve.\n\nSo $\\boxed{\\frac{1}{2}}$.", "level": "Level 2", "type": "Algebra"},
        {"problem": "Simplify x+x.", "solution": "First \\boxed{x} no, \\boxed{2x}.", "answer": "2x"},
        {"problem": "Set?", "solution": "It is $\\boxed{\\{1, 2\\}}$."},
        {"problem": "Just an answer", "answer": 7},
    ]
    task = get_task(str(write_jsonl(tmp_path / "math.jsonl", rows)))
    assert task.format == "math" and task.name == "math"
    p = task.problems("test")
    assert [x.answer for x in p] == ["\\frac{1}{2}", "2x", "\\{1, 2\\}", "7"]
    assert p[0].meta["difficulty"] == 2 and p[0].meta["type"] == "Algebra"
    assert p[0].meta["steps"] == ["We halve.", "So $\\boxed{\\frac{1}{2}}$."]
    assert "steps" not in p[3].meta and task.reference(p[3]) is None
    assert task.is_correct(p[0], task.reference(p[0]))
    assert task.is_correct(p[0], "so the answer is \\boxed{0.5}")
    assert not task.is_correct(p[0], "\\boxed{0.6}")
    assert task.is_correct(p[1], "Answer: 2*x")
    assert not task.is_correct(p[1], "Answer: 3x")


def test_math_row_without_any_answer_is_reported(tmp_path):
    rows = [{"problem": "P", "answer": "1"}, {"problem": "Q", "solution": "no box here"}]
    path = write_jsonl(tmp_path / "math.jsonl", rows)
    with fails(f"{path}:2: field 'solution': expected a \\boxed{{...}} final answer"):
        file_task(path).problems("test")


# --- generic, JSON arrays, Parquet, splits --------------------------------------------------


def test_generic_column_mapping(tmp_path):
    rows = [
        {"uid": "a1", "q": "2+3?", "a": 5, "s": ["2+3=5", "Answer: 5"]},
        {"uid": "a2", "q": "2*3?", "a": "6", "s": "2*3=6\n\nAnswer: 6"},
    ]
    path = write_jsonl(tmp_path / "mine.jsonl", rows)
    task = get_task(str(path), question_key="q", answer_key="a", solution_key="s", id_key="uid")
    p = task.problems("train")
    assert [(x.id, x.question, x.answer) for x in p] == [("a1", "2+3?", "5"), ("a2", "2*3?", "6")]
    assert p[1].meta["steps"] == ["2*3=6", "Answer: 6"]
    assert task.is_correct(p[0], task.reference(p[0])) and not task.is_correct(p[0], "Answer: 6")
    bad = write_jsonl(tmp_path / "bad.jsonl", rows + [{"uid": "a3", "q": "?", "a": None}])
    with fails(f"{bad}:3: field 'a': expected a non-empty string or a number, got None"):
        file_task(bad, question_key="q", answer_key="a").problems("test")


def test_plain_question_answer_rows_are_generic(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": "Capital of France?", "answer": "Paris"}])
    task = file_task(path)
    assert task.format == "generic"
    (p,) = task.problems("test")
    assert p.answer == "Paris" and task.is_correct(p, "Answer: Paris")


def test_json_array_files(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([{"question": "1+1?", "answer": "#### 2"}, {"question": "Q", "answer": 3}]))
    with fails(f"{path}:item 2: field 'answer': expected a string ending"):
        get_task(str(path)).problems("test")


def test_parquet_files(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"prompt": ["1+1?", "2+2?"], "target": ["2", "4"]}), path)
    task = get_task(str(path), question_key="prompt", answer_key="target")
    assert [(p.question, p.answer) for p in task.problems("test")] == [("1+1?", "2"), ("2+2?", "4")]
    assert task.problems("test")[1].meta["source"] == f"{path}:row 2"
    pq.write_table(pa.table({"prompt": ["1+1?", ""], "target": ["2", "4"]}), path)
    with fails(f"{path}:row 2: field 'prompt': expected a non-empty string, got ''"):
        file_task(path, question_key="prompt", answer_key="target").problems("test")


def test_directories_and_split_dicts(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"question": "a?", "answer": "#### 1"}] * 3)
    write_jsonl(tmp_path / "test.jsonl", [{"question": "b?", "answer": "#### 2"}])
    task = get_task(str(tmp_path))
    assert task.name == tmp_path.name
    assert [p.answer for p in task.problems("train")] == ["1", "1", "1"]
    assert [p.id for p in task.problems("test")] == [f"{tmp_path.name}-test-0"]
    with pytest.raises(DatasetError, match=r"no 'validation' split: this dataset has \['test', 'train'\]"):
        task.problems("validation")
    by_dict = file_task({"dev": tmp_path / "test.jsonl"}, name="mine")
    assert [p.id for p in by_dict.problems("dev")] == ["mine-dev-0"]
    with pytest.raises(DatasetError, match="no such file"):
        file_task({"dev": tmp_path / "absent.jsonl"})


def test_a_file_holds_one_format(tmp_path):
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps({"question": "a?", "answer": "3"}) + "\n"
                     + json.dumps({"question": "b?", "answer": "1+3=4\n#### 4"}) + "\n")
    with pytest.raises(DatasetError, match=r"mixed.jsonl:2: a gsm8k row, but the file's first row \(.*mixed.jsonl:1\) is generic"):
        get_task(str(mixed)).problems("test")
