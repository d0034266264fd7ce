"""The demo's claims, fixed before the run, each a paired difference over the same held-out
problems with its standard error: RL vs SFT greedy accuracy (and right with every line valid),
and `compare_strategy`@`compare_budget` vs majority vote at the same N; and the summary the
report shows, every number taken from a stage's output."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from ponder.config import to_dict
from ponder.pipeline.config import DemoConfig
from ponder.pipeline.stages import Evaluated, Scaled


def paired_difference(a: list[bool], b: list[bool]) -> dict:
    """Mean of a_i - b_i over paired problems and its standard error (sample std / sqrt(n)):
    the interval a claim "a beats b" is read against."""
    n = len(a)
    d = [float(x) - float(y) for x, y in zip(a, b)]
    mean = sum(d) / n if n else 0.0
    var = sum((x - mean) ** 2 for x in d) / (n - 1) if n > 1 else 0.0
    se = math.sqrt(var / n) if n else 0.0
    return {"difference": mean, "se": se, "n": n, "beyond_2se": abs(mean) > 2 * se}


def _read_jsonl(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def comparisons(cfg: DemoConfig, sft_eval: Evaluated, rl_eval: Evaluated, scaled: Scaled) -> dict:
    """The claims fixed before the run: RL vs SFT held-out greedy accuracy, and
    `compare_strategy`@`compare_budget` vs majority@`compare_budget` for each policy."""
    a = {r["id"]: r["greedy_correct"] for r in _read_jsonl(rl_eval.records)}
    b = {r["id"]: r["greedy_correct"] for r in _read_jsonl(sft_eval.records)}
    ids = sorted(set(a) & set(b))
    rl_vs_sft = paired_difference([a[i] for i in ids], [b[i] for i in ids])
    out = {"rl_minus_sft_greedy": rl_eval.summary["greedy_accuracy"] - sft_eval.summary["greedy_accuracy"],
           "rl_minus_sft_greedy_se": rl_vs_sft["se"], "rl_vs_sft": rl_vs_sft, "search_vs_majority": {}}
    if "greedy_valid_accuracy" in rl_eval.summary and "greedy_valid_accuracy" in sft_eval.summary:
        # right AND every line valid under the exact step checker: whether RL's gain is reasoning
        a = {r["id"]: r["greedy_valid"] for r in _read_jsonl(rl_eval.records)}
        b = {r["id"]: r["greedy_valid"] for r in _read_jsonl(sft_eval.records)}
        out["rl_vs_sft_valid"] = paired_difference([a[i] for i in ids], [b[i] for i in ids])
    for name, path in scaled.records.items():
        recs = _read_jsonl(path)

        def correct(strategy):
            return {r["problem"]: r["correct"] for r in recs
                    if r["strategy"] == strategy and r["budget"] == cfg.compare_budget}

        s, m = correct(cfg.compare_strategy), correct("majority")
        ids = sorted(set(s) & set(m))
        if not ids:
            continue
        tokens = {r["strategy"]: r["generated_tokens"] for r in scaled.rows[name] if r["budget"] == cfg.compare_budget}
        out["search_vs_majority"][name] = {
            "strategy": cfg.compare_strategy, "budget": cfg.compare_budget,
            "accuracy": sum(s[i] for i in ids) / len(ids), "majority_accuracy": sum(m[i] for i in ids) / len(ids),
            "tokens": tokens.get(cfg.compare_strategy), "majority_tokens": tokens.get("majority"),
            **paired_difference([s[i] for i in ids], [m[i] for i in ids])}
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
        "comparisons": comparisons(cfg, results["eval_sft"], results["eval_rl"], results["scale"]),
        "wall_s": wall_s,
        "wall_s_this_invocation": round(wall_this_run, 2),
    }
