"""Process and outcome annotation: label formulas on hand-computed cases, OmegaPRM's search,
resume after kill -9, GSM8K-format files, and bad stepwise input."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ponder.annotate import (
    LLMJudge,
    OmegaConfig,
    binary_search_first_error,
    consensus,
    first_error_from_labels,
    math_shepherd,
    omega_prm,
    parse_verdict,
    q_value,
    u_value,
)
from ponder.annotate.annotator import AnnotateConfig, Annotator
from ponder.annotate.outputs import derived_files, label_quality
from ponder.generation.base import Generator, Sample, SamplingParams, Usage
from ponder.tasks import get_task
from ponder.tasks.arith import solve

ROOT = Path(__file__).resolve().parents[1]


class OraclePolicy(Generator):
    """A scripted arith policy for exact label checks: from a state whose steps are all
    correct, the first `good` of its n samples finish the solution correctly and the rest
    answer -1 (or, with `blank`, end at once: an empty completion); from a state with a wrong
    step, every sample carries on from the wrong expression (so it never reaches the gold
    answer)."""

    def __init__(self, task, good: int, blank: bool = False):
        self.task, self.good, self.blank, self.usage = task, good, blank, Usage()
        self.states = []

    def prompt_ids(self, prompts):  # characters as tokens
        return [[ord(c) for c in p] for p in prompts]

    tokenize = prompt_ids

    def generate(self, prompts, params: SamplingParams):
        out = []
        for prompt in prompts:
            prompt = prompt if isinstance(prompt, str) else "".join(map(chr, prompt))
            lines = prompt.split("\n")
            expr, prefix = lines[0], [l for l in lines[1:] if l]
            self.states.append(tuple(prefix))
            problem = next(p for p in self.problems if p.question == expr)
            check = self.task.check_steps(problem, prefix) if prefix else None
            last = prefix[-1] if prefix else expr
            samples = []
            for j in range(params.n):
                if check is None or check.first_error is None:
                    text = "\n".join(solve(last)) if j < self.good else ("" if self.blank else "Answer: -1")
                else:
                    try:
                        text = "\n".join(solve(last))
                    except Exception:
                        text = "Answer: -1"
                samples.append(Sample(text, [0] * len(text), None, "stop", len(text)))
                self.usage.generated_tokens += len(text)
            out.append(samples)
        self.usage.calls += 1
        return out


@pytest.fixture
def arith():
    return get_task("arith", instruction=False)


def _wrong_at(task, problem, index):
    """The reference steps with step `index` made wrong (a digit shifted by one) and the
    solution carried on consistently from the wrong expression."""
    steps = task.split_steps(task.reference(problem))
    bad = steps[index]
    i = [i for i, ch in enumerate(bad) if ch.isdigit()][-1]
    wrong = bad[:i] + str((int(bad[i]) + 1) % 10) + bad[i + 1:]
    steps = steps[:index] + [wrong] + (solve(wrong) if "Answer" not in wrong else [])
    assert task.check_steps(problem, steps).first_error == index
    return steps


def test_math_shepherd_hard_and_soft_labels_by_hand(arith):
    problems = [p for p in arith.problems("test", n=50, seed=3) if len(solve(p.question)) >= 3][:2]
    gen = OraclePolicy(arith, good=1)
    gen.problems = problems
    ok = arith.split_steps(arith.reference(problems[0]))
    bad = _wrong_at(arith, problems[1], 1)
    labels = math_shepherd(gen, arith, [(problems[0], ok, True), (problems[1], bad, False)], k=4, seed=0)
    # correct prefixes: 1 of 4 rollouts reaches the answer -> soft 0.25, hard 1; the last
    # step is the solution's own outcome; from the wrong step on, no rollout can recover.
    assert labels[0].soft == [0.25] * (len(ok) - 1) + [1.0]
    assert labels[0].hard == [True] * len(ok) and labels[0].first_error is None
    assert labels[1].soft == [0.25] + [0.0] * (len(bad) - 1)
    assert labels[1].first_error == 1
    assert labels[0].rollouts == 4 * (len(ok) - 1) and labels[1].rollouts == 4 * (len(bad) - 1)
    assert gen.usage.calls == 1  # every prefix of every solution in one batched call


def test_omega_formulas_by_hand():
    # Q = alpha^(1-MC) * beta^(len/L): 0.5^0.5 * 0.9^(250/500)
    assert q_value(0.5, 250, 0.5, 0.9, 500) == pytest.approx(0.70710678 * 0.94868330)
    assert q_value(1.0, 0, 0.5, 0.9, 500) == 1.0
    # U = c_puct * sqrt(sum N) / (1 + N(s))
    assert u_value(1, 4, 0.125) == pytest.approx(0.125)
    assert u_value(0, 0, 0.125) == 0.0


def test_binary_search_localises_first_error():
    for n_steps in range(1, 12):
        for error in range(n_steps):
            found, probed = binary_search_first_error(n_steps, lambda m: m <= error)
            assert found == error
            assert len(probed) <= max(1, (n_steps - 1).bit_length())
    assert binary_search_first_error(8, lambda m: m <= 5) == (5, [4, 6, 5])


def test_omega_prm_labels_and_saves_rollouts(arith):
    problems = [p for p in arith.problems("test", n=80, seed=4) if len(solve(p.question)) >= 4][:3]
    gen = OraclePolicy(arith, good=2)
    gen.problems = problems
    groups, truth = [], []
    for j, p in enumerate(problems):
        ok = arith.split_steps(arith.reference(p))
        bad = _wrong_at(arith, p, j % (len(ok) - 1))
        groups.append((p, [(ok, True, 10), (bad, False, 10)]))
        truth.append(j % (len(ok) - 1))
    trees = omega_prm(gen, arith, groups, OmegaConfig(k=4, search_limit=1))
    for sols, err in zip(trees, truth):
        ok_sol, bad_sol = sols[0], sols[1]
        assert ok_sol.soft == [1.0] * len(ok_sol.steps) and ok_sol.rollouts == 0
        assert bad_sol.first_error == err
        # steps before the error carry an MC estimate of 2/4, the rest 0
        assert bad_sol.soft == [0.5] * err + [0.0] * (len(bad_sol.steps) - err)
        n = len(bad_sol.steps)
        assert bad_sol.rollouts <= 4 * max(1, (n - 1).bit_length()) < 4 * (n - 1) + 1
    ms = math_shepherd(gen, arith, [(p, g[1][0], False) for p, g in groups], k=4)
    assert sum(t[1].rollouts for t in trees) < sum(m.rollouts for m in ms)


def test_omega_prm_never_searches_a_blank_rollout(arith):
    """An empty incorrect rollout (immediate EOS) from a prefix with 0 < MC < 1 has no step
    to localise: searching it would mark the prefix's last step as the first error although
    its MC is 0.5, and would spend one of `search_limit`'s selections."""
    [p] = [p for p in arith.problems("test", n=80, seed=4) if len(solve(p.question)) >= 4][:1]
    gen = OraclePolicy(arith, good=2, blank=True)
    gen.problems = [p]
    ok = arith.split_steps(arith.reference(p))
    bad2, bad1 = _wrong_at(arith, p, 2), _wrong_at(arith, p, 1)
    [sols] = omega_prm(gen, arith, [(p, [(ok, True, 10), (bad2, False, 10), (bad1, False, 10)])],
                       OmegaConfig(k=4, search_limit=2))
    # Both selections go to the policy's two incorrect solutions, each localised exactly.
    assert sols[1].first_error == 2 and sols[1].soft == [0.5, 0.5] + [0.0] * (len(bad2) - 2)
    assert sols[2].first_error == 1 and sols[2].soft == [0.5] + [0.0] * (len(bad1) - 1)
    blanks = [s for s in sols[3:] if not s.correct]
    assert blanks and all(s.soft is None for s in blanks)


def test_judge_verdicts_and_consensus():
    assert parse_verdict("Step 3 is wrong", 5) == 2
    assert parse_verdict("0", 5) is None
    assert parse_verdict("9", 5) == "invalid" and parse_verdict("none", 5) == "invalid"
    assert consensus(2, 2) and consensus(None, None)
    assert not consensus(2, None) and not consensus(None, "invalid") and not consensus(1, 2)

    class Scripted(Generator):
        usage = Usage()

        def generate(self, prompts, params):
            assert "Step 2: 38" in prompts[0]
            return [[Sample("2", [1], None, "stop", 1)]]

    judge = LLMJudge(Scripted())
    assert judge.score_steps(["8+(5*6)"], [["8+30", "38", "Answer: 38"]]) == [[1.0, 0.0, 0.0]]


def test_completer_rolls_out_in_place_of_the_policy(arith):
    """Math-Shepherd's completer: the policy samples the solutions, another model does the
    rollouts from their prefixes, so the labels measure what the completer can finish."""
    problems = arith.problems("train", n=2, seed=0)
    policy, completer = OraclePolicy(arith, good=1), OraclePolicy(arith, good=4)
    policy.problems = completer.problems = problems
    cfg = AnnotateConfig(methods=["math_shepherd"], samples=1, k=4, rationalize=False)
    own = Annotator(cfg, policy, arith).chunk(problems, 0)
    policy.states.clear()
    strong = Annotator(cfg, policy, arith, completer=completer).chunk(problems, 0)
    assert [r["completion"] for r in own] == [r["completion"] for r in strong]  # the same samples
    assert all(r["correct"] for r in own)
    # from each correct prefix 1 of the policy's 4 rollouts finishes right, all 4 of the completer's
    assert all(v == 0.25 for r in own for v in r["labels"]["math_shepherd"]["soft"][:-1])
    assert all(v == 1.0 for r in strong for v in r["labels"]["math_shepherd"]["soft"])
    assert policy.states == [(), ()]  # with a completer, the policy only sampled the two solutions
    assert len(completer.states) > 0


def test_derived_files_and_quality():
    cfg = AnnotateConfig(methods=["math_shepherd", "truth"])
    base = dict(prompt="1+2\n", question="1+2", answer="3", tokens=5, chunk=0)
    records = [
        dict(base, problem_id="a", completion="3\nAnswer: 3", steps=["3", "Answer: 3"], correct=True, source="policy",
             labels={"math_shepherd": {"soft": [1.0, 1.0], "rollouts": 4, "tokens": 8},
                     "truth": {"soft": [1.0, 1.0], "rollouts": 0, "tokens": 0}}),
        dict(base, problem_id="a", completion="4\nAnswer: 4", steps=["4", "Answer: 4"], correct=False,
             source="policy", labels={"math_shepherd": {"soft": [0.5, 0.0], "rollouts": 4, "tokens": 8},
                                      "truth": {"soft": [0.0, 0.0], "rollouts": 0, "tokens": 0}}),
    ]
    files = derived_files(records, cfg)
    assert files["sft"] == [{"prompt": "1+2\n", "completion": "3\nAnswer: 3"}]
    assert files["preference"] == [{"prompt": "1+2\n", "chosen": "3\nAnswer: 3", "rejected": "4\nAnswer: 4"}]
    assert [r["label"] for r in files["orm"]] == [True, False]
    assert files["stepwise_math_shepherd"][1]["labels"] == [0.5, 0.0]
    q = label_quality(records, cfg.methods)["math_shepherd"]
    # MC put the second solution's error at step 1 (truth: step 0): 1 of 2 first errors right,
    # 3 of 4 step labels agree; 4 rollouts per solution.
    assert q["first_error_acc"] == 0.5 and q["step_agreement"] == 0.75 and q["rollouts_per_solution"] == 4
    # read as a verifier: the right solution passes (1.0), the wrong one's error is misplaced (0.0)
    assert q["processbench_f1"] == 0.0
    records[1]["labels"]["math_shepherd"]["soft"] = [0.0, 0.0]
    assert label_quality(records, cfg.methods)["math_shepherd"]["processbench_f1"] == 1.0


def _write_tiny_policy(path: Path):
    from ponder.models import model_from_spec

    model, tok = model_from_spec("tiny:1m", seed=0)
    model.save_pretrained(path)
    tok.save_pretrained(path)


def _annotate_cmd(runs: Path, run: str, policy: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ponder.cli", "annotate", "--run", run, "--runs-dir", str(runs),
            "--policy", str(policy), "--n-problems", "8", "--samples", "2", "--k", "2", "--max-tokens", "12",
            "--method", "math_shepherd", "--method", "omega_prm", "--method", "truth",
            "--task-arg", "instruction=false", *extra]


def test_annotate_resumes_after_kill(tmp_path):
    policy = tmp_path / "policy"
    _write_tiny_policy(policy)
    runs = tmp_path / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cfg = tmp_path / "c.yaml"
    cfg.write_text("chunk: 2\nrationalize: false\n")
    subprocess.run(_annotate_cmd(runs, "full", policy, "--config", str(cfg)), check=True, env=env,
                   capture_output=True)
    proc = subprocess.Popen(_annotate_cmd(runs, "killed", policy, "--config", str(cfg)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = runs / "killed" / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (records.exists() and records.read_text().count("\n") >= 1):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {json.loads(l)["chunk"] for l in records.read_text().splitlines() if l.strip()}
    assert done_before and max(done_before) < 3, "the kill should land before the last chunk"
    with open(records, "a") as f:
        f.write('{"chunk": 9, "torn')  # what a kill in the middle of a write leaves
    resumed = subprocess.run(_annotate_cmd(runs, "killed", policy, "--config", str(cfg)), check=True, env=env,
                             capture_output=True, text=True)
    assert f"{len(done_before) * 2} of 8 problems already annotated" in " ".join(resumed.stderr.split())
    summary = json.loads((runs / "killed" / "summary.json").read_text())
    assert summary["resumed_after_chunks"] == len(done_before) and summary["wall_s"] > 0
    for name in ("records.jsonl", "stepwise_math_shepherd.jsonl", "stepwise_omega_prm.jsonl", "orm.jsonl"):
        assert (runs / "killed" / name).read_text() == (runs / "full" / name).read_text(), name
    rows = [json.loads(l) for l in (runs / "full" / "records.jsonl").read_text().splitlines()]
    assert sorted({r["chunk"] for r in rows}) == [0, 1, 2, 3]


def test_annotate_gsm8k_format_file(tmp_path):
    src = ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"
    if not src.exists():
        pytest.skip(f"GSM8K data not found at {src}")
    data = tmp_path / "gsm8k.jsonl"
    data.write_text("".join(src.read_text().splitlines(keepends=True)[:3]))
    policy = tmp_path / "policy"
    _write_tiny_policy(policy)
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "ponder.cli", "annotate", "--run", "g", "--runs-dir", str(runs), "--policy",
           str(policy), "--task", str(data), "--n-problems", "3", "--samples", "2", "--k", "2", "--max-tokens",
           "16", "--method", "math_shepherd", "--method", "omega_prm"]
    res = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads((runs / "g" / "summary.json").read_text())
    assert summary["samples"] == 6 and summary["files"]["orm"] == 6
    for line in (runs / "g" / "stepwise_math_shepherd.jsonl").read_text().splitlines():
        row = json.loads(line)
        assert len(row["labels"]) == len(row["completions"]) and row["method"] == "math_shepherd"
    # 'truth' needs an exact step checker, which a GSM8K file has not
    from ponder.annotate.annotator import Annotator

    with pytest.raises(ValueError, match="exact step checker"):
        Annotator(AnnotateConfig(methods=["truth"]), None, get_task(str(data)))


def test_first_error_from_labels():
    assert first_error_from_labels([0.5, 0.25, 0.0, 1.0]) == 2
    assert first_error_from_labels([True, True]) is None
    assert first_error_from_labels([0.9, 0.4], threshold=0.5) == 1
