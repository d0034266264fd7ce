"""The demo's claims, fixed before the run, each a paired difference over the same held-out
problems with its standard error: RL vs SFT greedy accuracy (and right with every line valid),
and `compare_strategy`@`compare_budget` vs majority vote at the same N; and the summary the
report shows, every number taken from a stage's output."""
from __future__ import annotations

import math
import sys

from ponder.config import to_dict
from ponder.pipeline.config import DemoConfig
from ponder.pipeline.stages import EqualCompute, Evaluated, Scaled
from ponder.runs import read_jsonl
from ponder.search.scale import total_tokens


def paired_difference(a: list[bool], b: list[bool]) -> dict:
    """Mean of a_i - b_i over paired problems and its standard error (sample std / sqrt(n)):
    the interval a claim "a beats b" is read against."""
    n = len(a)
    d = [float(x) - float(y) for x, y in zip(a, b)]
    mean = sum(d) / n if n else 0.0
    var = sum((x - mean) ** 2 for x in d) / (n - 1) if n > 1 else 0.0
    se = math.sqrt(var / n) if n else 0.0
    return {"difference": mean, "se": se, "n": n, "beyond_2se": abs(mean) > 2 * se}


def comparisons(cfg: DemoConfig, sft_eval: Evaluated, rl_eval: Evaluated, scaled: Scaled) -> dict:
    """The claims fixed before the run: RL vs SFT held-out greedy accuracy, and
    `compare_strategy`@`compare_budget` vs majority@`compare_budget` for each policy."""
    a = {r["id"]: r["greedy_correct"] for r in read_jsonl(rl_eval.records)}
    b = {r["id"]: r["greedy_correct"] for r in read_jsonl(sft_eval.records)}
    ids = sorted(set(a) & set(b))
    rl_vs_sft = paired_difference([a[i] for i in ids], [b[i] for i in ids])
    out = {"rl_minus_sft_greedy": rl_eval.summary["greedy_accuracy"] - sft_eval.summary["greedy_accuracy"],
           "rl_minus_sft_greedy_se": rl_vs_sft["se"], "rl_vs_sft": rl_vs_sft, "search_vs_majority": {}}
    if "greedy_valid_accuracy" in rl_eval.summary and "greedy_valid_accuracy" in sft_eval.summary:
        # right AND every line valid under the exact step checker: whether RL's gain is reasoning
        a = {r["id"]: r["greedy_valid"] for r in read_jsonl(rl_eval.records)}
        b = {r["id"]: r["greedy_valid"] for r in read_jsonl(sft_eval.records)}
        out["rl_vs_sft_valid"] = paired_difference([a[i] for i in ids], [b[i] for i in ids])
    for name, path in scaled.records.items():
        recs = read_jsonl(path)

        def correct(strategy):
            return {r["problem"]: r["correct"] for r in recs
                    if r["strategy"] == strategy and r["budget"] == cfg.compare_budget}

        s, m = correct(cfg.compare_strategy), correct("majority")
        ids = sorted(set(s) & set(m))
        if not ids:
            continue
        tokens = {r["strategy"]: r.get("generated_tokens") for r in scaled.rows[name] if r["budget"] == cfg.compare_budget}
        out["search_vs_majority"][name] = {
            "strategy": cfg.compare_strategy, "budget": cfg.compare_budget,
            "accuracy": sum(s[i] for i in ids) / len(ids), "majority_accuracy": sum(m[i] for i in ids) / len(ids),
            "tokens": tokens.get(cfg.compare_strategy), "majority_tokens": tokens.get("majority"),
            **paired_difference([s[i] for i in ids], [m[i] for i in ids])}
    return out


def equal_compute_comparison(cfg: DemoConfig, scaled: Scaled, equal: EqualCompute) -> dict:
    """The second claim fixed before the run, per policy: best_of_n guided by the rollout
    verifier at the largest N whose mean total tokens fit majority@`compare_budget`'s (chosen
    by compute alone), minus that majority, paired over the sweep's problems. The majority
    votes with the search-time answer key (the answer's text, numbers compared as numbers),
    as a deployed system must, not with gold-grouped answers."""
    out = {}
    for name, rows in equal.rows.items():
        fits = [r for r in rows if r["total_tokens"] <= equal.majority_tokens[name]]
        chosen = fits[-1] if fits else rows[0]
        guided = {r["problem"]: r for r in read_jsonl(equal.records[name]) if r["budget"] == chosen["budget"]}
        majority = {r["problem"]: r for r in read_jsonl(scaled.records[name])
                    if r["strategy"] == "majority" and r["budget"] == cfg.compare_budget}
        ids = sorted(set(guided) & set(majority))
        out[name] = {"strategy": "best_of_n", "scorer": cfg.equal_compute_scorer, "budget": chosen["budget"],
                     "majority_budget": cfg.compare_budget, "fits": bool(fits),
                     "accuracy": sum(guided[i]["correct"] for i in ids) / len(ids),
                     "majority_accuracy": sum(majority[i]["correct"] for i in ids) / len(ids),
                     "total_tokens": sum(total_tokens(guided[i]) for i in ids) / len(ids),
                     "majority_total_tokens": sum(total_tokens(majority[i]) for i in ids) / len(ids),
                     "vote_key": "search-time answer key",
                     **paired_difference([guided[i]["correct"] for i in ids], [majority[i]["correct"] for i in ids])}
    return out


def build_summary(cfg: DemoConfig, results: dict, wall_s: dict, wall_this_run: float) -> dict:
    """The numbers the report shows, each taken from a stage's output."""
    ann, reward_model = results["annotate"].summary, results["prm"]
    return {
        "task": cfg.task, "task_args": cfg.task_args, "model": cfg.model, "params": results["build"].params,
        "command": " ".join(["ponder"] + sys.argv[1:]) if sys.argv and sys.argv[0].endswith("ponder") else "ponder demo",
        "config": to_dict(cfg),
        "eval": {"sft": results["eval_sft"].summary, "rl": results["eval_rl"].summary},
        "annotation": {"samples": ann["samples"], "sample_accuracy": ann["sample_accuracy"], "methods": ann["methods"]},
        "prm": {"processbench": reward_model.processbench, "best_of_n": reward_model.best_of_n,
                "weighted_best_of_n": reward_model.weighted_best_of_n, "majority": reward_model.majority,
                "oracle": reward_model.oracle, "train_examples": reward_model.train_examples},
        "scale": results["scale"].rows,
        "comparisons": {**comparisons(cfg, results["eval_sft"], results["eval_rl"], results["scale"]),
                        "search_vs_majority_equal_compute": equal_compute_comparison(cfg, results["scale"],
                                                                                     results["equal_compute"])},
        "equal_compute": results["equal_compute"].rows,
        "wall_s": wall_s,
        "wall_s_this_invocation": round(wall_this_run, 2),
    }
