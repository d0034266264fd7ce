"""The shared training loop: AdamW, warm-up + cosine, gradient accumulation, clipping,
periodic eval, atomic checkpoints with exact resume, and `metrics.jsonl`.

Trainers (SFT here; reward models and RL later) supply two things: `batch_at(step)`, which
returns the list of micro-batches for an optimiser step (a pure function of the step, so a
resumed run sees exactly the data an uninterrupted run would), and `loss_fn(model, micro)`,
which returns (loss, stats). Everything else — optimiser, schedule, accumulation, logging,
checkpoints — lives here, once. Built on `accelerate`.

Gradient accumulation has two modes, chosen by the loss. By default a step's loss is the mean
of its micro-batches' losses (right for a loss that is a mean over examples, as DPO's and the
reward model's are). A token-mean loss opts in to the token mean over the whole step by
returning `stats[LOSS_TOKENS]`, the number of tokens its (mean) loss is over: the step's loss is
then sum_i loss_i * n_i / sum_i n_i over every micro-batch i of the step, in every process, as
if the step were one batch. The mean of per-micro-batch means would give each token of a short
micro-batch more weight than one of a long micro-batch - the gradient accumulation bug that
transformers fixed in v4.46 (its `num_items_in_batch`). The step's token count is known only
after the last forward, so each backward is weighted by n_i / ref (ref: the step's number of
micro-batches, the same in every process, so N processes scale alike and their gradients add
up to one process's to float rounding) and the accumulated gradients are multiplied by
ref / sum_i n_i afterwards (gradients are linear in the loss). Logged stats of such a loss are token-weighted means over the step too.

Devices: the model goes to `cfg.device` before anything else (models/device.py), every
micro-batch follows it there before `loss_fn` sees it, and with `mixed_precision` the forward
runs under accelerate's autocast while weights and optimiser state stay fp32.

Data parallel (`torchrun --nproc_per_node N`, see distributed.py): every process calls
`batch_at(step)` and takes its own contiguous share of the step's micro-batches; each loss is
divided by the number of micro-batches of the whole step and the gradients are summed over
processes (with a token-mean loss, the step's token count is summed over processes first), so
N processes compute the update one process computes from the same micro-batches (up to float
rounding in the sum). Give the step at least N micro-batches (`grad_accum`), or
some processes have nothing to do. A trainer whose `batch_at` already returns this process's
part of each micro-batch (RL samples its own rows) passes `sharded=True`: its losses and stats
are then this process's shares, summed over processes. Rank 0 alone writes metrics, checkpoints
(every process writes its own RNG state into them) and the model, and evaluates.

Trackers (`cfg.report_to`: TensorBoard, W&B, MLflow; tracking.py): every row written to
metrics.jsonl is also logged to accelerate's trackers at its step, the run's config as their
hyperparameters; a resumed run logs to the same tracker runs.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ponder.config import to_dict
from ponder.generation.base import mark_weights_changed
from ponder.models.device import place, step_done, to_device
from ponder.runs import atomic_write
from ponder.seeds import derive
from ponder.train.config import TrainConfig
from ponder.train import distributed
from ponder.train.tracking import Tracking

LOSS_TOKENS = "loss_tokens"
"""The stats key by which a loss opts in to the step-wide token mean (see the module docstring):
the number of tokens its returned loss is the mean over. The loop removes it from the stats."""


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate at optimiser step `step` (0-based): linear warm-up to `lr` over
    `warmup_steps`, then cosine decay to `lr * min_lr_ratio` at `steps`."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only; norms, biases and 1-d parameters are not decayed."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class MetricsLog:
    """Append-only JSONL of training records. On resume, records past the checkpoint step
    are dropped so a resumed run never duplicates a step."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a killed run
            if rec.get("step", 0) <= step:
                keep.append(line)
        atomic_write(self.path, "".join(l + "\n" for l in keep))

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


class EpochOrder:
    """Item index at position j of an endless stream that visits every item once per epoch,
    each epoch in its own seeded order. A function of (seed, j) alone, so a resumed run sees
    the same items at the same step as an uninterrupted one."""

    def __init__(self, n: int, seed: int):
        if n < 1:
            raise ValueError("nothing to train on: the dataset is empty")
        self.n, self.seed = n, seed
        self._orders: dict[int, list[int]] = {}

    def __getitem__(self, j: int) -> int:
        epoch = j // self.n
        if epoch not in self._orders:
            order = list(range(self.n))
            random.Random(derive(self.seed, "epoch", epoch)).shuffle(order)
            self._orders = {**{e: o for e, o in self._orders.items() if e == epoch - 1}, epoch: order}  # bounded
        return self._orders[epoch][j % self.n]

    def take(self, start: int, count: int) -> list[int]:
        return [self[j] for j in range(start, start + count)]


class TrainLoop:
    """Runs `cfg.steps` optimiser steps of `loss_fn` over `batch_at(step)`.

    run_dir/checkpoint/ holds the latest full state (model, optimiser, scheduler, RNG, step);
    it is written to a temporary folder and renamed, so a kill never leaves a torn checkpoint.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: TrainConfig,
        run_dir: str | Path,
        batch_at: Callable[[int], list[Any]],
        loss_fn: Callable[[torch.nn.Module, Any], tuple[torch.Tensor, dict]],
        eval_fn: Callable[[torch.nn.Module], dict] | None = None,
        save_fn: Callable[[torch.nn.Module, Path], None] | None = None,
        progress: bool = True,
        sharded: bool = False,
        tracking: Tracking | None = None,
    ):
        """`sharded`: `batch_at` returns this process's part of each of the step's
        micro-batches (the same number of parts in every process), see the module docstring.
        `tracking`: where rows go besides metrics.jsonl (default: `cfg.report_to`'s trackers,
        writing in `run_dir`, named after it, with `cfg` as hyperparameters)."""
        from accelerate.utils import set_seed

        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.batch_at, self.loss_fn, self.eval_fn, self.save_fn = batch_at, loss_fn, eval_fn, save_fn
        self.sharded = sharded
        set_seed(cfg.seed % 2**32)  # numpy takes 32-bit seeds; a derived seed (ponder.seeds) is wider
        # Tied embeddings (tiny models) make accelerate warn on every checkpoint that it
        # dropped the duplicate lm_head tensor; reload re-ties it, so the warning is noise.
        logging.getLogger("accelerate.utils.other").setLevel(logging.ERROR)
        self.device = distributed.train_device(cfg.device)
        place(model, self.device)
        if cfg.gradient_checkpointing:
            if not getattr(model, "supports_gradient_checkpointing", False):
                raise ValueError(f"--gradient-checkpointing: {type(model).__name__} does not support it")
            model.gradient_checkpointing_enable()
            if hasattr(model, "enable_input_require_grads"):  # frozen embeddings (LoRA): checkpointed blocks
                model.enable_input_require_grads()  # still need an input that requires grad
        self.tracking = tracking if tracking is not None else \
            Tracking(cfg.report_to, self.run_dir, self.run_dir.name, to_dict(cfg))
        self.ckpt_dir = self.run_dir / "checkpoint"
        self.accelerator = distributed.make_accelerator(self.device, cfg.mixed_precision,
                                                       log_with=self.tracking.trackers(self._saved_step()))
        self._tracking_started = False
        self.main = self.accelerator.is_main_process
        self.progress = progress and self.main
        optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, cfg) / cfg.lr)
        # evaluation_mode: no DDP wrapper (gradients are summed by distributed.sum_gradients);
        # the model stays where it was put and is saved in checkpoints
        self.model = self.accelerator.prepare_model(model, device_placement=False, evaluation_mode=True)
        self.optimizer, self.scheduler = self.accelerator.prepare(optimizer, scheduler)
        distributed.broadcast_parameters(self.model)
        self._warned_idle = False
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        self.step = 0

    # ----------------------------------------------------------------- metrics and trackers
    def record(self, row: dict) -> None:
        """A row of metrics.jsonl (rank 0 writes it), also logged to the trackers."""
        if not self.main:
            return
        self.metrics.write(row)
        self.start_tracking()
        self.tracking.log(self.accelerator, row)

    def start_tracking(self) -> None:
        """Start the trackers (once): `run` does, and a trainer that records rows before it
        (RL's evaluation of the starting policy) calls it first, so a tracker that cannot start
        fails before any work."""
        if not self._tracking_started:
            self._tracking_started = True
            self.tracking.start(self.accelerator)

    def _saved_step(self) -> int:
        """The step of the checkpoint a run will resume from (0: none)."""
        for folder in (self.ckpt_dir, self.run_dir / "checkpoint.old"):
            try:
                return int(json.loads((folder / "trainer_state.json").read_text())["step"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return 0

    # ----------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> None:
        if self.device.type == "lazy":  # the lazy test device's tensors have no storage to write: not resumable
            return
        tmp = self.run_dir / "checkpoint.tmp"
        if self.main:
            shutil.rmtree(tmp, ignore_errors=True)
        distributed.barrier()
        try:
            self.accelerator.save_state(str(tmp))  # rank 0 writes the state, every process its RNG
            if self.main:
                (tmp / "trainer_state.json").write_text(json.dumps({"step": self.step, "config": asdict(self.cfg)}))
        except BaseException:
            # A full disk (or a kill) mid-save: the last complete checkpoint stays as it was,
            # and the partial one must not hold on to the space the user needs to free.
            if self.main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        distributed.barrier()
        if self.main:
            self._publish_checkpoint(tmp)
        distributed.barrier()

    def _publish_checkpoint(self, tmp: Path) -> None:
        old = self.run_dir / "checkpoint.old"
        shutil.rmtree(old, ignore_errors=True)
        if self.ckpt_dir.exists():
            os.replace(self.ckpt_dir, old)
        os.replace(tmp, self.ckpt_dir)
        shutil.rmtree(old, ignore_errors=True)

    def maybe_resume(self) -> bool:
        # A kill between the two renames above leaves only checkpoint.old: use it.
        old = self.run_dir / "checkpoint.old"
        if self.main and not self.ckpt_dir.exists() and old.exists():
            os.replace(old, self.ckpt_dir)
        distributed.barrier()
        state_file = self.ckpt_dir / "trainer_state.json"
        if not state_file.exists():
            return False
        self.accelerator.load_state(str(self.ckpt_dir))
        self.step = json.loads(state_file.read_text())["step"]
        if self.main:
            self.metrics.truncate_after(self.step)
        return True

    # ----------------------------------------------------------------- one step
    def _accumulate(self, micro_batches: list) -> dict[str, float]:
        """Backward over this process's micro-batches (or parts of them, when sharded), then the
        gradients are summed over processes. A loss without `stats[LOSS_TOKENS]` is divided by
        the step's number of micro-batches; a token-mean loss is weighted by its tokens and the
        gradients divided by the step's tokens (over every process), see the module docstring.
        Returns the step's stats: means over the micro-batches (token-weighted for a token-mean
        loss), `tokens` summed. A non-finite loss in any process stops every process with
        FloatingPointError before the optimiser steps."""
        n = len(micro_batches)
        mine = micro_batches if self.sharded else [micro_batches[i] for i in distributed.share(n)]
        stats_sum: dict[str, float] = {}
        weight, ref = 0.0, None  # a token-mean loss: this process's tokens; its backward's divisor
        bad = None
        for micro in mine:
            loss, stats = self.loss_fn(self.model, to_device(micro, self.device))
            if not torch.isfinite(loss):
                bad = loss.item()
                break
            stats = dict(stats)
            tokens = stats.pop(LOSS_TOKENS, None)
            if tokens is None:
                w = 1.0
                self.accelerator.backward(loss / n)
            else:
                w = float(tokens)
                # One divisor for every process (the step's micro-batch count), so that N
                # processes scale their gradients alike and add up to one process's to rounding.
                ref = float(n)
                weight += w
                # a tensor factor: a Python float here becomes a double on the lazy test device
                self.accelerator.backward(loss * loss.new_tensor(w / ref))
            for k, v in stats.items():
                stats_sum[k] = stats_sum.get(k, 0.0) + float(v) * (w if k != "tokens" else 1.0)
        parts = distributed.gather_objects((bad, stats_sum, weight, ref is not None))
        bad = next((b for b, *_ in parts if b is not None), None)
        if bad is not None:
            raise FloatingPointError(
                f"non-finite loss ({bad}) at step {self.step}; "
                f"the last good checkpoint in {self.ckpt_dir} is kept unchanged"
            )
        token_mean = any(t for *_, t in parts)
        total = sum(w for _, _, w, _ in parts)
        if ref is not None:  # this process's part of sum_i loss_i * n_i / (the step's tokens)
            for p in self.model.parameters():
                if p.grad is not None:
                    p.grad.mul_(p.grad.new_tensor(ref / max(total, 1.0)))
        if distributed.world_size() > 1:
            distributed.sum_gradients(self.model.parameters())
        summed: dict[str, float] = {}
        for _, part, _, _ in parts:
            for k, v in part.items():
                summed[k] = summed.get(k, 0.0) + v
        denom = max(total, 1.0) if token_mean else n
        return {k: v / denom if k != "tokens" else v for k, v in summed.items()}

    def _evaluate(self) -> dict:
        """Rank 0 evaluates (the others wait for its result), so results equal a one-process
        run's."""
        result = None
        if self.main:
            self.model.eval()
            result = self.eval_fn(self.accelerator.unwrap_model(self.model))
            self.model.train()
        return distributed.broadcast_object(result)

    # ----------------------------------------------------------------- the loop
    def run(self) -> dict:
        """Run (or resume) to `cfg.steps`; the last step's stats (and evaluation)."""
        self.start_tracking()
        try:
            return self._run()
        finally:
            Tracking.finish(self.accelerator)

    def _run(self) -> dict:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        cfg = self.cfg
        resumed = self.maybe_resume()
        if resumed and self.progress:
            from rich.console import Console

            Console(stderr=True).print(f"resuming from {self.ckpt_dir} at step {self.step}/{cfg.steps}")
        self.model.train()
        last: dict = {}
        t0, tokens_since = time.time(), 0
        columns = [TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TextColumn("{task.fields[info]}"), TimeRemainingColumn()]
        with Progress(*columns, disable=not self.progress, transient=False) as bar:
            task = bar.add_task("train", total=cfg.steps, completed=self.step, info="resumed" if resumed else "")
            while self.step < cfg.steps:
                micro_batches = self.batch_at(self.step)
                self._warn_idle(len(micro_batches))
                step_stats = self._accumulate(micro_batches)
                grad_norm = None
                if cfg.max_grad_norm > 0:
                    grad_norm = float(self.accelerator.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm))
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                step_done(self.device)
                mark_weights_changed(self.accelerator.unwrap_model(self.model))  # engines sharing it rebuild
                self.step += 1
                tokens_since += int(step_stats.get("tokens", 0))
                last = dict(step_stats)
                bar.update(task, completed=self.step, info=f"loss {last.get('loss', float('nan')):.4f}")
                if self.main and (self.step % cfg.log_interval == 0 or self.step == cfg.steps):
                    dt = time.time() - t0
                    rec = {"step": self.step, "lr": self.scheduler.get_last_lr()[0], **last,
                           "tokens_per_s": tokens_since / max(dt, 1e-9)}
                    if grad_norm is not None:
                        rec["grad_norm"] = grad_norm
                    self.record(rec)
                    t0, tokens_since = time.time(), 0
                do_eval = self.eval_fn is not None and (
                    (cfg.eval_every and self.step % cfg.eval_every == 0) or self.step == cfg.steps)
                if do_eval:
                    result = self._evaluate()
                    self.record({"step": self.step, **{f"eval/{k}": v for k, v in result.items()}})
                    last.update({f"eval/{k}": v for k, v in result.items()})
                if (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0) or self.step == cfg.steps:
                    self.save_checkpoint()
        self.model.eval()
        if self.device.type == "lazy":
            place(self.model, torch.device("cpu"))  # its tensors can be written once they are CPU tensors
        if self.save_fn is not None and self.main:
            self.save_fn(self.accelerator.unwrap_model(self.model), self.run_dir / "model")
        distributed.barrier()
        return {"step": self.step, **last}

    def _warn_idle(self, n: int) -> None:
        world = distributed.world_size()
        if self.sharded or n >= world or self._warned_idle or not self.main:
            return
        self._warned_idle = True
        from rich.console import Console

        Console(stderr=True).print(f"warning: {world} processes share {n} micro-batch(es) per step, so "
                                   f"{world - n} of them have nothing to do; set grad_accum to a multiple of {world}")
