"""Scaling sweeps and compute-optimal selection: the pure functions on hand-made records,
scorer loading, and smoke runs of `ponder search` / `ponder scale` on a tiny model."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ponder.cli import app
from ponder.search.compute_optimal import choose_settings, compute_optimal, difficulty_bins, halves, token_budgets
from ponder.search.scale import (
    ScaleConfig,
    read_records,
    summarize,
    sweep,
    table_markdown,
    tokens_to_match,
    total_tokens,
    validate_sweep,
)
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


def test_difficulty_bins_keep_equal_difficulties_together():
    # Three problems share pass rate 1.0: by order, c would fall into bin 1 with d. Mid-ranks
    # 1, 3 and 4.5 of 6 put the tie groups in bins 0, 1 and 2, whatever the ids' order.
    rates = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.5, "e": 0.0, "f": 0.0}
    assert difficulty_bins(rates, 3) == {"a": 0, "b": 0, "c": 0, "d": 1, "e": 2, "f": 2}
    assert difficulty_bins(dict(reversed(list(rates.items()))), 3) == difficulty_bins(rates, 3)
    assert set(difficulty_bins({"a": 0.5, "b": 0.5, "c": 0.5, "d": 0.5}, 2).values()) == {0}  # one tie, one bin


def test_compute_optimal_picks_per_bin_and_scores_held_out():
    # Easy problems e*: majority and beam both right, majority cheaper. Hard h*: only beam
    # right, at the same tokens as majority.
    easy, hard = [f"e{i}" for i in range(4)], [f"h{i}" for i in range(4)]
    records = []
    for p in easy:
        records += [rec("majority", 4, p, True, 40), rec("beam", 4, p, True, 40)]
    for p in hard:
        records += [rec("majority", 4, p, False, 40), rec("beam", 4, p, True, 40)]
    bin_of = {**{p: 0 for p in easy}, **{p: 1 for p in hard}}
    assert token_budgets(records) == {4: 40.0}
    assert choose_settings(records, set(easy + hard), bin_of, 40.0) == {0: ("beam", 4), 1: ("beam", 4)}
    out = compute_optimal(records, bin_of, seed=1)
    assert out["budgets"][4] == {"token_budget": 40.0, "accuracy": 1.0, "generated_tokens": 40.0, "problems": 8}


def test_compute_optimal_compares_at_equal_generated_tokens():
    # beam@2 costs what majority@4 costs (40 tokens) and is always right; beam@4 costs 80.
    # At majority@2's 20 tokens only majority@2 fits. Choosing per N instead would put
    # beam@2 at N=2 (accuracy 1.0 for twice the tokens).
    records = []
    for p in ("p0", "p1", "p2", "p3"):
        records += [rec("majority", 2, p, False, 20), rec("majority", 4, p, False, 40),
                    rec("beam", 2, p, True, 40), rec("beam", 4, p, True, 80)]
    bin_of = {p: 0 for p in ("p0", "p1", "p2", "p3")}
    out = compute_optimal(records, bin_of, seed=0)
    assert out["budgets"][2] == {"token_budget": 20.0, "accuracy": 0.0, "generated_tokens": 20.0, "problems": 4}
    assert out["budgets"][4] == {"token_budget": 40.0, "accuracy": 1.0, "generated_tokens": 40.0, "problems": 4}
    assert out["choices"] == [{"bin0@2": "majority@2", "bin0@4": "beam@2"}] * 2


def test_total_compute_charges_the_scorer_and_changes_the_choice():
    # best_of_n@2 generates what majority@4 generates, but its verifier reads 60 tokens more:
    # at equal generated tokens it wins N=4, at equal total tokens it no longer fits there.
    records = []
    for p in ("p0", "p1", "p2", "p3"):
        records += [rec("majority", 2, p, False, 20), rec("majority", 4, p, False, 40),
                    {**rec("best_of_n", 2, p, True, 40), "scorer_tokens": 60}]
    for r in records:
        r["total_tokens"] = total_tokens(r)
    assert records[-1]["total_tokens"] == 40 + 10 + 60
    bin_of = {p: 0 for p in ("p0", "p1", "p2", "p3")}
    generated = compute_optimal(records, bin_of, seed=0)
    total = compute_optimal(records, bin_of, seed=0, tokens="total_tokens")
    assert generated["choices"][0]["bin0@4"] == "best_of_n@2"
    assert total["choices"][0]["bin0@4"] == "majority@2"  # as accurate as majority@4, and cheaper
    assert total["budgets"][4] == {"token_budget": 50.0, "accuracy": 0.0, "total_tokens": 30.0,
                                  "generated_tokens": 20.0, "problems": 4}
    rows = summarize(records)
    [bon] = [r for r in rows if r["strategy"] == "best_of_n"]
    assert bon["total_tokens"] == 110 and tokens_to_match(rows, "majority", 0.0, "total_tokens") == 30
    assert "total tokens" in table_markdown(rows, "total") and "majority total tokens" in table_markdown(rows, "total")


def test_compute_optimal_reports_the_held_out_fold():
    # The halves disagree: on half A majority@4 is right everywhere and beam@4 nowhere; on
    # half B beam@4 is right everywhere and majority@4 on one of two. Each half is scored
    # with the other half's choice: B with majority (1 of 2), A with beam (0 of 2) -> 0.25.
    # Choosing and scoring on the same half would report 1.0.
    bin_of = {p: 0 for p in ("p0", "p1", "p2", "p3")}
    a, b = halves(bin_of, seed=0)
    a, b = sorted(a), sorted(b)
    records = []
    for p in a:
        records += [rec("majority", 4, p, True, 40), rec("beam", 4, p, False, 40)]
    for i, p in enumerate(b):
        records += [rec("majority", 4, p, i == 0, 40), rec("beam", 4, p, True, 40)]
    out = compute_optimal(records, bin_of, seed=0)
    assert out["choices"] == [{"bin0@4": "majority@4"}, {"bin0@4": "beam@4"}]
    assert out["budgets"][4]["accuracy"] == 0.25 and out["budgets"][4]["problems"] == 4


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


def test_validate_sweep_names_every_bad_cell_before_anything_runs():
    from test_search import SOLUTIONS, Scripted, Toy

    from ponder.search import SearchContext
    from ponder.tasks.base import Problem

    cfg = ScaleConfig(strategies=("majority", "beam", "dvts"), budgets=(2, 4, 6), beam_width=4)
    message = r"beam: budget 6 is not a multiple of beam_width 4.*dvts: budget 6 is not a multiple of beam_width 4"
    with pytest.raises(ValueError, match=message):
        validate_sweep(cfg)
    gen = Scripted(solutions=SOLUTIONS)
    with pytest.raises(ValueError, match=message):
        sweep(SearchContext(gen, Toy()), [Problem("p0", "2+3*4", "14")], cfg)
    assert gen.usage.calls == 0  # nothing ran
    validate_sweep(ScaleConfig(strategies=("beam",), budgets=(1, 2, 4, 8), beam_width=4))  # min(M, N) divides N
    with pytest.raises(ValueError, match="unknown search strategy 'beems'"):
        validate_sweep(ScaleConfig(strategies=("beems",)))


def test_sweep_resumes_from_its_records_file(tmp_path):
    from test_search import SOLUTIONS, Scripted, StepTable, Toy

    from ponder.search import SearchContext
    from ponder.tasks.base import Problem

    problems = [Problem("p0", "2+3*4", "14"), Problem("p1", "4*5", "20")]
    cfg = ScaleConfig(strategies=("greedy", "majority", "best_of_n"), budgets=(1, 2))
    table = {"2+12": 0.9, "Answer: 14": 0.8, "5*4": 0.6, "Answer: 20": 0.7}
    ctx = lambda gen: SearchContext(gen, Toy(), StepTable(table))  # noqa: E731
    drop_wall = lambda rs: [{k: v for k, v in r.items() if k != "wall_s"} for r in rs]  # noqa: E731
    full_path = tmp_path / "full.jsonl"
    full = sweep(ctx(Scripted(solutions=SOLUTIONS)), problems, cfg, cells=full_path)
    assert len(full) == 2 * (1 + 2 + 2 + 1) and drop_wall(read_records(full_path)) == drop_wall(full)  # + the difficulty probe
    # A run killed after 3 records, in the middle of writing the 4th.
    killed = tmp_path / "killed.jsonl"
    lines = full_path.read_text().splitlines(keepends=True)
    killed.write_text("".join(lines[:3]) + lines[3][:20])
    gen = Scripted(solutions=SOLUTIONS)
    resumed = sweep(ctx(gen), problems, cfg, cells=killed)
    # The problems of a (strategy, budget) share its engine calls: majority@1 (p1 alone),
    # majority@2, best_of_n@1, best_of_n@2 and the difficulty probe are left, one call each.
    assert gen.usage.calls == 5
    assert drop_wall(resumed) == drop_wall(full)
    assert drop_wall(read_records(killed)) == drop_wall(full)
    # A rerun of a finished sweep computes nothing.
    gen = Scripted(solutions=SOLUTIONS)
    assert drop_wall(sweep(ctx(gen), problems, cfg, cells=killed)) == drop_wall(full)
    assert gen.usage.calls == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines[0] + "not json\n" + lines[1])
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected a JSON sweep record"):
        read_records(bad)


def test_weighted_selection_is_named_weighted_vote():
    rows = summarize([{**rec("best_of_n", 4, "p", True, 40), "selection": "weighted vote"},
                      {**rec("majority", 4, "p", True, 40), "selection": "majority vote"}])
    assert [(r["strategy"], r["selection"]) for r in rows] == [
        ("best_of_n", "weighted vote"), ("majority", "majority vote"), ("pass@N oracle", None)]
    table = table_markdown(rows)
    assert "| best_of_n (weighted vote) | 4 |" in table and "| majority | 4 |" in table


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
    assert len(data["records"]) == 4 * (1 + 3 * 2 + 1)  # + the difficulty probe
    assert "separate samples" in data["compute_optimal"]["difficulty"]
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
