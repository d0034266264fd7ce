"""Datasets by Hugging Face name (`--task hf:<org/name>[:<config>]`) and `save_to_disk`
folders as tasks, offline as this machine must be: the test builds the caches the real
`datasets` library reads, from real GSM8K rows.

Measured with datasets 5.2.0: offline, `load_dataset("org/name")` reads only `datasets`' own
cache (`$HF_DATASETS_CACHE/org___name/<config>/<version>/<hash>/`, what an earlier online
load leaves), never the Hub cache that `hf download` fills
(`$HF_HOME/hub/datasets--org--name/snapshots/<hash>/`); ponder loads that snapshot as a local
folder. Both caches are built here, the first by `datasets`' own Parquet builder, and the CLI
runs in a subprocess with `HF_HUB_OFFLINE=1` (the libraries read it at import time).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("datasets")
pq = pytest.importorskip("pyarrow.parquet")
import pyarrow as pa  # noqa: E402

from ponder.tasks import get_task  # noqa: E402
from ponder.tasks.files import DatasetError  # noqa: E402
from ponder.tasks.hub_data import parse_hub_name  # noqa: E402

GSM8K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gsm8k"
HASH = "0123456789abcdef0123456789abcdef01234567"
N = 20
# openai/gsm8k's dataset card declares its configs like this (main/ and socratic/ folders)
README = """---
configs:
- config_name: main
  data_files:
  - split: train
    path: main/train-*
  - split: test
    path: main/test-*
- config_name: socratic
  data_files:
  - split: train
    path: socratic/train-*
  - split: test
    path: socratic/test-*
---
# tiny-gsm: the first rows of GSM8K
"""


def gsm8k_rows(split: str, start: int = 0) -> list[dict]:
    with open(GSM8K / f"{split}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f][start:start + N]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """HF_HOME with acme/tiny-gsm in the Hub cache (configs main: GSM8K rows 0-19 of each
    split, socratic: rows 20-39) and acme/cached-gsm in datasets' cache (main: rows 0-19);
    the same main rows as JSONL files; a tiny model folder."""
    if not (GSM8K / "train.jsonl").is_file() or not (GSM8K / "test.jsonl").is_file():
        pytest.skip(f"GSM8K rows not found at {GSM8K} (train.jsonl, test.jsonl)")
    from datasets.packaged_modules.parquet.parquet import Parquet

    root = tmp_path_factory.mktemp("hub-data")
    home = root / "hf-home"
    repo = home / "hub" / "datasets--acme--tiny-gsm"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(HASH)
    snap = repo / "snapshots" / HASH
    for config, start in (("main", 0), ("socratic", N)):
        (snap / config).mkdir(parents=True)
        for split in ("train", "test"):
            pq.write_table(pa.Table.from_pylist(gsm8k_rows(split, start)),
                           snap / config / f"{split}-00000-of-00001.parquet")
    (snap / "README.md").write_text(README)
    jsonl = root / "tiny-gsm"
    jsonl.mkdir()
    for split in ("train", "test"):
        (jsonl / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gsm8k_rows(split)))
    # datasets' own cache, as `load_dataset("acme/cached-gsm", "main")` online would leave it:
    # <cache>/acme___cached-gsm/main/0.0.0/<hash>/ holding cached-gsm-<split>.arrow
    cache = home / "datasets"
    builder = Parquet(cache_dir=str(root / "prepare"), dataset_name="cached-gsm", config_name="main",
                      config_id="main", hash="0123abcd",
                      data_files={s: [str(snap / "main" / f"{s}-00000-of-00001.parquet")] for s in ("train", "test")})
    builder.download_and_prepare()
    cache.mkdir(parents=True)
    shutil.move(str(root / "prepare" / "cached-gsm"), str(cache / "acme___cached-gsm"))

    from ponder.models import build_char_tokenizer, build_tiny_model

    model = root / "model"
    tok = build_char_tokenizer()
    build_tiny_model(tok, "1m", seed=0).save_pretrained(model)
    tok.save_pretrained(model)
    return {"home": home, "jsonl": jsonl, "model": model, "root": root}


def offline_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HF_HOME=str(home), HF_DATASETS_CACHE=str(home / "datasets"), HF_HUB_OFFLINE="1",
               HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return env


def ponder(home: Path, *args):
    return subprocess.run([sys.executable, "-m", "ponder", *args], capture_output=True, text=True,
                          env=offline_env(home), timeout=300)


DUMP = """
import json, sys
from ponder.tasks import get_task
task = get_task(sys.argv[1])
print(json.dumps({split: [[p.question, p.answer, p.meta.get("steps")] for p in task.problems(split)]
                  for split in ("train", "test")}))
"""


def dump(home: Path, task: str) -> dict:
    """{split: [[question, gold, steps]]} of `task`, read in an offline subprocess."""
    res = subprocess.run([sys.executable, "-c", DUMP, task], capture_output=True, text=True,
                         env=offline_env(home), timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def as_lists(task) -> dict:
    return {split: [[p.question, p.answer, p.meta.get("steps")] for p in task.problems(split)]
            for split in ("train", "test")}


# --- by Hub name, through the real CLI -----------------------------------------------------


def test_eval_by_hub_name_asks_the_configs_questions(data):
    """`ponder eval --task hf:acme/tiny-gsm:<config>` evaluates the config's test rows: each
    record's id names its row and its gold answer is that GSM8K row's `#### N`."""
    for config, start in (("main", 0), ("socratic", N)):
        out = data["root"] / f"eval-{config}.json"
        res = ponder(data["home"], "eval", "--task", f"hf:acme/tiny-gsm:{config}", "--model", str(data["model"]),
                     "--n", "4", "--k", "0", "--max-tokens", "8", "--output", str(out))
        assert res.returncode == 0, res.stdout + res.stderr
        result = json.loads(out.read_text())
        assert result["summary"]["problems"] == 4
        rows = gsm8k_rows("test", start)
        for record in result["records"]:
            name, split, index = record["id"].rsplit("-", 2)
            assert (name, split) == ("tiny-gsm", "test")
            assert record["answer"] == rows[int(index)]["answer"].rsplit("####", 1)[1].strip().replace(",", "")


def test_hub_problems_equal_the_same_rows_as_a_jsonl_task(data):
    """From the Hub cache (`hf download`'s layout) and from datasets' own cache alike, the
    problems are those of the same rows read as JSONL files: questions, gold answers, steps."""
    expected = as_lists(get_task(str(data["jsonl"])))
    assert len(expected["train"]) == len(expected["test"]) == N
    assert dump(data["home"], "hf:acme/tiny-gsm:main") == expected
    assert dump(data["home"], "hf:acme/cached-gsm:main") == expected


def test_missing_split_lists_the_datasets_splits(data):
    res = ponder(data["home"], "eval", "--task", "hf:acme/tiny-gsm:main", "--split", "validation",
                 "--model", str(data["model"]), "--n", "2", "--k", "0", "--max-tokens", "4")
    assert res.returncode == 2
    out = " ".join((res.stdout + res.stderr).split())
    assert "no 'validation' split" in out and "['test', 'train']" in out and "Traceback" not in out


def test_dataset_in_no_cache_offline_is_one_line_saying_how_to_fetch_it(data):
    res = ponder(data["home"], "eval", "--task", "hf:acme/missing", "--model", str(data["model"]),
                 "--n", "2", "--k", "0", "--max-tokens", "4")
    assert res.returncode == 2
    lines = [line for line in (res.stdout + res.stderr).splitlines() if line.strip()]
    assert "Traceback" not in res.stdout + res.stderr
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, lines
    assert "'acme/missing'" in errors[0] and "hf download acme/missing --repo-type dataset" in errors[0]
    assert "HF_HUB_OFFLINE" in errors[0]


def test_hub_name_must_be_org_name_and_config():
    assert parse_hub_name("hf:openai/gsm8k:main") == ("openai/gsm8k", "main")
    assert parse_hub_name("hf:openai/gsm8k") == ("openai/gsm8k", None)
    assert parse_hub_name("hf:gsm8k") == ("gsm8k", None)
    for bad in ("hf:", "hf:a/b/c", "hf:openai/", "hf:openai/gsm8k:", "hf:a/b:c:d"):
        with pytest.raises(ValueError, match="expected hf:<org/name> or hf:<org/name>:<config>"):
            parse_hub_name(bad)


# --- save_to_disk folders --------------------------------------------------------------------


def test_saved_dataset_dict_folder_is_a_task(data, tmp_path):
    import datasets

    saved = tmp_path / "saved-gsm"
    datasets.DatasetDict({split: datasets.Dataset.from_list(gsm8k_rows(split)) for split in ("train", "test")}) \
        .save_to_disk(str(saved))
    assert (saved / "dataset_dict.json").is_file()
    task = get_task(str(saved))
    assert as_lists(task) == as_lists(get_task(str(data["jsonl"])))
    assert task.problems("test")[0].id == "saved-gsm-test-0"
    with pytest.raises(DatasetError, match=r"no 'validation' split: the dataset's splits are \['test', 'train'\]"):
        task.problems("validation")
    # and through the CLI
    out = tmp_path / "eval.json"
    res = ponder(data["home"], "eval", "--task", str(saved), "--model", str(data["model"]), "--n", "3", "--k", "0",
                 "--max-tokens", "4", "--output", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
    assert [r["id"].rsplit("-", 2)[1] for r in json.loads(out.read_text())["records"]] == ["test"] * 3


def test_saved_single_dataset_serves_every_split_and_takes_file_task_knobs(tmp_path):
    """A single saved Dataset is read for every split, like a single file; the column
    mapping knobs of file tasks apply."""
    import datasets

    rows = [{"prompt": f"What is {i} + {i}?", "target": 2 * i, "work": [f"{i} + {i} = {2 * i}"]} for i in range(5)]
    saved = tmp_path / "sums"
    datasets.Dataset.from_list(rows).save_to_disk(str(saved))
    assert (saved / "state.json").is_file() and not (saved / "dataset_dict.json").exists()
    task = get_task(str(saved), question_key="prompt", answer_key="target", solution_key="work")
    for split in ("train", "test"):
        problems = task.problems(split)
        assert [(p.question, p.answer, p.meta["steps"]) for p in problems] == \
            [(r["prompt"], str(r["target"]), r["work"]) for r in rows]
    assert task.problems("test")[2].meta["source"] == f"{saved} row 3"
    assert task.is_correct(task.problems("test")[3], "3 + 3 = 6\nAnswer: 6")


def test_rows_of_no_known_format_are_refused_naming_the_row_and_keys(tmp_path):
    import datasets

    saved = tmp_path / "chat"
    datasets.DatasetDict({"train": datasets.Dataset.from_list([{"prompt": "hi", "response": "hello"}])}) \
        .save_to_disk(str(saved))
    with pytest.raises(DatasetError, match=r"chat train row 1: cannot tell the dataset format from the keys "
                                           r"\['prompt', 'response'\]"):
        get_task(str(saved))
    # a GSM8K row among plain question/answer rows: the file task's rule, with this row named
    mixed = tmp_path / "mixed"
    rows = [{"question": "1 + 1?", "answer": "2"}, {"question": "2 + 2?", "answer": "2 + 2 = <<2+2=4>>4\n#### 4"}]
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(mixed))
    with pytest.raises(DatasetError, match=r"mixed test row 2: a gsm8k row, but the file's first row "
                                           r"\(.*mixed test row 1\) is generic"):
        get_task(str(mixed)).problems("test")


def test_unknown_knob_names_the_hub_tasks_knobs(tmp_path):
    with pytest.raises(ValueError, match=r"task 'hf:acme/x' has no knob 'question_keys' \(did you mean 'question_key'\?\)"):
        get_task("hf:acme/x", question_keys="q")
