"""Automatic process labels and the reward models trained on them, against ground truth.

    .venv/bin/python benchmarks/annotation.py                 # needs the demo's SFT policy
    .venv/bin/python benchmarks/annotation.py --judge smollm2 --n-train 128

1. Annotate `--n-train` training problems of `arith` (samples from the SFT policy) with
   Math-Shepherd MC, OmegaPRM and, with `--judge`, an LLM judge and MC+judge consensus.
   Against the exact step checker: first-error accuracy, step-label agreement, rollouts and
   generated tokens per labelled solution; the ratio of MC's rollouts to OmegaPRM's.
2. Train PRMs on each method's automatic labels (none sees the checker), and an ORM on the
   outcome labels, all initialised from the policy.
3. On `--n-test` held-out test problems x `--test-samples` fresh samples: ProcessBench F1
   and best-of-N accuracy (naive argmax, and weighted: scores summed per answer) of each
   reward model, beside majority vote and the oracle.

Every stage lives in --out and is reused on a rerun (annotation and training resume).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch


def table(title: str, header: list[str], rows: list[list]) -> str:
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    cells = [header] + [[fmt(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
              for r in cells[1:]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="runs/demo-arith/sft/model",
                        help="arith SFT policy (run `ponder demo --task arith --run demo-arith` first)")
    parser.add_argument("--out", default="runs/bench-annotation", help="folder for every stage's output")
    parser.add_argument("--n-train", type=int, default=512, help="problems to annotate")
    parser.add_argument("--samples", type=int, default=4, help="solutions sampled per annotated problem")
    parser.add_argument("--k", type=int, default=8, help="rollouts per prefix (MC N, OmegaPRM k)")
    parser.add_argument("--judge", default=None, help="judge model (e.g. smollm2); off by default")
    parser.add_argument("--prm-steps", type=int, default=400, help="optimiser steps per reward model")
    parser.add_argument("--n-test", type=int, default=100, help="held-out problems")
    parser.add_argument("--test-samples", type=int, default=16, help="samples per held-out problem")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature everywhere")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not Path(args.policy, "config.json").exists():
        raise SystemExit(f"no policy at {args.policy}: run `ponder demo --task arith --run demo-arith` first "
                         "or pass --policy")

    from ponder.commands import annotate, eval_rm, train_rm

    out = Path(args.out)
    task_args = {"instruction": False}
    methods = ["math_shepherd", "omega_prm", "truth"] + (["judge"] if args.judge else [])
    t0 = time.time()
    cfg = annotate.Config(run="annotate", task_args=task_args, n_problems=args.n_train, policy=args.policy,
                         samples=args.samples, k=args.k, temperature=args.temperature, max_tokens=80,
                         methods=methods, judge_model=args.judge or "smollm2", chunk=32, runs_dir=str(out))
    summary = annotate.run(cfg, progress=True)
    t_annotate = time.time() - t0
    q = summary["methods"]
    rows = [[m, r["labelled"], r.get("first_error_acc", "-"), r.get("step_agreement", "-"),
             r.get("rollouts_per_solution", "-"), r.get("tokens_per_solution", "-")] for m, r in q.items()]
    print(table(f"\nprocess labels on {summary['samples']} policy samples of {summary['problems']} train problems "
                f"(sample accuracy {summary['sample_accuracy']:.3f}), against the exact step checker",
                ["method", "labelled", "first-error acc", "step agreement", "rollouts/solution", "tokens/solution"],
                rows))
    ms, om = q["math_shepherd"], q["omega_prm"]
    ratio = ms["rollouts_per_solution"] / max(om["rollouts_per_solution"], 1e-9)
    print(f"rollouts per policy sample, Math-Shepherd / OmegaPRM: {ratio:.2f}x  "
          f"(OmegaPRM also labelled {om['labelled_total'] - om['labelled']} tree rollouts, "
          f"{om['rollouts_per_labelled']:.2f} rollouts per labelled solution overall)")

    ann = out / "annotate"
    models = {}
    sources = {"prm-mc": "stepwise_math_shepherd.jsonl", "prm-omega": "stepwise_omega_prm.jsonl"}
    if args.judge:
        sources["prm-consensus"] = "stepwise_consensus.jsonl"
    t1 = time.time()
    for name, data in sources.items():
        if not (out / name / "model" / "reward_config.json").exists():
            train_rm.run(train_rm.Config(run=name, kind="prm", data=str(ann / data), model=args.policy, steps=args.prm_steps,
                                runs_dir=str(out)))
        models[name] = str(out / name / "model")
    if not (out / "orm" / "model" / "reward_config.json").exists():
        train_rm.run(train_rm.Config(run="orm", kind="orm", data=str(ann / "orm.jsonl"), model=args.policy,
                            steps=args.prm_steps, runs_dir=str(out)))
    models["orm"] = str(out / "orm" / "model")
    t_train = time.time() - t1

    t2 = time.time()
    res = eval_rm.run(eval_rm.Config(rm=list(models.values()) + ["verifier"], policy=args.policy, task_args=task_args,
                                     n=args.n_test, samples=args.test_samples, temperature=args.temperature,
                                     max_tokens=80))
    t_eval = time.time() - t2
    ns = list(res["majority"])
    rows = []
    for name, path in list(models.items()) + [("verifier (exact checker)", "verifier")]:
        r = res["models"][path]
        pb = r.get("processbench", {})
        rows.append([name, pb.get("f1", "-"), pb.get("acc_erroneous", "-"), pb.get("acc_correct", "-"),
                     *[r["best_of_n"][n] for n in ns]])
        rows.append([f"  {name}, weighted", "", "", "", *[r["weighted_best_of_n"][n] for n in ns]])
    rows.append(["majority vote", "-", "-", "-", *[res["majority"][n] for n in ns]])
    rows.append(["oracle (pass@N)", "-", "-", "-", *[res["oracle"][n] for n in ns]])
    print(table(f"\nreward models on {res['problems']} held-out problems x {res['samples']} samples "
                f"(sample accuracy {res['sample_accuracy']:.3f})",
                ["selector", "F1", "acc err", "acc correct", *[f"BoN@{n}" for n in ns]], rows))
    print(f"\nwall time: annotate {t_annotate:.0f} s, train {t_train:.0f} s, eval {t_eval:.0f} s")
    (out / "result.json").write_text(json.dumps({"annotation": summary, "reward_models": res}, indent=2))


if __name__ == "__main__":
    main()
