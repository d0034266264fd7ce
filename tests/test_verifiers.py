"""Step verifiers built without step labels (ponder.annotate.verifiers): each must flag the
first wrong step of a hand-built solution, count its compute, and plug into search as a scorer."""
from __future__ import annotations

import random

import pytest

from ponder.annotate.verifiers import RolloutVerifier, StepJudge
from ponder.eval.rm import first_below
from ponder.generation.factory import make_engine
from ponder.search import SearchContext, SearchParams, search
from ponder.search.scorers import load_scorer, parse_spec
from ponder.tasks import get_task

TASK = get_task("arith", instruction=False)


def corrupt(step: str) -> str:
    """The step with its last digit changed: a wrong intermediate result."""
    i = max(i for i, ch in enumerate(step) if ch.isdigit())
    return step[:i] + str((int(step[i]) + 3) % 10) + step[i + 1:]


@pytest.fixture(scope="module")
def solved(arith_policy):
    """(problem, steps) of the policy's greedy solutions of at least three steps that the exact
    step checker finds right throughout: solutions the policy itself completes reliably."""
    from ponder.generation.base import SamplingParams

    engine = make_engine("torch", arith_policy)
    problems = TASK.problems("test", n=200, seed=3)
    outs = engine.generate([TASK.prompt(p) for p in problems],
                           SamplingParams(n=1, temperature=0.0, max_tokens=64, logprobs=False))
    out = []
    for p, o in zip(problems, outs):
        steps = TASK.split_steps(o[0].text)
        if len(steps) >= 3 and TASK.check_steps(p, steps).first_error is None:
            out.append((p, steps))
    return out[:4]


def hand_built(solved):
    """Each right solution, and beside it the same solution with its last operation's result
    changed (the step before the answer line): the first wrong step is that one."""
    prompts, solutions, wrong_at = [], [], []
    for p, steps in solved:
        prompts += [TASK.prompt(p)] * 2
        solutions += [steps, steps[:-2] + [corrupt(steps[-2]), steps[-1]]]
        wrong_at += [None, len(steps) - 2]
    return prompts, solutions, wrong_at


def test_rollout_verifier_flags_the_first_wrong_step_and_counts_its_rollouts(arith_policy, solved):
    assert len(solved) >= 2, "the fixture policy should solve some 3-step problems greedily"
    engine = make_engine("torch", arith_policy)
    problems = [p for p, _ in solved]
    verifier = RolloutVerifier(engine, TASK, problems, k=8, temperature=1.0, max_tokens=48, seed=0)
    prompts, solutions, wrong_at = hand_built(solved)
    before = engine.usage.copy()
    scores = verifier.score_steps(prompts, solutions)
    assert [first_below(s, 0.5) for s in scores] == wrong_at
    # The answer line is checked, not rolled out, and after the first zero nothing is rolled
    # out (early stop): k rollouts per distinct prefix ending in an operation line, up to and
    # including the wrong one (a right and a wrong solution share their first lines).
    prefixes = {(p, tuple(st[:i + 1])) for p, st, w in zip(prompts, solutions, wrong_at)
                for i in range(len(st) - 1 if w is None else w + 1)}
    assert verifier.rollouts == 8 * len(prefixes)
    spent = engine.usage - before
    assert verifier.usage.tokens == spent.prefill_tokens + spent.generated_tokens > 0
    # A prefix is paid for once: rescoring (as a tree search does with a growing solution) is free.
    tokens = verifier.usage.tokens
    assert verifier.score_steps(prompts, solutions) == scores
    assert verifier.usage.tokens == tokens
    # Seeded by the prefix, not by the call: one solution alone scores as it did in the batch.
    alone = RolloutVerifier(make_engine("torch", arith_policy), TASK, problems, k=8, max_tokens=48, seed=0)
    assert alone.score_steps(prompts[1:2], solutions[1:2]) == scores[1:2]


def test_rollout_verifier_soft_and_no_early_stop(arith_policy, solved):
    problem, steps = solved[0]
    verifier = RolloutVerifier(make_engine("torch", arith_policy), TASK, [problem], k=4, max_tokens=48,
                               estimate="soft", early_stop=False)
    [scores] = verifier.score_steps([TASK.prompt(problem)], [steps[:-2] + [corrupt(steps[-2]), steps[-1]]])
    assert verifier.rollouts == 4 * (len(steps) - 1)  # every operation line rolled out, the answer checked
    assert all(s in (0.0, 0.25, 0.5, 0.75, 1.0) for s in scores)
    # The wrong line scores 0; the answer line after it is right as an outcome (the original
    # answer), which is what the outcome check says when nothing stops at the first error.
    assert scores[-2] == 0.0 and scores[-1] == 1.0


def malformed(step: str) -> str:
    """The step with its first operator doubled ("8+30" -> "8++30"): a step that is not an
    operation at all, an error a judge can see in the step itself."""
    i = next(i for i, ch in enumerate(step) if ch in "+-*/" and i > 0)
    return step[:i + 1] + step[i:]


def has_operator(step: str) -> bool:
    return any(ch in "+-*/" for ch in step[1:])


TEMPLATE = "{step}?"
"""The test judge reads the step alone: a malformed step shows in itself, and short questions
keep its fine-tuning cheap (the default template's layout is checked on its own below)."""


@pytest.fixture(scope="module")
def judge_dir(arith_policy, tmp_path_factory):
    """A judge fine-tuned from the arith policy on yes/no questions about single operation
    lines: lines of reference solutions (yes) and the same lines malformed (no)."""
    import torch

    from ponder.models import load_model
    from ponder.train.sft import SFTConfig, SFTTrainer

    rng = random.Random(0)
    judge = StepJudge(None, template=TEMPLATE, yes="Y", no="N")
    rows = []
    for p in TASK.problems("train", n=4000, seed=5):
        steps = TASK.split_steps(TASK.reference(p))
        i = rng.choice([i for i, s in enumerate(steps) if has_operator(s)])
        wrong = rng.random() < 0.5
        shown = steps[:i] + [malformed(steps[i]) if wrong else steps[i]]
        rows.append({"prompt": judge.prompt(TASK.prompt(p), shown), "completion": "N" if wrong else "Y"})
    torch.manual_seed(0)
    model, tok = load_model(arith_policy)
    run = tmp_path_factory.mktemp("judge")
    cfg = SFTConfig(lr=3e-3, steps=150, warmup_steps=10, seed=0, save_every=150, batch_size=32)
    SFTTrainer(model, tok, rows, cfg, run, progress=False).train()
    return str(run / "model")


def test_step_judge_flags_the_first_wrong_step_from_its_yes_no_probabilities(judge_dir):
    problems = [p for p in TASK.problems("test", n=60, seed=9)
                if sum(map(has_operator, TASK.split_steps(TASK.reference(p)))) >= 2][:6]
    engine = make_engine("torch", judge_dir)
    judge = StepJudge(engine, template=TEMPLATE, yes="Y", no="N")
    prompts, solutions, wrong_at = [], [], []
    for p in problems:
        steps = [s for s in TASK.split_steps(TASK.reference(p)) if has_operator(s)]
        prompts += [TASK.prompt(p)] * 2
        solutions += [steps, steps[:1] + [malformed(steps[1])] + steps[2:]]
        wrong_at += [None, 1]
    before = engine.usage.copy()
    scores = judge.score_steps(prompts, solutions)
    assert all(0.0 < x < 1.0 for s in scores for x in s)
    assert [first_below(s, 0.5) for s in scores] == wrong_at, scores
    spent = engine.usage - before
    assert judge.usage.tokens == spent.prefill_tokens + spent.generated_tokens > 0
    # Every (solution, step) question is asked once: the shared first steps are not asked twice.
    questions = {(p, tuple(st[:i + 1])) for p, st in zip(prompts, solutions) for i in range(len(st))}
    assert len(judge._scores) == len(questions)


def test_the_default_judge_question_shows_the_problem_and_the_steps_before():
    judge = StepJudge(None)
    text = judge.prompt("numbers [3, 5], target 8\n", ["3+5=8", "Answer: 3+5"])
    assert text == ("Problem: numbers [3, 5], target 8\nStep 1: 3+5=8\nNext step: Answer: 3+5\n"
                    "Is the next step correct? Answer yes or no.\n")
    with pytest.raises(ValueError, match="must contain"):
        StepJudge(None, template="{question} ok?")


def test_step_verifiers_by_spec_in_a_search_with_their_compute_counted(arith_policy, solved):
    policy = make_engine("torch", arith_policy)
    opened = []

    def fresh_policy():
        opened.append(make_engine("torch", arith_policy))
        return opened[-1]

    problems = [p for p, _ in solved]
    scorer = load_scorer("rollout:k=2:max_tokens=40:estimate=soft", TASK, problems, policy=fresh_policy, seed=1)
    assert isinstance(scorer, RolloutVerifier) and (scorer.k, scorer.estimate, scorer.seed) == (2, "soft", 1)
    assert scorer.generator is opened[0] and scorer.generator is not policy
    ctx = SearchContext(policy, TASK, scorer)
    r = search("beam", ctx, problems[0], SearchParams(n=4, beam_width=2, temperature=1.0, max_tokens=48,
                                                     max_step_tokens=16, seed=0))
    # The verifier's rollouts are scorer compute, the policy's steps generation compute: apart.
    assert r.compute.scorer_tokens == scorer.usage.tokens > 0
    assert r.compute.generated_tokens == policy.usage.generated_tokens > 0
    assert all(c.step_scores for c in r.candidates)
    # A second search of the same problem (another cell of a sweep) pays for its own scoring.
    again = search("beam", ctx, problems[0], SearchParams(n=4, beam_width=2, temperature=1.0, max_tokens=48,
                                                          max_step_tokens=16, seed=0))
    assert again.compute.scorer_tokens == r.compute.scorer_tokens
    assert [c.step_scores for c in again.candidates] == [c.step_scores for c in r.candidates]


@pytest.mark.parametrize("spec, message", [
    ("rollout:k=two", "k takes int"),
    ("rollout:depth=3", "names among k, temperature"),
    ("rollout:early_stop=maybe", "early_stop takes true or false"),
    ("judge:colour=red", "names among model"),
])
def test_bad_verifier_specs_name_the_option(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_spec(spec)


def test_a_step_verifier_without_a_policy_says_what_it_needs():
    with pytest.raises(ValueError, match="runs the policy model"):
        load_scorer("rollout", TASK, [])
    with pytest.raises(ValueError, match="judge:model=DIR"):
        load_scorer("judge", TASK, [])


def test_eval_rm_rates_the_rollout_verifier_with_its_tokens(arith_policy, tmp_path):
    import json

    from typer.testing import CliRunner

    from ponder.cli import app

    out = tmp_path / "rm.json"
    res = CliRunner().invoke(app, ["eval-rm", "--rm", "rollout:k=2:max_tokens=40", "--rm", "verifier", "--policy",
                                   arith_policy, "--task", "arith", "--task-arg", "instruction=false", "--n", "6",
                                   "--samples", "2", "--max-tokens", "48", "--output", str(out)])
    assert res.exit_code == 0, res.output
    models = json.loads(out.read_text())["models"]
    rollout, exact = models["rollout:k=2:max_tokens=40"], models["verifier"]
    assert rollout["kind"] == "RolloutVerifier" and rollout["scorer_tokens_per_solution"] > 0
    assert exact["scorer_tokens_per_solution"] == 0 and exact["processbench"]["acc_erroneous"] == 1.0
    assert 0.0 <= rollout["processbench"]["f1"] <= 1.0
    bad = CliRunner().invoke(app, ["eval-rm", "--rm", "rollout:k=zero", "--policy", arith_policy, "--task", "arith"])
    assert bad.exit_code != 0 and "k takes int" in bad.output and "Traceback" not in bad.output
