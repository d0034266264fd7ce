"""Expert iteration (STaR, Zelikman et al. 2022; ReST-EM, Singh et al. 2023).

Each round: sample `samples` solutions per training problem from the current model, keep the
ones the task's verifier accepts (the E-step: a filtered, reward-weighted dataset with binary
rewards), fine-tune on them with the SFT loss (the M-step), and report greedy accuracy on
held-out problems. Rounds draw fresh problems (round r uses slice r of the training draw).

ReST-EM fine-tunes the *base* model each round to limit overfitting; with `from_base: false`
(the default here) each round continues from the previous round's model, which learns more per
step on tiny budgets. A round's model is saved under round_<r>/model; a rerun skips finished
rounds, so a killed run resumes at the round it was in (and that round's SFT resumes from its
checkpoint).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class IterateArgs:
    run: str = "iterate"
    """run name: outputs go to runs/<run>/"""
    runs_dir: str = "runs"
    """parent folder of run directories"""
    model: str = "runs/sft/model"
    """model to start from"""
    task: str = "arith"
    """task with a verifier"""
    task_args: dict = field(default_factory=dict)
    """task knobs, e.g. {instruction: false}"""
    rounds: int = 3
    """sample -> filter -> SFT rounds"""
    n_problems: int = 500
    """training problems per round"""
    samples: int = 4
    """solutions sampled per problem"""
    temperature: float = 1.0
    """sampling temperature"""
    max_tokens: int = 128
    """generated tokens per solution, at most"""
    sft_steps: int = 100
    """SFT optimiser steps per round"""
    batch_size: int = 32
    """SFT batch size"""
    lr: float = 1e-3
    """SFT peak learning rate"""
    from_base: bool = False
    """fine-tune the starting model each round (ReST-EM) instead of the previous round's"""
    n_eval: int = 200
    """held-out problems for greedy accuracy per round"""
    engine: str = "torch"
    """engine that samples the policy: torch, vllm, or a server URL that takes weights"""
    seed: int = 0
    """seed"""


def verified_rows(task, problems, outs) -> tuple[list[dict], int]:
    """Prompt-completion rows of the correct samples (each distinct solution once), and how
    many samples there were."""
    rows, seen, total = [], set(), 0
    for p, group in zip(problems, outs):
        for s in group:
            total += 1
            if task.is_correct(p, s.text) and (p.id, s.text) not in seen:
                seen.add((p.id, s.text))
                rows.append({"prompt": task.prompt(p), "completion": s.text})
    return rows, total


def run_iterate(args: IterateArgs, progress: bool = True) -> dict:
    from ponder.config import to_dict, write_yaml
    from ponder.generation.base import SamplingParams
    from ponder.models import load_model, model_from_spec
    from ponder.tasks import get_task
    from ponder.train.dpo import greedy_accuracy
    from ponder.train.loop import TrainConfig
    from ponder.train.policy_engine import policy_engine
    from ponder.train.sft import train_sft

    run_dir = Path(args.runs_dir) / args.run
    run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(run_dir / "config.yaml", to_dict(args))
    task = get_task(args.task, **args.task_args)
    train = task.problems("train", n=args.n_problems * args.rounds, seed=args.seed)
    held_out = task.problems("test", n=args.n_eval, seed=args.seed)
    log = run_dir / "rounds.jsonl"
    done = [json.loads(l) for l in log.read_text().splitlines()] if log.exists() else []
    model, tokenizer = model_from_spec(args.model, seed=args.seed)
    gen = policy_engine(args.engine, model, tokenizer, run_dir, seed=args.seed)
    if not done:
        acc = greedy_accuracy(gen, task, held_out, args.max_tokens, model)
        done = [{"round": 0, "accuracy": acc}]
        log.write_text(json.dumps(done[0]) + "\n")
    for r in range(1, args.rounds + 1):
        round_dir = run_dir / f"round_{r}"
        if any(rec["round"] == r for rec in done):
            model, tokenizer = load_model(str(round_dir / "model"))
            continue
        if args.from_base and r > 1:
            model, tokenizer = model_from_spec(args.model, seed=args.seed)
        gen.update_weights(model.named_parameters())  # this round's starting policy
        problems = train[(r - 1) * args.n_problems: r * args.n_problems]
        data = round_dir / "data.jsonl"
        round_dir.mkdir(exist_ok=True)
        if data.exists():
            rows = [json.loads(l) for l in data.read_text().splitlines()]
            sampled = len(problems) * args.samples
        else:
            sp = SamplingParams(n=args.samples, temperature=args.temperature, max_tokens=args.max_tokens,
                                seed=args.seed * 1000 + r)
            rows, sampled = verified_rows(task, problems, gen.generate([task.prompt(p) for p in problems], sp))
            tmp = data.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(x) + "\n" for x in rows))
            tmp.replace(data)
        if not rows:
            raise ValueError(f"round {r}: no sample was verified correct; nothing to fine-tune on "
                             "(raise samples or temperature, or start from a stronger model)")
        cfg = TrainConfig(lr=args.lr, max_steps=args.sft_steps, warmup_steps=min(10, args.sft_steps), eval_every=0,
                          save_every=max(args.sft_steps // 2, 1), seed=args.seed + r)
        train_sft(model, tokenizer, rows, round_dir, cfg, batch_size=args.batch_size, progress=progress)
        model.eval()
        acc = greedy_accuracy(gen, task, held_out, args.max_tokens, model)
        rec = {"round": r, "kept": len(rows), "sampled": sampled, "kept_fraction": len(rows) / max(sampled, 1),
               "accuracy": acc}
        done.append(rec)
        with open(log, "a") as f:
            f.write(json.dumps(rec) + "\n")
    summary = {"run_dir": str(run_dir), "model_dir": str(run_dir / f"round_{args.rounds}" / "model"), "rounds": done}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
