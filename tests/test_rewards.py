"""Reward models and scorers: aggregation, the PRM/ORM format, training on labels, F1."""
import json

import pytest
import torch

from ponder.eval.rm import bootstrap_f1_se, first_below, processbench_f1
from ponder.rewards import VerifierScorer, aggregate
from ponder.rewards.model import RewardModel, load_prm, load_reward_model
from ponder.tasks import get_task
from ponder.train.rm import RewardModelConfig, RewardModelTrainer
from ponder.train.rm import read_outcomes, read_stepwise


def test_aggregation_by_hand():
    s = [0.9, 0.5, 0.8]
    assert aggregate(s, "last") == 0.8
    assert aggregate(s, "min") == 0.5
    assert aggregate(s, "prod") == pytest.approx(0.36)
    assert aggregate(s, "mean") == pytest.approx(2.2 / 3)
    assert aggregate([], "prod") == 0.0
    with pytest.raises(ValueError, match="unknown aggregation 'max'"):
        aggregate(s, "max")


def test_processbench_f1_by_hand():
    # erroneous: truth 1, 2, 0 -> predicted 1 (hit), None (miss), 0 (hit): 2/3
    # correct:   truth None x2 -> predicted None (hit), 3 (miss): 1/2
    out = processbench_f1([1, None, 0, None, 3], [1, 2, 0, None, None])
    assert out["acc_erroneous"] == pytest.approx(2 / 3) and out["acc_correct"] == 0.5
    assert out["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert first_below([0.9, 0.6, 0.4, 0.9], 0.5) == 2 and first_below([0.9], 0.5) is None


def test_bootstrap_f1_se():
    # every problem alike: every resample has the same F1, so no spread
    same = [[1, None]] * 6, [[1, None]] * 6
    assert bootstrap_f1_se(*same) == 0.0
    # half the problems perfect, half all wrong: resamples differ, the spread is that of a
    # binomial-like mix, well inside (0, 0.5)
    pred = [[1, None]] * 10 + [[None, 2]] * 10
    truth = [[1, None]] * 20
    se = bootstrap_f1_se(pred, truth)
    assert 0.05 < se < 0.3
    assert bootstrap_f1_se(pred, truth) == se  # seeded
    assert bootstrap_f1_se([[1]], [[1]]) == 0.0


def test_verifier_scorer_steps_and_outcomes():
    task = get_task("arith", instruction=False)
    p = task.problems("test", n=1, seed=0)[0]
    v = VerifierScorer(task, [p])
    ref = task.reference(p)
    steps = task.split_steps(ref)
    assert v.score_outcomes([task.prompt(p)], [ref]) == [1.0]
    assert v.score_steps([task.prompt(p)], [steps]) == [[1.0] * len(steps)]
    with pytest.raises(KeyError, match="not among the problems"):
        v.score_outcomes(["9+9\n"], ["18"])


def test_stepwise_file_errors_name_line_and_field(tmp_path):
    bad = tmp_path / "steps.jsonl"
    bad.write_text(json.dumps({"prompt": "1+2\n", "completions": ["3", "Answer: 3"], "labels": [1.0, 1.0]}) + "\n"
                   + json.dumps({"prompt": "2+2\n", "completions": ["4", "Answer: 4"], "labels": [1.0]}) + "\n")
    with pytest.raises(ValueError, match=r"steps.jsonl:2: field 'labels': expected 2 labels .* got 1"):
        read_stepwise(bad)
    bad.write_text(json.dumps({"prompt": "1+2\n", "completions": ["3"], "labels": [1.5]}) + "\n")
    with pytest.raises(ValueError, match=r"steps.jsonl:1: field 'labels': expected a label in \[0, 1\]"):
        read_stepwise(bad)
    bad.write_text(json.dumps({"prompt": "1+2\n", "completions": [], "labels": []}) + "\n")
    with pytest.raises(ValueError, match="field 'completions': expected a non-empty list"):
        read_stepwise(bad)
    orm = tmp_path / "orm.jsonl"
    orm.write_text(json.dumps({"prompt": "1+2\n", "completion": "3", "label": "yes"}) + "\n")
    with pytest.raises(ValueError, match=r"orm.jsonl:1: field 'label'"):
        read_outcomes(orm)


def _tiny_rm(kind: str) -> RewardModel:
    from ponder.models import model_from_spec

    lm, tok = model_from_spec("tiny:1m", seed=0)
    tok.padding_side = "right"
    return RewardModel(lm.model, tok, kind)


def _marked_rows(n: int, seed: int):
    """Stepwise rows with a rule a tiny model learns in seconds: a step is wrong once any
    step so far contains an 'x' (so the label depends on earlier steps, as in a real PRM)."""
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        steps, labels, broken = [], [], False
        for _ in range(rng.randint(2, 4)):
            s = "".join(rng.choice("0123456789+") for _ in range(rng.randint(2, 5)))
            if rng.random() < 0.2:
                i = rng.randrange(len(s))
                s = s[:i] + "x" + s[i + 1:]
            broken = broken or "x" in s
            steps.append(s)
            labels.append(0.0 if broken else 1.0)
        rows.append({"prompt": "check:\n", "completions": steps, "labels": labels})
    return rows


def test_prm_trains_saves_and_reloads(tmp_path):
    torch.manual_seed(0)
    rm = _tiny_rm("prm")
    rows = _marked_rows(400, seed=1)
    cfg = RewardModelConfig(lr=3e-3, steps=60, warmup_steps=5, save_every=60, log_every=10, batch_size=16)
    before = rm.score_steps([r["prompt"] for r in rows[:2]], [r["completions"] for r in rows[:2]])
    assert all(abs(x - 0.5) < 1e-6 for s in before for x in s)  # zero-initialised head
    RewardModelTrainer(rm, rows, cfg, tmp_path / "prm", progress=False).train()
    log = [json.loads(l) for l in (tmp_path / "prm" / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < 0.5 * log[0]["loss"]
    prm = load_prm(tmp_path / "prm" / "model")
    test = _marked_rows(60, seed=2)
    prompts, steps = [r["prompt"] for r in test], [r["completions"] for r in test]
    scores = prm.score_steps(prompts, steps)
    again = rm.score_steps(prompts, steps)
    assert [x for s in scores for x in s] == pytest.approx([x for s in again for x in s], abs=1e-5)  # reload
    hits = [(s > 0.5) == (l > 0.5) for sc, r in zip(scores, test) for s, l in zip(sc, r["labels"])]
    assert sum(hits) / len(hits) > 0.9
    assert prm.score_outcomes(prompts[:1], ["\n".join(steps[0])]) == pytest.approx([scores[0][-1]], abs=1e-5)
    assert prm.usage.tokens > 0


def test_orm_is_not_a_prm_and_bad_dirs_fail(tmp_path):
    orm = _tiny_rm("orm")
    orm.save(tmp_path / "orm")
    loaded = load_reward_model(tmp_path / "orm")
    assert loaded.kind == "orm" and loaded.score_outcomes(["1+2\n"], ["3\nAnswer: 3"]) == [pytest.approx(0.5)]
    with pytest.raises(ValueError, match="is an outcome reward model"):
        load_prm(tmp_path / "orm")
    with pytest.raises(NotImplementedError, match="ORM scores whole solutions"):
        loaded.score_steps(["1+2\n"], [["3"]])
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="is not a ponder reward model"):
        load_prm(tmp_path / "plain")


def test_best_of_n_naive_and_weighted_by_hand():
    from ponder.eval.rm import SampleSet, best_of_n, weighted_best_of_n

    # one problem, 4 samples: answers gold, gold, 7, 8 with scores 0.6, 0.6, 0.9, 0.1
    data = SampleSet(problems=[None], prompts=["p"], texts=[["a", "b", "c", "d"]], steps=[[["a"]] * 4],
                     correct=[[True, True, False, False]], first_error=None,
                     keys=[["gold:5", "gold:5", "7", "8"]])
    scores = [[0.6, 0.6, 0.9, 0.1]]
    assert best_of_n(data, scores, [1, 4]) == {1: 1.0, 4: 0.0}  # argmax picks the lone 0.9
    assert weighted_best_of_n(data, scores, [1, 4]) == {1: 1.0, 4: 1.0}  # 1.2 for gold beats 0.9
