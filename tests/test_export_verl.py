"""`ponder export verl`: verl's parquet rows, the reward module verl loads, the PRM term, bad
inputs; and, where verl 0.9.1 is installed, verl's own dataset and reward loaders on the export."""
import importlib.util
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ponder.cli import app
from ponder.commands.export_verl import Config, run
from ponder.tasks import get_task

pq = pytest.importorskip("pyarrow.parquet", reason="the export writes parquet: pip install 'ponder[parquet]'")
runner = CliRunner()
GSM8K_TEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "test.jsonl"


def _reward_module(out: Path):
    """DIR/reward.py loaded from its path, as verl's `load_extern_object` loads it."""
    spec = importlib.util.spec_from_file_location(f"verl_reward_{out.name}", out / "reward.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def _score(module, row: dict, text: str, **kwargs):
    return module.compute_score(row["data_source"], text, row["reward_model"]["ground_truth"], row["extra_info"],
                                **kwargs)


def test_parquet_has_exactly_verls_columns_and_types(tmp_path):
    import pyarrow as pa

    out = tmp_path / "out"
    result = run(Config(task="arith", task_args={"num_ops": 2}, out=str(out), num_train=6, num_test=4, seed=3))
    assert result["rows"] == {"train.parquet": 6, "test.parquet": 4}
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "reward.py", "test.parquet", "train.parquet"]
    table = pq.read_table(out / "train.parquet")
    assert table.schema.names == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    types = {f.name: f.type for f in table.schema}
    assert types["data_source"] == pa.string() and types["ability"] == pa.string()
    assert types["prompt"] == pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    assert types["reward_model"] == pa.struct([("style", pa.string()), ("ground_truth", pa.string())])
    assert types["extra_info"] == pa.struct([("split", pa.string()), ("index", pa.int64()), ("id", pa.string()),
                                             ("question", pa.string()), ("task", pa.string()),
                                             ("task_args", pa.string()), ("meta", pa.string())])

    task = get_task("arith", num_ops=2)
    problems = task.problems("train", n=6, seed=3)
    rows = table.to_pylist()
    for i, (row, p) in enumerate(zip(rows, problems, strict=True)):
        assert row["data_source"] == "arith" and row["ability"] == "math"
        assert row["prompt"] == [{"role": "user", "content": task.prompt(p)}]
        assert row["reward_model"] == {"style": "rule", "ground_truth": p.answer}
        info = row["extra_info"]
        assert (info["split"], info["index"], info["id"], info["question"]) == ("train", i, p.id, p.question)
        assert (info["task"], json.loads(info["task_args"])) == ("arith", {"num_ops": 2})
        assert json.loads(info["meta"])["steps"] == p.meta["steps"]
    assert [r["extra_info"]["split"] for r in _rows(out / "test.parquet")] == ["test"] * 4


def test_arith_reward_is_one_for_a_right_solution_and_zero_for_a_wrong_one(tmp_path):
    out = tmp_path / "out"
    run(Config(task="arith", out=str(out), num_train=0, num_test=3))
    assert not (out / "train.parquet").exists()
    module = _reward_module(out)
    for row in _rows(out / "test.parquet"):
        steps = json.loads(row["extra_info"]["meta"])["steps"]
        gold = int(row["reward_model"]["ground_truth"])
        assert _score(module, row, "\n".join(steps)) == {"score": 1.0, "acc": 1.0}
        wrong = "\n".join(steps[:-1] + [f"Answer: {gold + 1}"])
        assert _score(module, row, wrong) == {"score": 0.0, "acc": 0.0}
        assert _score(module, row, "no answer here") == {"score": 0.0, "acc": 0.0}


@pytest.mark.skipif(not GSM8K_TEST.exists(), reason=f"GSM8K test file not found at {GSM8K_TEST}")
def test_gsm8k_file_reward_rebuilds_the_task_from_its_absolute_path(tmp_path, monkeypatch):
    out = tmp_path / "out"
    result = run(Config(task=str(GSM8K_TEST), out=str(out), num_train=0, num_test=4, seed=1))
    assert Path(result["task"]).resolve() == GSM8K_TEST.resolve() and result["data_source"] == "gsm8k"
    rows = _rows(out / "test.parquet")
    first = json.loads(GSM8K_TEST.read_text().splitlines()[0])
    assert rows[0]["prompt"][0]["content"].startswith(rows[0]["extra_info"]["question"])
    monkeypatch.chdir(tmp_path)  # verl's workers do not run where the export was made
    module = _reward_module(out)
    for row in rows:
        gold = row["reward_model"]["ground_truth"]
        assert gold == gold.strip() and "####" not in gold
        assert _score(module, row, f"Some working.\nAnswer: {gold}")["score"] == 1.0
        assert _score(module, row, f"Some working.\nAnswer: {int(gold) + 7}")["score"] == 0.0
    assert "####" in first["answer"]  # the gold above is the number after GSM8K's '####'


def test_a_registered_task_keeps_its_name_beside_a_folder_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "arith").mkdir()  # get_task("arith") is the registered task, whatever lies in the cwd
    run(Config(task="arith", out="out", num_train=0, num_test=1))
    assert _rows(tmp_path / "out" / "test.parquet")[0]["extra_info"]["task"] == "arith"


def _constant_prm(path: Path, p_step: float) -> None:
    """A tiny PRM whose every step scores `p_step` (head weight 0, bias logit(p_step))."""
    import torch

    from ponder.models import model_from_spec
    from ponder.rewards.model import RewardModel

    lm, tok = model_from_spec("tiny:1m", seed=0)
    tok.padding_side = "right"
    prm = RewardModel(lm.model, tok, "prm")
    with torch.no_grad():
        prm.head.bias.fill_(math.log(p_step / (1 - p_step)))
    prm.save(path)


def test_prm_adds_its_weighted_aggregated_step_score(tmp_path):
    _constant_prm(tmp_path / "prm", 0.8)
    out = tmp_path / "out"
    result = run(Config(task="arith", task_args={"num_ops": 3}, out=str(out), num_train=0, num_test=2,
                        prm=str(tmp_path / "prm"), prm_weight=0.5))
    assert (result["prm"], result["prm_weight"], result["prm_aggregation"]) == (str(tmp_path / "prm"), 0.5, "min")
    module = _reward_module(out)
    row = _rows(out / "test.parquet")[0]
    steps = json.loads(row["extra_info"]["meta"])["steps"]
    assert len(steps) == 4  # three operations and the answer line
    right, wrong = "\n".join(steps), "\n".join(steps[:-1] + ["Answer: 1000"])
    # score = 1.0 * verifier + 0.5 * min(0.8, 0.8, 0.8, 0.8)
    assert _score(module, row, right) == pytest.approx({"score": 1.4, "acc": 1.0, "prm": 0.8})
    assert _score(module, row, wrong) == pytest.approx({"score": 0.4, "acc": 0.0, "prm": 0.8})
    # verl's reward_kwargs override the export's settings: prod over four steps is 0.8**4
    got = _score(module, row, right, prm_aggregation="prod", prm_weight=1.0, outcome_weight=2.0)
    assert got == pytest.approx({"score": 2.0 + 0.8 ** 4, "acc": 1.0, "prm": 0.8 ** 4})
    # without a PRM the score is the verifier's alone
    assert _score(module, row, right, prm=None) == {"score": 1.0, "acc": 1.0}
    with pytest.raises(TypeError, match=r"unknown settings \['prm_wieght'\]"):
        _score(module, row, right, prm_wieght=2.0)


def test_reward_refuses_rows_it_did_not_export(tmp_path):
    from ponder.export.verl_reward import compute_score

    with pytest.raises(ValueError, match=r"extra_info lacks \['question', 'task', 'task_args', 'meta'\]"):
        compute_score("openai/gsm8k", "Answer: 3", "3", {"split": "train", "index": 0})


def test_bad_inputs_are_one_line_and_write_nothing(tmp_path):
    def export(*args):
        res = runner.invoke(app, ["export", "verl", *args])
        return res.exit_code, " ".join(res.output.split())

    out = tmp_path / "out"
    code, msg = export("--task", "nope", "--out", str(out))
    assert code == 2 and "unknown task 'nope'" in msg and "Traceback" not in msg
    assert not out.exists()
    code, msg = export("--out", str(out))
    assert code == 2 and "--task is required" in msg
    code, msg = export("--task", "arith", "--out", str(out), "--num-train", "0", "--num-test", "0")
    assert code == 2 and "nothing to export" in msg
    code, msg = export("--task", "arith", "--out", str(out), "--prm", str(tmp_path))
    assert code == 2 and "is not a ponder reward model" in msg
    code, msg = export("--task", "arith", "--out", str(out), "--prm-aggregation", "max")
    assert code == 2 and "prm_aggregation (--prm-aggregation) must be one of last, min, prod, mean" in msg
    assert not out.exists()

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": f"{i}+1?", "answer": str(i + 1)}) + "\n" for i in range(5)))
    code, msg = export("--task", str(data), "--out", str(out), "--num-train", "3", "--num-test", "3")
    assert code == 2 and "would be in both train.parquet and test.parquet" in msg
    assert not out.exists()

    code, msg = export("--task", "arith", "--out", str(out), "--num-train", "2", "--num-test", "2")
    assert code == 0, msg
    code, msg = export("--task", "arith", "--out", str(out), "--num-train", "2", "--num-test", "2")
    assert code == 2 and "is not empty" in msg and "--force" in msg
    code, msg = export("--task", "arith", "--out", str(out), "--num-train", "0", "--num-test", "3", "--force")
    assert code == 0, msg
    assert not (out / "train.parquet").exists() and len(_rows(out / "test.parquet")) == 3  # no stale train file
    (tmp_path / "file").write_text("x")
    code, msg = export("--task", "arith", "--out", str(tmp_path / "file"))
    assert code == 2 and "is a file" in msg


def test_help_shows_export_verl():
    res = runner.invoke(app, ["export", "--help"])
    assert res.exit_code == 0 and "verl" in res.output
    res = runner.invoke(app, ["export", "verl", "--help"])
    assert res.exit_code == 0 and "--prm-weight" in res.output and "--num-train" in res.output


# --------------------------------------------------------------- verl's own loaders (verl 0.9.1)


def test_verls_dataset_and_reward_manager_read_the_export(tmp_path):
    """verl's RLHFDataset reads the parquet; its custom reward loader loads reward.py; its naive
    reward manager decodes a response and scores it through compute_score, as in training."""
    pytest.importorskip("verl", reason="verl is not installed (it lives in a venv of its own: see the README)")

    import torch
    from omegaconf import OmegaConf
    from verl import DataProto
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    from ponder.models import build_char_tokenizer

    out = tmp_path / "out"
    run(Config(task="arith", out=str(out), num_train=4, num_test=2))
    tok = build_char_tokenizer()
    tok.chat_template = ("{% for m in messages %}{{ m['content'] }}{% endfor %}"
                         "{% if add_generation_prompt %}{{ '' }}{% endif %}")
    data_cfg = OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": 512, "filter_overlong_prompts": True,
                                 "filter_overlong_prompts_workers": 1, "cache_dir": str(tmp_path / "cache")})
    dataset = RLHFDataset(str(out / "train.parquet"), tok, data_cfg)
    assert len(dataset) == 4  # none filtered out: every prompt templated and tokenized
    task = get_task("arith")
    problems = task.problems("train", n=4, seed=0)
    items = [dataset[i] for i in range(4)]
    assert [it["raw_prompt"] for it in items] == [[{"role": "user", "content": task.prompt(p)}] for p in problems]
    assert [it["index"] for it in items] == [0, 1, 2, 3]

    reward_cfg = OmegaConf.create({"reward": {"custom_reward_function": {
        "path": str(out / "reward.py"), "name": "compute_score", "reward_kwargs": {}}}})
    compute_score = get_custom_reward_fn(reward_cfg)
    manager = NaiveRewardManager(reward_cfg, tok, compute_score)

    batch = collate_fn(items)
    steps = [p.meta["steps"] for p in problems]
    texts = ["\n".join(st if i % 2 == 0 else st[:-1] + ["Answer: 1000"]) for i, st in enumerate(steps)]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(map(len, ids))
    responses = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in ids])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in ids])
    prompts = torch.ones((4, 3), dtype=torch.long)  # the manager reads only the response part
    proto = DataProto.from_dict(
        tensors={"prompts": prompts, "responses": responses,
                 "attention_mask": torch.cat([torch.ones_like(prompts), mask], dim=1)},
        non_tensors={k: batch[k] for k in ("data_source", "reward_model", "extra_info")})
    scores = [manager.loop.run_until_complete(manager.run_single(proto[i:i + 1])) for i in range(4)]
    assert [s["reward_score"] for s in scores] == [1.0, 0.0, 1.0, 0.0]
    assert [s["reward_extra_info"]["acc"] for s in scores] == [1.0, 0.0, 1.0, 0.0]
