"""File datasets: GSM8K, MATH-style and generic question/answer tables on disk.

Three row formats, told apart by the first row's keys (`sniff_format`):

- **gsm8k** (Cobbe et al. 2021): `question`, `answer`, where `answer` is the worked solution
  with calculator annotations (`<<48/2=24>>`) ending in `#### <number>`. The gold answer is
  the number after `####` with thousands commas removed. The reference steps are the
  solution lines with the annotations stripped, and the final `#### N` line rewritten as
  `Answer: N` — the answer format of every other ponder task, so one model learns one
  convention (`extract_answer` reads either).
- **math** (Hendrycks et al. 2021): `problem`, and `solution` and/or `answer`. The gold
  answer is `answer` when present, else the last `\\boxed{}` of `solution`; the reference
  steps are the non-empty lines of `solution`; `level` ("Level 3") becomes the difficulty.
- **generic**: any table, given `question_key` and `answer_key` (and optionally
  `solution_key`, `id_key`).

Files are JSONL (one object per line), JSON (one array of objects) or Parquet (via pyarrow,
imported only when needed). A dataset is one file (every split reads it), a directory of
`<split>.jsonl` / `<split>.parquet` files, or a dict from split name to file. A bad row
fails with `DatasetError`, naming the file, the line, the field and what was expected.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from ponder.tasks.answers import answers_equal, extract_boxed, parse_number
from ponder.tasks.base import Problem, Task, register_task

SUFFIXES = (".jsonl", ".json", ".parquet")
_ANNOTATION = re.compile(r"<<[^<>]*>>")
_SPLIT_NAMES = {"train", "test", "validation", "val", "dev"}


class DatasetError(ValueError):
    """A dataset file that cannot be read as asked; the message says where and why."""


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- reading rows ---------------------------------------------------------------------------


def read_rows(path: str | Path) -> list[tuple[str, dict]]:
    """All rows of a data file as (location, row) pairs; location is `file:line` for JSONL,
    `file:item N` for a JSON array and `file:row N` for Parquet (all 1-based)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise DatasetError(
                f"{path}: reading Parquet needs pyarrow: pip install 'ponder[parquet]'"
            ) from e
        rows = pq.read_table(path).to_pylist()
        return [(f"{path}:row {i}", row) for i, row in enumerate(rows, 1)]
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DatasetError(f"{path}:{line}: not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start}); "
                           "save the file as UTF-8") from None
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}: invalid JSON ({e})") from e
        located = [(f"{path}:item {i}", item) for i, item in enumerate(items, 1)]
    else:
        located = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                located.append((f"{path}:{lineno}", json.loads(line)))
            except json.JSONDecodeError as e:
                raise DatasetError(f"{path}:{lineno}: invalid JSON ({e})") from e
    for where, row in located:
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if not located:
        raise DatasetError(f"{path}: no rows")
    return located


def sniff_format(row: dict, where: str) -> str:
    """Row format from the first row: its keys, and whether its answer has GSM8K's `####`."""
    keys = set(row)
    if {"question", "answer"} <= keys:
        return "gsm8k" if "####" in str(row["answer"]) else "generic"
    if "problem" in keys and keys & {"solution", "answer"}:
        return "math"
    raise DatasetError(
        f"{where}: cannot tell the dataset format from the keys {sorted(keys)}: expected "
        "'question' and 'answer' (GSM8K or generic), 'problem' and 'solution' or 'answer' "
        "(MATH), or pass question_key= and answer_key="
    )


def _field(row: dict, key: str, where: str) -> Any:
    if key not in row:
        raise DatasetError(f"{where}: missing field {key!r} (the row has {sorted(row)})")
    return row[key]


def _text(row: dict, key: str, where: str) -> str:
    value = _field(row, key, where)
    if not (isinstance(value, str) and value.strip()):
        raise DatasetError(
            f"{where}: field {key!r}: expected a non-empty string, got {_show(value)}"
        )
    return value


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


# --- one row -> one Problem, per format -------------------------------------------------------


def gsm8k_row(row: dict, where: str) -> tuple[str, str, dict]:
    """(question, gold answer, meta) of a GSM8K row."""
    question = _text(row, "question", where)
    expected = "a string ending in '#### <number>'"
    solution = _field(row, "answer", where)
    if not isinstance(solution, str):
        raise DatasetError(f"{where}: field 'answer': expected {expected}, got {_show(solution)}")
    gold = solution.rsplit("####", 1)[1].strip().replace(",", "") if "####" in solution else ""
    if parse_number(gold) is None:
        tail = solution if len(solution) <= 60 else "..." + solution[-57:]
        raise DatasetError(f"{where}: field 'answer': expected {expected}, got {_show(tail)}")
    body = _ANNOTATION.sub("", solution.rsplit("####", 1)[0])
    return question, gold, {"steps": _lines(body) + [f"Answer: {gold}"]}


def math_row(row: dict, where: str) -> tuple[str, str, dict]:
    """(question, gold answer, meta) of a MATH-style row."""
    question = _text(row, "problem", where)
    solution = row.get("solution")
    if solution is not None and not isinstance(solution, str):
        raise DatasetError(f"{where}: field 'solution': expected a string, got {_show(solution)}")
    gold = row.get("answer")
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        gold = str(gold)
    if not (isinstance(gold, str) and gold.strip()):
        if "answer" in row:
            raise DatasetError(
                f"{where}: field 'answer': expected a non-empty string, got {_show(gold)}"
            )
        gold = extract_boxed(solution or "")
        if not gold:
            raise DatasetError(
                f"{where}: field 'solution': expected a \\boxed{{...}} final answer "
                f"(or an 'answer' field), got {_show((solution or '')[-60:])}"
            )
    meta: dict[str, Any] = {"steps": _lines(solution)} if solution else {}
    level = re.search(r"\d+", str(row.get("level", "")))
    if level:
        meta["difficulty"] = int(level.group())
    for key in ("type", "subject"):  # MATH calls the subject "type", MATH-500 "subject"
        if key in row:
            meta[key] = row[key]
    return question, gold.strip(), meta


def generic_row(
    row: dict, where: str, question_key: str, answer_key: str, solution_key: str | None
) -> tuple[str, str, dict]:
    """(question, gold answer, meta) of a row read through a column mapping."""
    question = _text(row, question_key, where)
    gold = _field(row, answer_key, where)
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        gold = str(gold)
    if not (isinstance(gold, str) and gold.strip()):
        raise DatasetError(
            f"{where}: field {answer_key!r}: expected a non-empty string or a number, "
            f"got {_show(gold)}"
        )
    meta: dict[str, Any] = {}
    if solution_key is not None:
        solution = _field(row, solution_key, where)
        if isinstance(solution, str):
            meta["steps"] = _lines(solution)
        elif isinstance(solution, list) and all(isinstance(s, str) for s in solution):
            meta["steps"] = list(solution)
        else:
            raise DatasetError(
                f"{where}: field {solution_key!r}: expected a string or a list of strings, "
                f"got {_show(solution)}"
            )
    return question, gold.strip(), meta


# --- the task -------------------------------------------------------------------------------


class FileTask(Task):
    """A dataset on disk. `path`: a file (read for every split), a directory holding
    `<split>.jsonl`/`.json`/`.parquet`, or a dict {split: file}. `format`: "gsm8k", "math" or
    "generic"; sniffed from the first row when None (and "generic" whenever `question_key` or
    `answer_key` is given)."""

    def __init__(
        self,
        path: str | Path | dict[str, str | Path],
        format: str | None = None,
        question_key: str | None = None,
        answer_key: str | None = None,
        solution_key: str | None = None,
        id_key: str | None = None,
        name: str | None = None,
    ):
        self.source = str(path)
        self.paths = self._split_sources(path)
        first = next(iter(self.paths.values()))
        if format is None and (question_key or answer_key):
            format = "generic"
        self._sniffed_from = None
        if format is None:
            where, row = self._rows(next(iter(self.paths)))[0]
            format = sniff_format(row, where)
            self._sniffed_from = where
        if format not in ("gsm8k", "math", "generic"):
            raise ValueError(
                f"file task: format must be 'gsm8k', 'math' or 'generic', got {format!r}"
            )
        self.format = format
        self.question_key, self.answer_key = question_key or "question", answer_key or "answer"
        self.solution_key, self.id_key = solution_key, id_key
        if name is None:
            base = Path(path) if isinstance(path, (str, Path)) else first
            name = base.parent.name if base.stem in _SPLIT_NAMES and base.is_file() else base.stem
        self.name = name
        self._cache: dict[str, list[Problem]] = {}

    def _load(self, split: str) -> list[Problem]:
        if split not in self._cache:
            problems = []
            for index, (where, row) in enumerate(self._rows(split)):
                if self._sniffed_from is not None:
                    self._same_format(row, where)
                if self.format == "gsm8k":
                    question, gold, meta = gsm8k_row(row, where)
                elif self.format == "math":
                    question, gold, meta = math_row(row, where)
                else:
                    question, gold, meta = generic_row(
                        row, where, self.question_key, self.answer_key, self.solution_key
                    )
                pid = f"{self.name}-{split}-{index}"
                if self.id_key is not None:
                    pid = str(_field(row, self.id_key, where))
                meta["source"] = where
                problems.append(Problem(id=pid, question=question, answer=gold, meta=meta))
            self._cache[split] = problems
        return self._cache[split]

    def _split_sources(self, path) -> dict:
        """{split: where its rows come from}; here files (see `_split_paths`). A subclass that
        reads rows from elsewhere (ponder.tasks.hub_data) returns its own, with `_rows`."""
        return _split_paths(path)

    def _rows(self, split: str) -> list[tuple[str, dict]]:
        """The split's rows as (location, row) pairs, read from its file."""
        path = self.paths.get(split, self.paths.get("*"))
        if path is None:
            raise DatasetError(
                f"{self.source}: no {split!r} split: this dataset has {sorted(self.paths)}"
            )
        return read_rows(path)

    def _same_format(self, row: dict, where: str) -> None:
        """Every row must have the format sniffed from the first one: a GSM8K row among plain
        question/answer rows would otherwise keep its whole worked solution as the gold answer."""
        if self.format == "gsm8k":
            return  # gsm8k_row says what a row without '#### <number>' lacks
        try:
            here = sniff_format(row, where)
        except DatasetError:
            return  # the row's own reader says what it lacks
        if here != self.format:
            raise DatasetError(
                f"{where}: a {here} row, but the file's first row ({self._sniffed_from}) is {self.format}: "
                f"one file holds one format (pass format= to choose one; gsm8k answers end in '#### <number>')"
            )

    def problems(self, split: str = "test", n: int | None = None, seed: int = 0) -> list[Problem]:
        """The split's problems in file order; with `n`, a random subset of n chosen by
        `seed`, still in file order (all of them when the file has no more than n)."""
        problems = self._load(split)
        if n is None or n >= len(problems):
            return list(problems)
        keep = sorted(random.Random(seed).sample(range(len(problems)), n))
        return [problems[i] for i in keep]

    def prompt(self, problem: Problem) -> str:
        return (
            f"{problem.question}\n"
            "Solve it step by step, one step per line, then write 'Answer: <answer>'.\n"
        )

    def is_correct(self, problem: Problem, text: str) -> bool:
        return answers_equal(self.extract_answer(text), problem.answer)


def _split_paths(path: str | Path | dict) -> dict[str, Path]:
    """{split: file}; the key "*" stands for "every split" (a single file)."""
    if isinstance(path, dict):
        paths = {str(split): Path(p) for split, p in path.items()}
        for p in paths.values():
            if not p.is_file():
                raise DatasetError(f"{p}: no such file")
        if not paths:
            raise DatasetError("empty split->path mapping")
        return paths
    path = Path(path)
    if path.is_dir():
        paths = {p.stem: p for p in sorted(path.iterdir()) if p.suffix in SUFFIXES and p.is_file()}
        if not paths:
            raise DatasetError(
                f"{path}: directory has no {'/'.join(SUFFIXES)} files "
                "(expected e.g. train.jsonl, test.jsonl)"
            )
        return paths
    if not path.is_file():
        raise DatasetError(f"{path}: no such file or directory")
    return {"*": path}


def file_task(path: str | Path | dict, **kwargs) -> FileTask:
    """A task over a dataset on disk; the row format is sniffed unless given."""
    return FileTask(path, **kwargs)


@register_task("gsm8k")
class GSM8K(FileTask):
    """GSM8K from local files: `get_task("gsm8k", path="data/gsm8k")` (a directory with
    train.jsonl and test.jsonl, one such file, or a dict {split: file})."""

    def __init__(self, path: str | Path | dict | None = None, id_key: str | None = None, name: str = "gsm8k"):
        if path is None:
            raise ValueError(
                "task 'gsm8k' needs path=: a directory with train.jsonl/test.jsonl, "
                "a .jsonl file, or a dict {split: file}"
            )
        super().__init__(path, format="gsm8k", id_key=id_key, name=name)
