"""Online RL for reasoning: GRPO and its fixes, RLOO, REINFORCE++ and PPO in one loop.

One RL step is:

1. Rollout: `prompts_per_step` training problems, `group_size` samples each, from the
   generation engine at the current weights. The problems and the sampling seed are a pure
   function of (seed, rollout index), so a resumed run regenerates exactly what an
   uninterrupted run would have (checkpoints are written only between rollouts). Prompts
   are tokenised here, once, and the engine continues those ids, so the trainer scores
   exactly the tokens that were sampled.
2. Rewards: the weighted sum of the reward functions (`ponder.rewards.functions`); with
   dynamic sampling (DAPO §3.2) groups whose accuracy is 0 or 1 (every sample wrong, or
   every sample right, by the task's verifier) are replaced by fresh prompts. A process
   scorer (a PRM, or the exact step verifier) gives step rewards for process-supervised GRPO.
3. Advantages (`advantages.py`, by name) and, when the update is not purely on-policy, the
   log-probabilities under the sampling weights (for the PPO ratio), under a frozen
   reference (for the KL penalty) and the value head's estimates (for GAE).
4. `ppo_epochs` passes over the batch in `num_minibatches` mini-batches, one optimiser step
   each, with the policy loss of `policy_loss.py`.

The optimiser, schedule, clipping, checkpoints, NaN stop and `metrics.jsonl` are the shared
`TrainLoop`: one loop step is one optimiser step, and `batch_at(step)` builds (and caches)
the rollout that step belongs to.

Rows whose advantages are all zero (GRPO groups that were all right or all wrong) add nothing
to the policy loss, so when the loss is the policy loss alone they are left out of the
forward/backward (`rl_batch.drop_zero_rows`, keeping the full batch's denominators): same
gradient, less compute.

Engines: `engine="torch"` (default) samples in this process from the policy itself, so its
weights are always current. Any other engine (`vllm`, a server URL) holds its own copy: the
trainer pushes its weights into it (`update_weights`) after optimiser steps, before the next
rollout or evaluation - TRL's, verl's and OpenRLHF's weight sync, on one machine.

Data parallel (`torchrun --nproc_per_node N`, see distributed.py): each process samples and
scores its own share of a rollout's prompts (whole groups), then the groups are gathered, so
every process holds the whole rollout and computes from it what is computed over the batch -
dynamic sampling's kept groups, advantages (a group's rewards are normalised whole; REINFORCE++
whitens over the whole batch), the logged reward means. The forwards for sampling-time, reference
and value estimates are split by rows and gathered. Each mini-batch is cut between processes;
each computes the loss of its rows with the whole mini-batch's denominators (token and sequence
counts), so the losses add up to the one-process loss and the loop sums the gradients. Logged
loss-time diagnostics (entropy, KL, clip fraction) are token-weighted means over the processes.
The held-out evaluation runs on rank 0 (see TrainLoop), so its results are a one-process run's.
Prompts are then sampled with a seed each (`prompt_seeds`), so a rollout does not depend on how
its prompts are split between processes; a plain run keeps one seed per generate call, so its
samples differ from a torchrun run's (resume a run the way it was started).

Deliberate simplifications: the whole rollout batch is one forward per mini-batch (no
micro-batching) and rewards are computed in the process that sampled them.
"""
from __future__ import annotations

import copy
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from ponder.config import field_values, to_dict
from ponder.generation import SamplingParams
from ponder.models import encode_prompts
from ponder.models.device import place, step_done, to_device
from ponder.rewards.functions import RewardError, RewardFunction, combine
from ponder.runs import write_json
from ponder.seeds import derive
from ponder.train import distributed
from ponder.train.advantages import AdvantageInputs, compute_advantages
from ponder.train.config import OptimConfig, TrainConfig
from ponder.train.loop import EpochOrder, TrainLoop
from ponder.train.lora import add_lora, save_lora
from ponder.train.policy_engine import policy_engine
from ponder.train.policy_loss import aggregate, kl_penalty, masked_mean, policy_loss, rollout_correction, value_loss
from ponder.train.rl_batch import ActorCritic, drop_zero_rows, response_logprobs, rollout_batch, step_token_ends
from ponder.train.rl_config import RLConfig
from ponder.train.tracking import Tracking


class RLTrainer:
    """Owns the rollouts; the optimisation runs in a `TrainLoop`."""

    def __init__(self, model, tokenizer, task, train_problems, eval_problems, rewards: list[RewardFunction],
                 cfg: RLConfig, run_dir: str | Path, process_scorer=None, progress: bool = True,
                 batch_size: int | None = None, engine: str = "torch", prompt_seeds: bool | None = None):
        """`engine`: torch (in this process, sharing the policy's weights), vllm, or a server
        URL (see policy_engine.py); weights are pushed to it before the first rollout too, so
        a resumed run is in sync. `prompt_seeds`: sample each prompt of a rollout with its own
        seed, so the rollout is the same however its prompts are split between processes
        (default: when the run has several processes). With `cfg.lora_r` only LoRA adapters
        train; the reference is the model with its adapters off."""
        cfg.check()
        lora = cfg.lora()
        if lora and engine not in ("torch", "torch-bf16"):
            raise ValueError(f"LoRA training samples with the in-process engine only (engine torch), got {engine!r}")
        if not rewards and cfg.estimator != "process_grpo":
            raise ValueError("give at least one reward function (e.g. the task's outcome verifier)")
        if cfg.estimator == "process_grpo" and process_scorer is None:
            raise ValueError("estimator process_grpo needs a process scorer (a PRM, or the task's step verifier)")
        self.cfg, self.task, self.tokenizer = cfg, task, tokenizer
        self.train_problems, self.eval_problems = list(train_problems), list(eval_problems)
        if len(self.train_problems) < cfg.prompts_per_step:
            raise ValueError(f"{len(self.train_problems)} training problems, fewer than prompts_per_step={cfg.prompts_per_step}")
        self.rewards, self.process_scorer, self.progress = rewards, process_scorer, progress
        self.run_dir = Path(run_dir)
        self.peft, self.lora_merge = None, cfg.lora_merge
        if lora:
            self.peft = add_lora(model, **lora)
            model = self.peft.get_base_model()  # the LoRA layers are injected into this model
        # Every model the run holds lives on one device from here on: the policy (with its LoRA
        # layers), the frozen reference, the critic's head, a PRM scoring steps.
        self.device = distributed.train_device(cfg.device)
        self.policy = place(model, self.device)
        self.ref = None
        if cfg.beta > 0 and self.peft is None:
            self.ref = place(copy.deepcopy(model).eval().requires_grad_(False), self.device)
        self.trainable = ActorCritic(model) if cfg.estimator == "gae" else (self.peft or model)
        self.trainable.to(self.device)
        if isinstance(process_scorer, torch.nn.Module):
            place(process_scorer, self.device)
        self.generator = policy_engine(engine, model, tokenizer, run_dir, batch_size=batch_size, seed=cfg.seed)
        # The in-process fp32 engine samples from the trainer's own weights and distribution:
        # its importance weights would be 1 up to float rounding, so only other engines are
        # corrected (the sampler-trainer KL is logged for every engine).
        self.correct_rollouts = cfg.tis_cap > 0 and engine != "torch"
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        self._stale = True  # the engine's weights may differ from the policy's
        self._cache: tuple[int, list[dict]] | None = None
        self._order = EpochOrder(len(self.train_problems), derive(cfg.seed, "prompt-order"))
        self.timing = {"generate_s": 0.0, "score_s": 0.0, "completions": 0}
        self.prompt_seeds = distributed.launched() if prompt_seeds is None else prompt_seeds

    # ------------------------------------------------------------- prompts and samples
    def _prompts(self, r: int, attempt: int, drawn: set[str] = frozenset()) -> list:
        """Training problems for rollout r: an epoch-wise seeded shuffle; refills for dynamic
        sampling draw a seeded random subset of the problems this rollout has not drawn yet
        (`drawn`: their ids), so a kept group's prompt is not sampled again."""
        P = self.cfg.prompts_per_step
        if attempt > 0:
            rng = random.Random(derive(self.cfg.seed, "refill", r, attempt))
            fresh = [p for p in self.train_problems if p.id not in drawn]
            return rng.sample(fresh, min(P, len(fresh)))
        return [self.train_problems[i] for i in self._order.take(r * P, P)]

    def _sync_weights(self) -> None:
        """Push the policy's weights into the engine if an optimiser step changed them since
        the last push (free when the engine shares the policy's tensors)."""
        if self._stale:
            t0 = time.perf_counter()
            self.generator.update_weights(self.policy.named_parameters())
            self.timing["sync_s"] = self.timing.get("sync_s", 0.0) + time.perf_counter() - t0
            self._stale = False

    def _sample_groups(self, r: int, attempt: int, drawn: set[str] = frozenset()) -> list[dict]:
        """The groups of rollout r's prompts (refill round `attempt`, avoiding the problems in
        `drawn`), sampled and scored: this process's share of the prompts, then gathered, so
        every process returns all groups in the order of the prompts."""
        cfg = self.cfg
        problems = self._prompts(r, attempt, drawn)
        mine = distributed.share(len(problems))
        problems = [problems[i] for i in mine]
        if not problems:  # more processes than prompts: this one only gathers
            return [g for part in distributed.gather_objects([]) for g in part]
        prompts = [self.task.prompt(p) for p in problems]
        prompt_ids = encode_prompts(self.tokenizer, prompts)
        # The sampler's log-probabilities correct rollouts from another distribution than the
        # trainer's (rollout_correction); the trainer recomputes its own where the loss needs them.
        params = SamplingParams(n=cfg.group_size, temperature=cfg.temperature, top_p=cfg.top_p,
                                max_tokens=cfg.max_tokens, seed=derive(cfg.seed, "rollout", r, attempt), logprobs=True)
        seeds = [derive(cfg.seed, "rollout", r, attempt, i) for i in mine] if self.prompt_seeds else None
        self._sync_weights()
        t0 = time.perf_counter()
        samples = self.generator.generate(prompt_ids, params, seeds=seeds) if seeds else \
            self.generator.generate(prompt_ids, params)
        self.timing["generate_s"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        rows = [{"problem": p, "prompt": q, "prompt_ids": ids, "sample": s}
                for p, q, ids, group in zip(problems, prompts, prompt_ids, samples) for s in group]
        self.timing["completions"] += len(rows)
        self._score(rows)
        self.timing["score_s"] += time.perf_counter() - t0
        G = cfg.group_size
        groups = [rows[i:i + G] for i in range(0, len(rows), G)]
        return [g for part in distributed.gather_objects(groups) for g in part]

    def _score(self, rows: list[dict]) -> None:
        prompts = [x["prompt"] for x in rows]
        completions = [x["sample"].text for x in rows]
        columns = {"answer": [x["problem"].answer for x in rows], "problem": [x["problem"] for x in rows],
                   "data_source": [self.task.name] * len(rows),
                   "num_tokens": [x["sample"].num_tokens for x in rows],
                   "finish_reason": [x["sample"].finish_reason for x in rows]}
        per_fn = {rf.name: rf.call(prompts, completions, columns) for rf in self.rewards}
        total = combine(per_fn, {rf.name: rf.weight for rf in self.rewards}) if per_fn else [0.0] * len(rows)
        for i, x in enumerate(rows):
            x["reward"] = total[i]
            x["parts"] = {k: v[i] for k, v in per_fn.items()}
            x["correct"] = float(self.task.is_correct(x["problem"], completions[i]))
        if self.process_scorer is not None:
            split = [step_token_ends(self.tokenizer, x["sample"].token_ids, x["sample"].text, self.task.step_delimiter,
                                     x["prompt_ids"]) for x in rows]
            try:
                scores = self.process_scorer.score_steps(prompts, [s for s, _ in split])
            except Exception as e:
                raise RewardError(f"process scorer {type(self.process_scorer).__name__} raised "
                                  f"{type(e).__name__}: {e}") from e
            for x, (steps, ends), sc in zip(rows, split, scores, strict=True):
                if len(sc) != len(steps):
                    raise RewardError(f"process scorer {type(self.process_scorer).__name__} returned {len(sc)} "
                                      f"step scores for {len(steps)} steps")
                x["step_rewards"], x["step_ends"] = [float(v) for v in sc], ends

    # ------------------------------------------------------------- one rollout batch
    @torch.no_grad()
    def rollout(self, r: int) -> list[dict]:
        """The mini-batches of rollout r, in optimisation order (ppo_epochs x num_minibatches)."""
        cfg = self.cfg
        t0 = time.perf_counter()
        groups = self._sample_groups(r, 0)
        sampled = kept = len(groups)
        if cfg.dynamic_sampling:
            def has_signal(group: list[dict]) -> bool:
                if cfg.estimator == "process_grpo":
                    # its advantages normalise the group's step rewards: a group has signal
                    # when they are not all equal, whatever the outcomes
                    return len({v for x in group for v in x.get("step_rewards", [])}) > 1
                # DAPO §3.2 (eq. 11): 0 < |{o_i : o_i is correct}| < G. The accuracy, not the
                # total reward: a format or overlong term that varies within an all-correct group
                # does not keep it
                return 0 < sum(x["correct"] for x in group) < len(group)

            first = groups
            drawn = {g[0]["problem"].id for g in groups}
            groups = [g for g in groups if has_signal(g)]
            for attempt in range(1, cfg.max_refills + 1):
                if len(groups) >= cfg.prompts_per_step:
                    break
                more = self._sample_groups(r, attempt, drawn)
                if not more:  # every training problem has been drawn in this rollout
                    break
                drawn |= {g[0]["problem"].id for g in more}
                sampled += len(more)
                groups += [g for g in more if has_signal(g)]
            groups = groups[:cfg.prompts_per_step]
            kept = len(groups)
            if not groups:  # nothing to learn from: one group already sampled, so the step still has a batch
                groups = first[:1]
        rows = [x for g in groups for x in g]
        batch = self._tensorize(rows)
        module = self.trainable
        # Old and reference log-probabilities are those of the policy as it sampled: no dropout.
        was_training = module.training
        module.eval()
        try:
            return self._rollout_batch(r, rows, batch, module, stats_of=(sampled, kept, t0))
        finally:
            module.train(was_training)

    def _rollout_batch(self, r: int, rows: list[dict], batch: dict, module, stats_of: tuple) -> list[dict]:
        """Rollout r's batch with its old and reference log-probabilities, rewards and
        advantages, cut into mini-batches (`module` in eval mode)."""
        cfg = self.cfg
        sampled, kept, t0 = stats_of
        mask = batch["mask"]
        B, T = mask.shape
        rewards = torch.tensor([x["reward"] for x in rows], dtype=torch.float32)
        needs_old = cfg.updates_per_step > 1 or cfg.estimator == "gae"
        if needs_old:
            gae = cfg.estimator == "gae"
            old_logp, values = self._by_rows(
                lambda b: response_logprobs(module, b, cfg.temperature, with_values=gae)[::2], batch)
            batch["old_logp"] = old_logp
            if values is not None:
                batch["old_values"] = values * mask
        if cfg.beta > 0:
            batch["ref_logp"] = self._by_rows(lambda b: (self._ref_logprobs(b),), batch)[0]
        token_rewards = torch.zeros(B, T)
        last = (mask.sum(-1).long() - 1).clamp(min=0)
        token_rewards[torch.arange(B), last] = rewards
        if cfg.beta > 0 and cfg.kl_in_reward:
            logp = batch["old_logp"] if needs_old else \
                self._by_rows(lambda b: response_logprobs(module, b, cfg.temperature)[:1], batch)[0]
            kl = kl_penalty(logp, batch["ref_logp"], cfg.kl_estimator) * mask
            token_rewards = token_rewards - cfg.beta * kl
            rewards = rewards - cfg.beta * kl.sum(-1)
        inputs = AdvantageInputs(rewards=rewards, token_rewards=token_rewards, mask=mask, group_size=cfg.group_size,
                                 values=batch.get("old_values"), gamma=cfg.gamma, lam=cfg.lam,
                                 step_rewards=[x.get("step_rewards", []) for x in rows] if self.process_scorer else None,
                                 step_ends=[x.get("step_ends", []) for x in rows] if self.process_scorer else None)
        adv, returns = compute_advantages(cfg.estimator, inputs)
        batch["advantages"] = adv
        if returns is not None:
            batch["returns"] = returns
        if cfg.mask_truncated:
            keep = torch.tensor([x["sample"].finish_reason != "length" for x in rows], dtype=torch.float32)
            batch["mask"] = mask * keep[:, None]
        lengths = [x["sample"].num_tokens for x in rows]
        stats = {
            "reward": float(np.mean([x["reward"] for x in rows])),
            "accuracy": float(np.mean([x["correct"] for x in rows])),
            "response_length": float(np.mean(lengths)),
            "truncated": float(np.mean([x["sample"].finish_reason == "length" for x in rows])),
            "groups_kept": kept / max(sampled, 1),
            "rollout_s": time.perf_counter() - t0,
        }
        for name in rows[0]["parts"]:
            vals = [x["parts"][name] for x in rows if x["parts"][name] is not None]
            stats[f"reward/{name}"] = float(np.mean(vals)) if vals else float("nan")
        return self._minibatches(batch, r, stats, generated=sum(lengths))

    def _tensorize(self, rows: list[dict]) -> dict:
        return rollout_batch(rows, self.pad_id)

    def _by_rows(self, fn, batch: dict) -> tuple:
        """fn(batch) -> a tuple of (B, T) tensors (or None), each process computing it on its
        share of the rows, on the run's device, then gathered: the same tensors (on the CPU,
        where the rollout batch is built) as fn over the whole batch in one process (up to
        float rounding: other rows share the forward)."""
        def run(b: dict) -> tuple:
            out = tuple(t.cpu() if t is not None else None for t in fn(to_device(b, self.device)))
            step_done(self.device)
            return out

        if distributed.world_size() == 1:
            return run(batch)
        rows = distributed.share(batch["mask"].shape[0])
        parts = distributed.gather_objects(run({k: (v[rows.start:rows.stop] if torch.is_tensor(v) else v)
                                                for k, v in batch.items()}))
        return tuple(None if column[0] is None else torch.cat(column) for column in zip(*parts))

    def _ref_logprobs(self, batch: dict) -> torch.Tensor:
        if self.peft is not None:
            with self.peft.disable_adapter():
                return response_logprobs(self.policy, batch, self.cfg.temperature)[0]
        return response_logprobs(self.ref, batch, self.cfg.temperature)[0]

    def _minibatches(self, batch: dict, r: int, stats: dict, generated: int) -> list[dict]:
        cfg = self.cfg
        B = batch["mask"].shape[0]
        out = []
        for epoch in range(cfg.ppo_epochs):
            g = torch.Generator().manual_seed(derive(cfg.seed, "minibatches", r, epoch))
            perm = torch.randperm(B, generator=g) if cfg.num_minibatches > 1 else torch.arange(B)
            # when dynamic sampling kept fewer rows than num_minibatches, the last chunks are
            # empty: their optimiser steps have no gradient and change nothing (see loss_fn), so
            # every rollout still takes updates_per_step loop steps and resume stays exact
            for chunk in torch.tensor_split(perm, cfg.num_minibatches):
                whole = batch["mask"][chunk]  # the denominators are the whole mini-batch's
                seqs = (whole.sum(-1) > 0).sum() if cfg.loss_agg == "seq-mean-token-mean" else len(chunk)
                rows = distributed.share(len(chunk))
                mine = chunk[rows.start:rows.stop]  # this process's rows (all of them in one process)
                mb = {k: (v[mine] if torch.is_tensor(v) else v) for k, v in batch.items()}
                mb["num_tokens"], mb["num_seqs"] = float(whole.sum()), int(seqs)
                mb["share"] = self._share(batch, chunk, rows)
                if self._can_skip_zero_rows() and len(mine):
                    mb = drop_zero_rows(mb)
                mb["stats"] = dict(stats, tokens=generated if not out and distributed.is_main() else 0)
                out.append(mb)
        return out

    def _share(self, batch: dict, chunk: torch.Tensor, rows: range) -> float:
        """This process's share (its `rows` of the mini-batch `chunk`) of the tokens that one
        process would compute the loss's means over: the rows `drop_zero_rows` keeps, when rows
        are dropped. Token-mean terms and logged means are weighted by it, so that their sum over
        processes is the one-process value; by rows when no token counts; 1 in one process."""
        if distributed.world_size() == 1:
            return 1.0
        if not len(chunk):
            return 1.0 / distributed.world_size()
        mask = batch["mask"][chunk]
        kept = torch.ones(len(chunk), dtype=torch.bool)
        if self._can_skip_zero_rows():
            kept = ((batch["advantages"][chunk] != 0) & (mask > 0)).any(-1)
            if not kept.any():
                kept[0] = True  # drop_zero_rows keeps one row, the first
        tokens = mask.sum(-1) * kept
        whole, mine = float(tokens.sum()), float(tokens[rows.start:rows.stop].sum())
        if whole > 0:
            return mine / whole
        return float(kept[rows.start:rows.stop].sum()) / float(kept.sum())

    def _can_skip_zero_rows(self) -> bool:
        """Whether a row with all-zero advantages contributes exactly nothing to the loss:
        true for the policy loss alone (no KL term in the loss, no entropy bonus, no critic)."""
        cfg = self.cfg
        return (cfg.beta == 0 or cfg.kl_in_reward) and cfg.entropy_coef == 0 and cfg.estimator != "gae"

    # ------------------------------------------------------------- loop hooks
    def batch_at(self, step: int) -> list[dict]:
        r, i = divmod(step, self.cfg.updates_per_step)
        if self._cache is None or self._cache[0] != r:
            self._cache = (r, self.rollout(r))
        return [self._cache[1][i]]

    def loss_fn(self, model, mb: dict) -> tuple[torch.Tensor, dict]:
        """The policy loss of this process's rows of a mini-batch, over the whole mini-batch's
        denominators (so the processes' losses add up to the mini-batch's loss), and its stats
        weighted by this process's share (`_share`; the loop sums both over processes)."""
        cfg = self.cfg
        share = mb["share"]
        weighted = {k: (v * share if k != "tokens" else v) for k, v in mb["stats"].items()}
        if mb["mask"].shape[0] == 0:
            # an empty mini-batch: a loss without any parameter in its graph leaves every
            # gradient None, and AdamW skips such parameters (no momentum, no weight decay)
            return torch.zeros((), requires_grad=True), dict(weighted, loss=0.0)
        self._stale = True  # an optimiser step follows this loss
        gae = cfg.estimator == "gae"
        logp, entropy, values = response_logprobs(model, mb, cfg.temperature, with_values=gae)
        mask = mb["mask"]
        old = mb["old_logp"] if "old_logp" in mb else logp.detach()
        loss_mat, st = policy_loss(cfg.loss, logp, old, mb["advantages"], mask, cfg.epsilon_low, cfg.epsilon_high)
        if "rollout_logp" in mb:  # the trainer's distribution at sampling time against the sampler's
            weights, rc = rollout_correction(old, mb["rollout_logp"], mask, cfg.tis_cap)
            if self.correct_rollouts:
                loss_mat = loss_mat * weights
            st.update(rc)
        stats = dict(weighted)
        if "ref_logp" in mb:
            kl = kl_penalty(logp, mb["ref_logp"], cfg.kl_estimator)
            stats["kl"] = masked_mean(kl.detach(), mask) * share
            if not cfg.kl_in_reward:
                loss_mat = loss_mat + cfg.beta * kl
        loss = aggregate(loss_mat, mask, cfg.loss_agg, norm=cfg.max_tokens, num_tokens=mb.get("num_tokens"),
                         num_seqs=mb.get("num_seqs"))
        if cfg.entropy_coef:  # no rows are dropped here, so num_tokens is this mask's count in one process
            loss = loss - cfg.entropy_coef * aggregate(entropy, mask, "token-mean", num_tokens=mb["num_tokens"])
        if gae:
            # the token-mean over this process's rows, times its share of the tokens: its part
            # of the token-mean over the whole mini-batch
            vl = value_loss(values, mb["old_values"], mb["returns"], mask, cfg.value_clip) * share
            loss = loss + cfg.vf_coef * vl
            stats["value_loss"] = vl.item()
        stats.update({k: v * share for k, v in st.items()}, loss=loss.item(),
                     entropy=masked_mean(entropy.detach(), mask) * share)
        return loss, stats

    def evaluate(self, model=None, n_tokens: int | None = None) -> dict:
        prompts = encode_prompts(self.tokenizer, [self.task.prompt(p) for p in self.eval_problems])
        self._sync_weights()
        out = self.generator.generate(prompts, SamplingParams(n=1, temperature=0.0, max_tokens=n_tokens or self.cfg.max_tokens))
        correct = [self.task.is_correct(p, s[0].text) for p, s in zip(self.eval_problems, out)]
        return {"accuracy": float(np.mean(correct)), "mean_tokens": float(np.mean([s[0].num_tokens for s in out]))}

    def save(self, model, out: Path) -> None:
        if self.peft is not None:
            save_lora(self.peft, self.tokenizer, out, self.lora_merge)
            return
        self.policy.save_pretrained(out)
        self.tokenizer.save_pretrained(out)

    def train(self) -> dict:
        cfg = self.cfg
        U = cfg.updates_per_step
        cfg.device_options()  # a bad device fails here, in one line
        # The loop counts optimiser steps: U per RL step.
        tcfg = TrainConfig(**field_values(cfg, OptimConfig), steps=cfg.steps * U,
                           eval_every=cfg.eval_every * U if self.eval_problems else 0,
                           save_every=cfg.save_every * U, log_every=1)
        # the trackers get the RL config as hyperparameters, not the loop's (which counts optimiser steps)
        tracking = Tracking(cfg.report_to, self.run_dir, self.run_dir.name, to_dict(cfg))
        loop = TrainLoop(self.trainable, tcfg, self.run_dir, self.batch_at, self.loss_fn,
                         eval_fn=self.evaluate if self.eval_problems else None, save_fn=self.save,
                         progress=self.progress, sharded=True, tracking=tracking)
        fresh = not (self.run_dir / "checkpoint" / "trainer_state.json").exists() and \
            not (self.run_dir / "checkpoint.old").exists()
        initial_path = self.run_dir / "initial_eval.json"

        def initial_eval():  # on rank 0 alone (distributed.on_main), like the loop's evaluations
            loop.start_tracking()  # a tracker that cannot start fails before the evaluation
            if fresh and self.eval_problems:
                result = self.evaluate()
                loop.record({"step": 0, **{f"eval/{k}": v for k, v in result.items()}})
                write_json(initial_path, result)
                return result
            if initial_path.exists():  # a resumed run still reports where it started
                return json.loads(initial_path.read_text())
            return None

        try:
            initial = distributed.on_main(initial_eval)
        except BaseException:
            Tracking.finish(loop.accelerator)  # loop.run, which closes them otherwise, will not run
            raise
        final = loop.run()
        final["rl_steps"] = loop.step // U
        if initial is not None:
            final["initial_eval/accuracy"] = initial["accuracy"]
        return final
