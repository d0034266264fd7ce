"""Does RL teach what SFT did not? SFT on easy problems, then RL without references on hard ones.

    .venv/bin/python benchmarks/learning_rl.py --tag base --seeds 0,1,2
    .venv/bin/python benchmarks/learning_rl.py --tag lr3e-4 --rl-lr 3e-4 --seeds 0,1,2
    .venv/bin/python benchmarks/learning_rl.py --summary          # every recorded variant

Per seed: a tiny model trained from scratch by SFT on reference solutions of easy problems
(`--task`, arith or countdown, with knobs `--sft-task`, default 2-3 operations), then GRPO (or
`--estimator`) on hard training problems (`--rl-task`, default 4-5 operations) with the outcome
verifier as the only reward - no reference solutions; `--estimator process_grpo` rewards each
step instead, by the task's exact step checker or, with `--prm DIR`, by a learned PRM. Both models
are scored greedily on the same held-out hard problems (a test-split draw never trained on; the
RL run watches a disjoint dev slice). The claim fixed
before the runs: RL greedy accuracy minus SFT greedy accuracy on those problems, mean ±
standard error over seeds (and the paired per-problem standard error within each seed).

Every run is appended to benchmarks/results/learning_rl.jsonl (settings and results), so the
settings that failed stay on record beside those that worked. The SFT model of a seed is
cached under runs/bench-learning/ and shared by every RL variant with the same SFT settings;
an RL run directory is keyed by tag and seed (a rerun with other options is refused).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "learning_rl.jsonl"


def task_knobs(text: str) -> dict:
    """`num_ops=2-3,parens=false` -> {"num_ops": (2, 3), "parens": False} (the task's knobs)."""
    out = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if value.lower() in ("true", "false"):
            out[key] = value.lower() == "true"
        elif "-" in value:
            lo, hi = value.split("-")
            out[key] = (int(lo), int(hi))
        else:
            out[key] = int(value)
    return out


def greedy_records(model_dir: str, task, problems, max_tokens: int) -> tuple[list[bool], list[bool]]:
    """Per problem, greedily: whether the answer is right, and whether it is right with every line
    passing the task's exact step checker (a right answer over wrong lines is not)."""
    from ponder.eval.evaluate import EvalConfig, evaluate_chunk
    from ponder.generation import make_engine

    with make_engine("torch", model_dir) as engine:
        records = evaluate_chunk(engine, task, problems, EvalConfig(k=0, max_tokens=max_tokens))["records"]
    return [bool(r["greedy_correct"]) for r in records], [bool(r["greedy_valid"]) for r in records]


def paired(a: list[bool], b: list[bool]) -> tuple[float, float]:
    d = [float(x) - float(y) for x, y in zip(a, b)]
    mean = sum(d) / len(d)
    var = sum((x - mean) ** 2 for x in d) / (len(d) - 1)
    return mean, math.sqrt(var / len(d))


def sft_model(args, seed: int, easy, dev) -> tuple[str, float]:
    """The seed's SFT model on easy problems (trained once, then reused)."""
    from ponder.eval.evaluate import greedy_accuracy
    from ponder.generation import make_engine
    from ponder.models import model_from_spec
    from ponder.train.sft import SFTConfig, SFTTrainer, reference_rows

    key = dict(model=args.model, ops=args.sft_task, n_train=args.sft_n, steps=args.sft_steps, lr=args.sft_lr,
               batch=args.sft_batch, seed=seed)
    if args.task != "arith":  # arith keys predate --task: their cached models keep their names
        key["task"] = args.task
    run_dir = Path(args.runs_dir) / ("sft-" + hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
                                     + f"-s{seed}")
    done = run_dir / "done.json"
    if done.exists():
        return str(run_dir / "model"), json.loads(done.read_text())["wall_s"]
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    model, tokenizer = model_from_spec(args.model, seed=seed)
    rows = reference_rows(easy, args.sft_n, seed)
    dev_engine = make_engine("torch", model, tokenizer=tokenizer)
    sc = SFTConfig(lr=args.sft_lr, steps=args.sft_steps, warmup_steps=30, seed=seed, batch_size=args.sft_batch,
                   eval_every=max(args.sft_steps // 4, 1), save_every=max(args.sft_steps // 4, 1))
    SFTTrainer(model, tokenizer, rows, sc, run_dir,
               eval_fn=lambda m: {"greedy_accuracy": greedy_accuracy(dev_engine, easy, dev, args.max_tokens)}).train()
    wall = time.perf_counter() - t0
    done.write_text(json.dumps({"key": key, "wall_s": wall}))
    return str(run_dir / "model"), wall


def rl_model(args, seed: int, sft_dir: str, hard, dev) -> tuple[str, float, dict]:
    from ponder.models import load_model
    from ponder.rewards.functions import reward_functions
    from ponder.train.rl import RLConfig, RLTrainer

    run_dir = Path(args.runs_dir) / f"rl-{args.tag}-s{seed}"
    t0 = time.perf_counter()
    model, tokenizer = load_model(sft_dir)
    rc = RLConfig(estimator=args.estimator, steps=args.rl_steps, prompts_per_step=args.rl_prompts,
                  group_size=args.rl_group, max_tokens=args.max_tokens, lr=args.rl_lr, beta=args.beta,
                  epsilon_high=args.epsilon_high, dynamic_sampling=args.dynamic_sampling,
                  loss_agg=args.loss_agg, temperature=args.rl_temperature,
                  eval_every=max(args.rl_steps // 5, 1), save_every=max(args.rl_steps // 5, 1), seed=seed)
    rewards = reward_functions(["outcome"], hard, args.max_tokens)
    train = hard.problems("train", n=args.rl_steps * args.rl_prompts * 2, seed=seed + 1)
    scorer = None
    if args.estimator == "process_grpo" and args.prm:  # step rewards from a learned PRM
        from ponder.rewards.model import load_prm

        scorer = load_prm(args.prm)
    elif args.estimator == "process_grpo":  # step rewards from the task's exact step checker
        from ponder.rewards.base import VerifierScorer

        scorer = VerifierScorer(hard, train)
    trainer = RLTrainer(model, tokenizer, hard, train, dev, rewards, rc, run_dir, process_scorer=scorer,
                        progress=args.progress)
    final = trainer.train()
    return str(run_dir / "model"), time.perf_counter() - t0, final


def mean_of(rows: list[dict], key: str) -> str:
    if key == "rl_dev_greedy":  # rows written before the field existed keep it in rl_final
        rows = [{key: r.get(key, r.get("rl_final", {}).get("eval/accuracy"))} for r in rows]
    values = [r[key] for r in rows if r.get(key) is not None]
    return f"{statistics.mean(values):.3f}" if values else "-"


def easy_change(rows: list[dict]) -> str:
    before, after = mean_of(rows, "sft_easy_greedy"), mean_of(rows, "rl_easy_greedy")
    return "-" if before == "-" else f"{before}->{after}"


def summary() -> None:
    """Every recorded variant: seeds, SFT and RL held-out greedy, RL - SFT as mean ± SE over seeds."""
    by_tag: dict[str, list[dict]] = {}
    for line in RESULTS.read_text().splitlines():
        row = json.loads(line)
        by_tag.setdefault(row["tag"], []).append(row)
    print(f"{'variant':28} {'seeds':>5} {'SFT':>6} {'RL':>6} {'RL - SFT':>16} {'RL dev':>6} {'easy SFT->RL':>13}  note")
    for tag, rows in by_tag.items():
        done = [r for r in rows if r.get("rl_hard_greedy") is not None]
        note = "; ".join(r["stopped"] for r in rows if r.get("stopped"))[:60]
        if not done:
            sft = rows[0]["sft_hard_greedy"]
            print(f"{tag:28} {len(rows):5} {'-' if sft is None else format(sft, '.3f'):>6} {'-':>6} {'-':>16}  {note}")
            continue
        d = [r["rl_minus_sft"] for r in done]
        se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else done[0]["paired_se"]
        print(f"{tag:28} {len(done):5} {statistics.mean(r['sft_hard_greedy'] for r in done):6.3f} "
              f"{statistics.mean(r['rl_hard_greedy'] for r in done):6.3f} {statistics.mean(d):+7.3f} ± {se:.3f} "
              f"{mean_of(done, 'rl_dev_greedy'):>6} {easy_change(done):>13}  "
              f"{'(1 seed: paired SE)' if len(done) == 1 else ''}{note}"
              + (f" valid lines SFT->RL {mean_of(done, 'sft_hard_valid')}->{mean_of(done, 'rl_hard_valid')}"
                 if mean_of(done, "sft_hard_valid") != "-" else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--summary", action="store_true", help="print the recorded results and exit")
    ap.add_argument("--tag", help="name of this RL variant (its run dirs and results rows)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--model", default="tiny:1m")
    ap.add_argument("--task", default="arith", choices=["arith", "countdown"])
    ap.add_argument("--sft-task", default="num_ops=2-3", help="task knobs of the SFT problems")
    ap.add_argument("--rl-task", default="num_ops=4-5", help="task knobs of the RL and held-out problems")
    ap.add_argument("--sft-model", help="start RL from this model dir instead of training the SFT model here")
    ap.add_argument("--sft-n", type=int, default=20000)
    ap.add_argument("--sft-steps", type=int, default=1000)
    ap.add_argument("--sft-lr", type=float, default=3e-3)
    ap.add_argument("--sft-batch", type=int, default=32)
    ap.add_argument("--estimator", default="grpo")
    ap.add_argument("--prm", help="with --estimator process_grpo: a PRM dir scores the steps (default: the task's "
                                  "exact step checker)")
    ap.add_argument("--rl-steps", type=int, default=100)
    ap.add_argument("--rl-prompts", type=int, default=16)
    ap.add_argument("--rl-group", type=int, default=8)
    ap.add_argument("--rl-lr", type=float, default=1e-4)
    ap.add_argument("--rl-temperature", type=float, default=1.0)
    ap.add_argument("--beta", type=float, default=0.0)
    ap.add_argument("--epsilon-high", type=float, default=0.2)
    ap.add_argument("--dynamic-sampling", action="store_true")
    ap.add_argument("--loss-agg", default="token-mean")
    ap.add_argument("--max-tokens", type=int, default=80)
    ap.add_argument("--eval-n", type=int, default=300)
    ap.add_argument("--dev-n", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs-dir", default="runs/bench-learning")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--sft-only", action="store_true", help="train (or find) each seed's SFT model, print its "
                                                             "dir and held-out greedy accuracy, record nothing")
    args = ap.parse_args()
    if args.summary:
        return summary()
    if not (args.tag or args.sft_only):
        ap.error("--tag is required (the name of this RL variant)")
    torch.set_num_threads(args.threads)
    from ponder.tasks import get_task

    easy = get_task(args.task, instruction=False, **task_knobs(args.sft_task))
    hard = get_task(args.task, instruction=False, **task_knobs(args.rl_task))
    draw = hard.problems("test", n=args.eval_n + args.dev_n, seed=0)  # the same held-out set for every seed
    held_out, dev = draw[:args.eval_n], draw[args.eval_n:]
    easy_draw = easy.problems("test", n=args.eval_n + args.dev_n, seed=0)
    easy_held_out, easy_dev = easy_draw[:args.eval_n], easy_draw[args.eval_n:]
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        sft_dir, sft_wall = (args.sft_model, 0.0) if args.sft_model else sft_model(args, seed, easy, easy_dev)
        same = args.sft_task == args.rl_task  # then the easy held-out problems are the hard ones
        before, before_valid = greedy_records(sft_dir, hard, held_out, args.max_tokens)
        if args.sft_only:
            print(f"seed {seed}: {sft_dir}  held-out greedy {sum(before) / len(before):.3f}, right with valid lines "
                  f"{sum(before_valid) / len(before_valid):.3f}; sft {sft_wall:.0f} s", flush=True)
            continue
        easy_before = before if same else greedy_records(sft_dir, easy, easy_held_out, args.max_tokens)[0]
        rl_dir, rl_wall, final = rl_model(args, seed, sft_dir, hard, dev)
        after, after_valid = greedy_records(rl_dir, hard, held_out, args.max_tokens)
        easy_after = after if same else greedy_records(rl_dir, easy, easy_held_out, args.max_tokens)[0]
        diff, se = paired(after, before)
        row = {"tag": args.tag, "seed": seed, "settings": {k: v for k, v in vars(args).items()
                                                           if k not in ("tag", "seeds", "threads", "progress")},
               "sft_hard_greedy": sum(before) / len(before), "rl_hard_greedy": sum(after) / len(after),
               "rl_minus_sft": diff, "paired_se": se, "sft_easy_greedy": sum(easy_before) / len(easy_before),
               "rl_easy_greedy": sum(easy_after) / len(easy_after),
               "sft_hard_valid": sum(before_valid) / len(before_valid),
               "rl_hard_valid": sum(after_valid) / len(after_valid), "rl_dev_greedy": final.get("eval/accuracy"),
               "sft_wall_s": round(sft_wall, 1), "rl_wall_s": round(rl_wall, 1),
               "rl_final": {k: v for k, v in final.items() if isinstance(v, (int, float))},
               "date": time.strftime("%Y-%m-%d %H:%M")}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
        print(f"seed {seed}: SFT {row['sft_hard_greedy']:.3f} -> RL {row['rl_hard_greedy']:.3f} "
              f"({diff:+.3f} ± {se:.3f} paired SE)  sft {sft_wall:.0f} s, rl {rl_wall:.0f} s", flush=True)
    if len(rows) > 1:
        d = [r["rl_minus_sft"] for r in rows]
        print(f"{args.tag}: RL - SFT on held-out {args.rl_task} problems: {statistics.mean(d):+.3f} ± "
              f"{statistics.stdev(d) / math.sqrt(len(d)):.3f} (mean ± SE over {len(d)} seeds)")


if __name__ == "__main__":
    main()
