"""What an annotation run writes from its records: the training files in TRL's formats (SFT,
ORM, preference and stepwise rows, the consensus subset) and each labeller's quality and cost
against the exact step checker. Pure functions of the records, so a resumed run rewrites the
same files."""
from __future__ import annotations

from ponder.annotate.judge import consensus
from ponder.annotate.math_shepherd import first_error_from_labels


def derived_files(records: list[dict], cfg) -> dict[str, list[dict]]:
    """The training files, from the records and the run's `AnnotateConfig` (its methods and
    max_pairs)."""
    files: dict[str, list[dict]] = {"sft": [], "orm": [], "preference": []}
    by_problem: dict[str, list[dict]] = {}
    for r in records:
        if "problem_id" in r:
            by_problem.setdefault(r["problem_id"], []).append(r)
    for pid, rs in by_problem.items():
        seen = set()
        for r in rs:
            if r["correct"] and r["source"] in ("policy", "rationalized") and r["completion"] not in seen:
                seen.add(r["completion"])
                files["sft"].append({"prompt": r["prompt"], "completion": r["completion"]})
        policy = [r for r in rs if r["source"] == "policy"]
        files["orm"] += [{"prompt": r["prompt"], "completion": r["completion"], "label": r["correct"]} for r in policy]
        good = list(dict.fromkeys(r["completion"] for r in policy if r["correct"]))
        bad = list(dict.fromkeys(r["completion"] for r in policy if not r["correct"]))
        pairs = [(g, b) for g in good for b in bad][: cfg.max_pairs]
        files["preference"] += [{"prompt": rs[0]["prompt"], "chosen": g, "rejected": b} for g, b in pairs]
    for method in cfg.methods:
        if method == "judge":
            continue
        rows = []
        for r in records:
            lab = r.get("labels", {}).get(method)
            if lab and lab["soft"] is not None:
                rows.append({"prompt": r["prompt"], "completions": r["steps"], "labels": lab["soft"],
                             "method": method, "source": r["source"], "problem_id": r["problem_id"],
                             "rollouts": lab["rollouts"], "tokens": lab["tokens"]})
        files[f"stepwise_{method}"] = rows
    if "judge" in cfg.methods and "math_shepherd" in cfg.methods:
        rows = []
        for r in records:
            labs = r.get("labels", {})
            if "judge" in labs and "math_shepherd" in labs:
                ms = labs["math_shepherd"]["soft"]
                if consensus(first_error_from_labels(ms), labs["judge"]["first_error"]):
                    rows.append({"prompt": r["prompt"], "completions": r["steps"], "labels": ms,
                                 "method": "consensus", "source": r["source"], "problem_id": r["problem_id"],
                                 "rollouts": labs["math_shepherd"]["rollouts"],
                                 "tokens": labs["math_shepherd"]["tokens"]})
        files["stepwise_consensus"] = rows
    return files


def label_quality(records: list[dict], methods: list[str]) -> dict[str, dict]:
    """Per method, over the policy samples it labelled: first-error accuracy, step-label
    agreement and ProcessBench F1 (the labels read as a verifier: their first 0 step as the
    predicted first error) against `truth` (when present), and rollouts / tokens per labelled
    solution."""
    from ponder.eval.rm import processbench_f1

    policy = [r for r in records if r.get("source") == "policy" and r.get("steps")]
    out = {}
    names = [m for m in methods if m != "truth"] + (["consensus"] if {"judge", "math_shepherd"} <= set(methods) else [])
    for m in names:
        fe_hits = agree = steps = labelled = rollouts = tokens = 0
        predicted, actual = [], []
        total_rollouts = sum(r["labels"].get(m, {}).get("rollouts", 0) or 0 for r in records
                             if m in r.get("labels", {}))
        for r in policy:
            labs = r["labels"]
            if m == "consensus":
                if "math_shepherd" not in labs or "judge" not in labs:
                    continue
                fe = first_error_from_labels(labs["math_shepherd"]["soft"])
                if not consensus(fe, labs["judge"]["first_error"]):
                    continue
                hard = [s > 0 for s in labs["math_shepherd"]["soft"]]
            elif m == "judge":
                fe = labs.get("judge", {}).get("first_error", "invalid")
                if fe == "invalid":
                    continue
                hard = [fe is None or i < fe for i in range(len(r["steps"]))]
            else:
                lab = labs.get(m)
                if not lab or lab["soft"] is None:
                    continue
                fe = first_error_from_labels(lab["soft"])
                hard = [s > 0 for s in lab["soft"]]
                rollouts += lab["rollouts"]
                tokens += lab["tokens"]
            labelled += 1
            if "truth" in labs:
                truth = [s > 0 for s in labs["truth"]["soft"]]
                predicted.append(fe)
                actual.append(first_error_from_labels(labs["truth"]["soft"]))
                fe_hits += fe == actual[-1]
                agree += sum(a == b for a, b in zip(hard, truth))
                steps += len(truth)
        row = {"labelled": labelled, "coverage": labelled / len(policy) if policy else 0.0}
        if any("truth" in r["labels"] for r in policy):
            row["first_error_acc"] = fe_hits / labelled if labelled else 0.0
            row["step_agreement"] = agree / steps if steps else 0.0
            row["processbench_f1"] = processbench_f1(predicted, actual)["f1"]
        if m in ("math_shepherd", "omega_prm"):
            # Cost of labelling the policy's samples (OmegaPRM's tree rollouts that were
            # themselves searched are charged to those rollouts, not to the samples) ...
            row["rollouts_per_solution"] = rollouts / labelled if labelled else 0.0
            row["tokens_per_solution"] = tokens / labelled if labelled else 0.0
            # ... and everything spent over everything labelled, tree rollouts included.
            every = [r for r in records if (r.get("labels", {}).get(m) or {}).get("soft") is not None]
            row["labelled_total"] = len(every)
            row["rollouts_per_labelled"] = total_rollouts / len(every) if every else 0.0
        out[m] = row
    return out
