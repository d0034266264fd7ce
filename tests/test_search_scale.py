"""Scaling sweeps and compute-optimal selection: the pure functions on hand-made records,
scorer loading, and smoke runs of `ponder search` / `ponder scale` on a tiny model."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ponder.cli import app
from ponder.search.compute_optimal import choose_strategies, compute_optimal, difficulty_bins, halves
from ponder.search.scale import summarize, tokens_to_match
from ponder.search.scorers import load_scorer
from ponder.tasks import get_task

runner = CliRunner()


def rec(strategy, budget, problem, correct, tokens, any_correct=None):
    return {"strategy": strategy, "budget": budget, "problem": problem, "correct": correct,
            "any_correct": correct if any_correct is None else any_correct, "generated_tokens": tokens,
            "prefill_tokens": 10, "scorer_tokens": 0, "wall_s": 0.1}


def test_difficulty_bins_rank_problems_easiest_first():
    bins = difficulty_bins({"a": 0.9, "b": 0.1, "c": 0.5, "d": 1.0, "e": 0.0, "f": 0.6}, 3)
    assert bins == {"d": 0, "a": 0, "f": 1, "c": 1, "b": 2, "e": 2}
    a, b = halves(bins, seed=0)
    assert a | b == set(bins) and not a & b
    assert all(sum(bins[p] == k for p in a) == 1 for k in range(3))  # one per bin in each half
    with pytest.raises(ValueError, match="bins must be >= 1"):
        difficulty_bins({"a": 1.0}, 0)


def test_compute_optimal_picks_per_bin_and_scores_held_out():
    # Easy problems e*: majority and beam both right, majority cheaper. Hard h*: only beam right.
    easy, hard = [f"e{i}" for i in range(4)], [f"h{i}" for i in range(4)]
    records = []
    for p in easy:
        records += [rec("majority", 4, p, True, 40), rec("beam", 4, p, True, 50)]
    for p in hard:
        records += [rec("majority", 4, p, False, 40), rec("beam", 4, p, True, 60)]
    bin_of = {**{p: 0 for p in easy}, **{p: 1 for p in hard}}
    assert choose_strategies(records, set(easy + hard), bin_of) == {(0, 4): "majority", (1, 4): "beam"}
    out = compute_optimal(records, bin_of, seed=1)
    assert out["budgets"][4] == {"accuracy": 1.0, "generated_tokens": 50.0, "problems": 8}
    assert all(c == {"bin0@4": "majority", "bin1@4": "beam"} for c in out["choices"])


def test_summary_oracle_and_tokens_to_match():
    records = [rec("majority", 1, "p", False, 10), rec("majority", 1, "q", True, 10),
               rec("majority", 4, "p", False, 40, any_correct=True), rec("majority", 4, "q", True, 40)]
    rows = summarize(records)
    by = {(r["strategy"], r["budget"]): r for r in rows}
    assert by[("majority", 1)]["accuracy"] == 0.5 and by[("majority", 4)]["generated_tokens"] == 40
    assert by[("pass@N oracle", 4)]["accuracy"] == 1.0 and by[("pass@N oracle", 1)]["accuracy"] == 0.5
    curve = [{"strategy": "majority", "generated_tokens": 10, "accuracy": 0.5},
             {"strategy": "majority", "generated_tokens": 40, "accuracy": 0.9}]
    assert tokens_to_match(curve, "majority", 0.7) == pytest.approx(20.0)  # halfway in log tokens
    assert tokens_to_match(curve, "majority", 0.4) == 10
    assert tokens_to_match(curve, "majority", 0.95) is None


def test_load_scorer_verifier_and_bad_paths(tmp_path):
    task = get_task("arith", instruction=False)
    problems = task.problems("test", n=2)
    assert load_scorer("none", task, problems) is None
    verifier = load_scorer("verifier", task, problems)
    p = problems[0]
    assert verifier.score_steps([task.prompt(p)], [p.meta["steps"]]) == [[1.0] * len(p.meta["steps"])]
    with pytest.raises(FileNotFoundError, match="expected 'verifier' or a PRM directory"):
        load_scorer(str(tmp_path / "missing"), task, problems)
    with pytest.raises(ValueError, match="PRM"):  # an empty folder is not a PRM
        load_scorer(str(tmp_path), task, problems)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from ponder.models import build_char_tokenizer, build_tiny_model

    out = tmp_path_factory.mktemp("tiny")
    tok = build_char_tokenizer()
    build_tiny_model(tok, "1m", seed=0).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def test_cli_search_reports_accuracy_and_compute(tiny_model, tmp_path):
    out = tmp_path / "search.json"
    res = runner.invoke(app, ["search", "--model", tiny_model, "--task-arg", "instruction=false", "--strategy", "beam",
                              "--n", "4", "--beam-width", "2", "--n-problems", "2", "--max-tokens", "12",
                              "--output", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    summary, records = data["summary"], data["records"]
    assert summary["problems"] == 2 and summary["strategy"] == "beam"
    assert summary["generated_tokens"] == sum(r["compute"]["generated_tokens"] for r in records) > 0
    assert summary["prefill_tokens"] == sum(r["compute"]["prefill_tokens"] for r in records) > 0
    # The 4 first steps come from one prompt; every solution is capped at 12 tokens.
    assert all(len(r["candidates"]) >= 1 for r in records)


def test_cli_bad_arguments_fail_clearly(tiny_model, tmp_path):
    base = ["search", "--model", tiny_model, "--n-problems", "1", "--max-tokens", "4"]
    res = runner.invoke(app, base + ["--strategy", "beam", "--n", "4", "--beam-width", "3"])
    assert res.exit_code == 2 and "must divide" in res.output
    res = runner.invoke(app, base + ["--strategy", "beam", "--scorer", str(tmp_path)])
    assert res.exit_code == 2 and "PRM" in res.output
    res = runner.invoke(app, base + ["--strategy", "beamz"])
    assert res.exit_code == 2 and "unknown search strategy 'beamz'" in res.output
    res = runner.invoke(app, ["scale", "--model", tiny_model, "--budgets", "0,2", "--runs-dir", str(tmp_path)])
    assert res.exit_code == 2 and "budgets must be positive" in res.output


def test_cli_scale_writes_table_json_plot_and_compute_optimal(tiny_model, tmp_path):
    res = runner.invoke(app, ["scale", "--model", tiny_model, "--task-arg", "instruction=false",
                              "--strategies", "greedy,majority,best_of_n,beam", "--budgets", "1,2",
                              "--n-problems", "4", "--max-tokens", "8", "--bins", "2",
                              "--runs-dir", str(tmp_path), "--run", "s"])
    assert res.exit_code == 0, res.output
    run = tmp_path / "s"
    data = json.loads((run / "scale.json").read_text())
    assert len(data["records"]) == 4 * (1 + 3 * 2)
    strategies = {r["strategy"] for r in data["rows"]}
    assert strategies == {"greedy", "majority", "best_of_n", "beam", "pass@N oracle", "compute-optimal"}
    greedy = [r for r in data["records"] if r["strategy"] == "greedy"]
    assert all(r["generated_tokens"] <= 8 for r in greedy)
    assert set(data["compute_optimal"]["budgets"]) == {"1", "2"}
    assert (run / "scale.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| compute-optimal | 2 |" in (run / "scale.md").read_text()
    assert (run / "config.yaml").exists()


def test_help_lists_the_search_options():
    for cmd, flag in ((["search"], "--beam-width"), (["scale"], "--budgets")):
        res = runner.invoke(app, cmd + ["--help"])
        assert res.exit_code == 0 and flag in res.output, res.output
