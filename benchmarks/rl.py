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
progress bar. Reported: seconds per step, completions per second, and for ponder the split into
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
    ap.add_argument("--model", default="runs/sft500/model")
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

    # ---- ponder
    p_model, tok = load_model(args.model)
    n_params = sum(p.numel() for p in p_model.parameters())
    cfg = RLConfig(estimator="grpo", steps=total_steps, prompts_per_step=args.prompts, group_size=args.generations,
                   max_tokens=args.max_tokens, temperature=1.0, lr=args.lr, beta=0.0, loss_agg="token-mean",
                   eval_every=0, save_every=0)
    trainer = RLTrainer(p_model, tok, TASK, problems, [], [RewardFunction("correct", correct)], cfg,
                        tempfile.mkdtemp(), progress=False)
    opt = torch.optim.AdamW(p_model.parameters(), lr=args.lr, weight_decay=0.0)
    p_times, p_gen, p_train, p_flops = [], [], [], []
    p_model.train()
    threads: set[int] = set()

    def ponder_step(i: int):
        threads.add(torch.get_num_threads())
        t0 = time.perf_counter()
        gen_before = trainer.timing["generate_s"] + trainer.timing["score_s"]
        [mb] = trainer.batch_at(i)
        t1 = time.perf_counter()
        loss, _ = trainer.loss_fn(p_model, mb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(p_model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        if i > 0:
            p_times.append(t2 - t0)
            p_gen.append(trainer.timing["generate_s"] + trainer.timing["score_s"] - gen_before)
            p_train.append(t2 - t1)
            p_flops.append(6 * n_params * mb["input_ids"].numel() / (t2 - t1))

    trl_times: list[float] = []
    trl_error = None
    if not args.no_trl:
        try:
            trl_times = run_trl(args, problems, ponder_step, total_steps)
        except Exception as e:  # report precisely and still benchmark ponder
            trl_error = f"{type(e).__name__}: {e}"
    if args.no_trl or trl_error:
        for i in range(total_steps):
            ponder_step(i)
    gflops = matmul_gflops()
    print("torch threads seen:", sorted(threads))

    B = args.prompts * args.generations
    print(f"\nGRPO step, {args.prompts} prompts x {args.generations} generations, <= {args.max_tokens} new tokens, "
          f"{n_params / 1e6:.2f}M-param model, CPU fp32, 1 thread, {args.steps} timed steps (median)")
    rows = [("ponder", statistics.median(p_times))]
    if trl_times:
        rows.append(("TRL GRPOTrainer", statistics.median(trl_times)))
    print(f"{'trainer':<18}{'s/step':>10}{'completions/s':>16}")
    for name, s in rows:
        print(f"{name:<18}{s:>10.3f}{B / s:>16.1f}")
    if trl_times:
        print(f"ponder speed-up: {statistics.median(trl_times) / statistics.median(p_times):.2f}x")
    if trl_error:
        print(f"TRL could not run: {trl_error}")
    print(f"ponder split: rollout (generation + reward + advantages) {statistics.median(p_gen):.3f} s, "
          f"training (forward + backward + AdamW) {statistics.median(p_train):.3f} s")
    print(f"ponder training phase: {statistics.median(p_flops) / 1e9:.2f} GFLOP/s (6 x params x tokens) vs "
          f"measured 1024^3 sgemm {gflops:.1f} GFLOP/s = {100 * statistics.median(p_flops) / 1e9 / gflops:.1f}%")


def run_trl(args, problems, ponder_step, total_steps: int) -> list[float]:
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
            ponder_step(state.global_step - 1)

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
