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

With `report_to`, the trackers see the whole run as one: round r's SFT steps follow round r-1's
(step (r-1) * sft_steps + s), and each round's held-out accuracy and kept samples are logged at
the step that ends its SFT (`iterate/accuracy`, `iterate/kept_fraction`; round 0 at step 0).

    trainer = ExpertIterationTrainer(model, tokenizer, task, generator, ExpertIterationConfig(rounds=3), "runs/it")
    trainer.train()   # [{"round": 0, "accuracy": ...}, {"round": 1, "kept": ..., "accuracy": ...}, ...]
"""
from __future__ import annotations

import json
from pathlib import Path

from ponder.eval.evaluate import greedy_accuracy
from ponder.generation.base import SamplingParams
from ponder.config import to_dict
from ponder.models import load_model, model_from_spec
from ponder.runs import write_jsonl
from ponder.seeds import derive
from ponder.train.config import ExpertIterationConfig
from ponder.train.sft import SFTTrainer
from ponder.train.tracking import Tracking


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


class ExpertIterationTrainer:
    """Expert iteration over `task` with `generator` sampling the policy (an engine that
    takes the trained weights: train/policy_engine.py). `start`: the starting model's name,
    reloaded each round with `from_base`. Per round: run_dir/round_<r>/{data.jsonl, model};
    run_dir/rounds.jsonl lists each finished round, so a rerun skips them."""

    def __init__(self, model, tokenizer, task, generator, cfg: ExpertIterationConfig, run_dir: str | Path,
                 start: str | None = None, progress: bool = True):
        self.model, self.tokenizer, self.task, self.gen, self.cfg = model, tokenizer, task, generator, cfg
        self.run_dir, self.start, self.progress = Path(run_dir), start, progress
        self.train_problems = task.problems("train", n=cfg.n_problems * cfg.rounds, seed=cfg.seed)
        self.held_out = task.problems("test", n=cfg.n_eval, seed=cfg.seed)

    def train(self) -> list[dict]:
        """Run (or resume) every round; one record per round (round 0: the starting model)."""
        tracking = Tracking(self.cfg.report_to, self.run_dir, self.run_dir.name, to_dict(self.cfg), shared=True)
        try:
            return self._rounds(tracking)
        finally:
            tracking.close()

    def _rounds(self, tracking: Tracking) -> list[dict]:
        cfg, task, gen, model, tokenizer = self.cfg, self.task, self.gen, self.model, self.tokenizer
        log = self.run_dir / "rounds.jsonl"
        done = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.exists() else []
        if not done:
            done = [{"round": 0, "accuracy": greedy_accuracy(gen, task, self.held_out, cfg.max_tokens, model)}]
            write_jsonl(log, done)
            tracking.log_rows([{"step": 0, "iterate/accuracy": done[0]["accuracy"]}])
        for r in range(1, cfg.rounds + 1):
            round_dir = self.run_dir / f"round_{r}"
            if any(rec["round"] == r for rec in done):
                model, tokenizer = load_model(str(round_dir / "model"))
                continue
            if cfg.from_base and r > 1:
                if self.start is None:
                    raise ValueError("from_base needs the starting model's name (start=...)")
                model, tokenizer = model_from_spec(self.start, seed=cfg.seed)
            gen.update_weights(model.named_parameters())  # this round's starting policy
            problems = self.train_problems[(r - 1) * cfg.n_problems: r * cfg.n_problems]
            data = round_dir / "data.jsonl"
            round_dir.mkdir(parents=True, exist_ok=True)
            if data.exists():
                rows = [json.loads(line) for line in data.read_text().splitlines()]
                sampled = len(problems) * cfg.samples
            else:
                sp = SamplingParams(n=cfg.samples, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                                    seed=derive(cfg.seed, "iterate-samples", r))
                rows, sampled = verified_rows(task, problems, gen.generate([task.prompt(p) for p in problems], sp))
                write_jsonl(data, rows)
            if not rows:
                raise ValueError(f"round {r}: no sample was verified correct; nothing to fine-tune on "
                                 "(raise samples or temperature, or start from a stronger model)")
            tracking.step_offset = (r - 1) * cfg.sft_steps  # the trackers see one run, round after round
            SFTTrainer(model, tokenizer, rows, cfg.sft_config(r), round_dir, progress=self.progress,
                       tracking=tracking).train()
            model.eval()
            acc = greedy_accuracy(gen, task, self.held_out, cfg.max_tokens, model)
            done.append({"round": r, "kept": len(rows), "sampled": sampled,
                         "kept_fraction": len(rows) / max(sampled, 1), "accuracy": acc})
            write_jsonl(log, done)
            tracking.log_rows([{"step": cfg.sft_steps, "iterate/accuracy": acc, "iterate/kept": len(rows),
                                "iterate/kept_fraction": done[-1]["kept_fraction"]}])
        self.model, self.tokenizer = model, tokenizer
        return done
