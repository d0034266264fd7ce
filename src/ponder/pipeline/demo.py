"""The demo pipeline: the whole reasoning-model pipeline as cached stages, each a named function.

build -> sft -> eval_sft -> annotate -> prm -> rl -> eval_rl -> scale -> report

1. a character tokenizer and a tiny Llama, SFT on reference solutions (`countdown` by default:
   one reference equation per problem, among the many that are right);
2. solutions sampled from the SFT policy, labelled by outcome and by Math-Shepherd MC and
   OmegaPRM (scored against the exact step checker); a PRM trained on the OmegaPRM labels
   (no ground truth) and evaluated on held-out samples (ProcessBench F1, best-of-N);
3. GRPO from the SFT policy: process GRPO by default (each line rewarded by the exact step
   checker, whose answer-line label is the outcome check), or the outcome verifier alone
   (`rl_estimator: grpo`);
4. a test-time scaling sweep (greedy, majority, best-of-N and beam search with the PRM) on
   held-out problems for the SFT and the RL policy;
5. report.md, report.html (plots embedded), summary.json and a terminal table.

Each stage function takes the config, the problem split and the earlier stages' typed results,
and returns its own typed result; `run_stages` caches each as stages/<name>.json, so a rerun
skips finished stages and a stage killed mid-way resumes from its own checkpoint (training) or
records (annotation). The held-out set (first `eval_n` of a test draw) is never trained or
selected on; the dev set (the next `dev_n`) is what training watches.

The claims the report makes are fixed before the run: RL vs SFT greedy accuracy on the
held-out set (and, on a task with a step checker, the share right with every line valid), and
one search-vs-majority pair (`compare_strategy` at `compare_budget` against
majority vote at the same N), each with the standard error of the paired per-problem difference.
"""
from __future__ import annotations

import time
from pathlib import Path

from ponder.pipeline import stages
from ponder.pipeline.cache import Stage, run_stages
from ponder.pipeline.claims import build_summary
from ponder.pipeline.config import DemoConfig
from ponder.pipeline.report import write_report
from ponder.runs import write_json


def run_demo(dc: DemoConfig, run_dir: Path) -> dict:
    """Run (or resume) every stage into `run_dir`, then write summary.json and the report; the
    summary."""
    t_start = time.time()
    split = stages.make_split(dc)
    pipeline = [
        Stage("build", lambda r: stages.build(dc, run_dir), stages.Built, "character tokenizer + tiny Llama from scratch"),
        Stage("sft", lambda r: stages.sft(dc, split, r["build"], run_dir), stages.Trained,
              f"SFT on {dc.task} reference solutions"),
        Stage("eval_sft", lambda r: stages.evaluate_policy(dc, split, r["sft"], run_dir / "eval_sft_records.jsonl"),
              stages.Evaluated, "SFT policy: held-out accuracy"),
        Stage("annotate", lambda r: stages.annotate(dc, split, r["sft"], run_dir), stages.Annotated,
              "sample solutions; outcome + Math-Shepherd + OmegaPRM labels"),
        Stage("prm", lambda r: stages.prm(dc, split, r["sft"], r["annotate"], run_dir), stages.PRMResult,
              "PRM on OmegaPRM labels; F1 and best-of-N on held-out samples"),
        Stage("rl", lambda r: stages.rl(dc, split, r["sft"], run_dir), stages.Trained,
              "GRPO from the SFT policy, " + ("exact step rewards" if dc.rl_estimator == "process_grpo"
                                              else "outcome reward")),
        Stage("eval_rl", lambda r: stages.evaluate_policy(dc, split, r["rl"], run_dir / "eval_rl_records.jsonl"),
              stages.Evaluated, "RL policy: held-out accuracy"),
        Stage("scale", lambda r: stages.scale(dc, split, {"sft": r["sft"], "rl": r["rl"]}, r["prm"], run_dir),
              stages.Scaled, "test-time scaling sweep with the PRM, SFT and RL policies"),
        Stage("equal_compute", lambda r: stages.equal_compute(dc, split, {"sft": r["sft"], "rl": r["rl"]}, r["scale"],
                                                              run_dir),
              stages.EqualCompute, f"best_of_n with the {dc.equal_compute_scorer} verifier at majority's total tokens"),
    ]
    results, wall = run_stages(run_dir, pipeline)
    summary = build_summary(dc, results, wall, time.time() - t_start)
    write_json(run_dir / "summary.json", summary)
    write_report(run_dir, summary, results)
    return summary
