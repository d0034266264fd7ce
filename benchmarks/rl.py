"""GRPO step throughput: ponder's RL trainer against TRL's GRPOTrainer, in one process.

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rl.py --model runs/sft/model --steps 6

Same tiny model (two copies of the same weights), same 8 arith prompts per step x 8
generations, at most 32 new tokens, temperature 1, CPU, fp32, no checkpointing, beta 0 (no
reference model), one optimiser step per generation round, AdamW at the same learning rate,
token-mean loss (TRL's loss_type="dapo"), the same reward function (TRL's signature: 1.0 when
the task's verifier accepts the answer). The two run interleaved - each TRL step is followed by
one ponder step from a TRL callback - so both see the same machine load; the first step of each
is a warm-up and not timed.

The ponder side runs the trainer's own `batch_at` (rollout: generation, rewards, advantages)
and `loss_fn` with a plain AdamW step, i.e. the `TrainLoop` step without its metrics and
progress bar. Its training forward runs each distinct prompt once per group (exact; see
`rl_batch.shared_prompt_logits`), and the FLOP rate counts the positions really computed.
It is timed twice: as shipped, where rows whose advantages are all zero (GRPO
groups all right or all wrong) are left out of the forward/backward - exact, their gradient is
zero - and with that switched off, which is what TRL computes. Reported: seconds per step, completions per second, and for ponder the split into
generation and training plus the training phase's FLOP rate (6 x parameters x tokens forwarded
and back-propagated) against a measured single-thread sgemm rate.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from ponder.models import load_model
from ponder.rewards.functions import RewardFunction
from ponder.tasks import get_task
from ponder.train.rl import RLConfig, RLTrainer

TASK = get_task("arith", instruction=False)


def correct(prompts, completions, answer, **_):
    """TRL-signature outcome reward, shared by both trainers."""
    from ponder.tasks.answers import answers_equal

    return [float(answers_equal(TASK.extract_answer(c), a)) for c, a in zip(completions, answer)]


def matmul_gflops(n: int = 1024, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="a trained tiny arith model, e.g. from "
                    "`ponder sft --run sft500 --model tiny:1m --steps 500 --task-arg instruction=false`")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per trainer (plus one warm-up)")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--no-trl", action="store_true", help="benchmark ponder alone")
    args = ap.parse_args()
    torch.set_num_threads(1)
    total_steps = args.steps + 1
    problems = TASK.problems("train", n=args.prompts * total_steps, seed=0)

    # ---- ponder: as shipped, and with the zero-advantage row skipping switched off
    variants = [PonderRun("ponder", args, problems, total_steps, skip_zero_rows=True),
                PonderRun("ponder (no zero-row skip)", args, problems, total_steps, skip_zero_rows=False)]

    def ponder_steps(i: int):
        for v in variants:
            v.step(i)

    trl_times: list[float] = []
    trl_error = None
    if not args.no_trl:
        try:
            trl_times = run_trl(args, problems, ponder_steps, total_steps)
        except Exception as e:  # report precisely and still benchmark ponder
            trl_error = f"{type(e).__name__}: {e}"
    if args.no_trl or trl_error:
        for i in range(total_steps):
            ponder_steps(i)
    gflops = matmul_gflops()

    B = args.prompts * args.generations
    med = statistics.median
    print(f"\nGRPO step, {args.prompts} prompts x {args.generations} generations, <= {args.max_tokens} new tokens, "
          f"{variants[0].n_params / 1e6:.2f}M-param model, CPU fp32, 1 thread, {args.steps} timed steps (median)")
    rows = [(v.name, med(v.times)) for v in variants]
    if trl_times:
        rows.append(("TRL GRPOTrainer", med(trl_times)))
    print(f"{'trainer':<28}{'s/step':>10}{'completions/s':>16}{'vs TRL':>10}")
    for name, sec in rows:
        ratio = f"{med(trl_times) / sec:.2f}x" if trl_times else "-"
        print(f"{name:<28}{sec:>10.3f}{B / sec:>16.1f}{ratio:>10}")
    if trl_error:
        print(f"TRL could not run: {trl_error}")
    for v in variants:
        print(f"{v.name}: rollout (generation + rewards) {med(v.gen):.3f} s, training (forward + backward + AdamW) "
              f"{med(v.train):.3f} s, training phase {med(v.flops) / 1e9:.2f} GFLOP/s = "
              f"{100 * med(v.flops) / 1e9 / gflops:.1f}% of a measured 1024^3 sgemm ({gflops:.1f} GFLOP/s)")


def forwarded_tokens(mb: dict) -> int:
    """Token positions the training forward computes: each distinct prompt once (see
    `rl_batch.shared_prompt_logits`) plus every row's response but its last token."""
    P, (B, T) = mb["prompt_len"], mb["response"].shape
    distinct = torch.unique(mb["input_ids"][:, :P], dim=0).shape[0]
    if distinct == B:
        return B * (P + T)
    return distinct * P + B * (T - 1)


class PonderRun:
    """One ponder GRPO trainer stepped by hand: `batch_at` (rollout) + `loss_fn` + AdamW."""

    def __init__(self, name, args, problems, total_steps, skip_zero_rows: bool):
        self.name = name
        self.model, tok = load_model(args.model)
        self.n_params = sum(p.numel() for p in self.model.parameters())
        cfg = RLConfig(estimator="grpo", steps=total_steps, prompts_per_step=args.prompts,
                       group_size=args.generations, max_tokens=args.max_tokens, temperature=1.0, lr=args.lr,
                       beta=0.0, loss_agg="token-mean", eval_every=0, save_every=0)
        self.trainer = RLTrainer(self.model, tok, TASK, problems, [], [RewardFunction("correct", correct)], cfg,
                                 tempfile.mkdtemp(), progress=False)
        if not skip_zero_rows:
            self.trainer._can_skip_zero_rows = lambda: False
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=args.lr, weight_decay=0.0)
        self.model.train()
        self.times, self.gen, self.train, self.flops = [], [], [], []

    def step(self, i: int) -> None:
        t = self.trainer
        t0 = time.perf_counter()
        gen_before = t.timing["generate_s"] + t.timing["score_s"]
        [mb] = t.batch_at(i)
        t1 = time.perf_counter()
        loss, _ = t.loss_fn(self.model, mb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        if i > 0:  # the first step is a warm-up
            self.times.append(t2 - t0)
            self.gen.append(t.timing["generate_s"] + t.timing["score_s"] - gen_before)
            self.train.append(t2 - t1)
            self.flops.append(6 * self.n_params * forwarded_tokens(mb) / (t2 - t1))


def run_trl(args, problems, ponder_steps, total_steps: int) -> list[float]:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    model, tok = load_model(args.model)
    data = Dataset.from_list([{"prompt": TASK.prompt(p), "answer": p.answer} for p in problems])
    times: list[float] = []

    class Interleave(TrainerCallback):
        """Times each TRL step and runs one ponder step after it."""

        def on_step_begin(self, a, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, a, state, control, **kw):
            if state.global_step > 1:
                times.append(time.perf_counter() - self.t0)
            ponder_steps(state.global_step - 1)

    cfg = GRPOConfig(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.prompts * args.generations,
        num_generations=args.generations, max_completion_length=args.max_tokens, temperature=1.0, beta=0.0,
        learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
        max_steps=total_steps, loss_type="dapo", save_strategy="no", report_to=[], logging_steps=1, use_cpu=True,
        bf16=False, fp16=False, gradient_checkpointing=False, dataloader_num_workers=0, shuffle_dataset=False,
        num_iterations=1, seed=0, disable_tqdm=True,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=[correct], args=cfg, train_dataset=data, processing_class=tok,
                          callbacks=[Interleave()])
    trainer.train()
    return times


if __name__ == "__main__":
    main()
