"""The RL trainer at the edges: dynamic sampling filters on accuracy (DAPO §3.2), rollouts
with fewer rows than mini-batches, and rows masked out whole by overlong filtering."""
import json

import pytest
import torch

from ponder.models import build_char_tokenizer, build_tiny_model
from ponder.rewards.functions import RewardFunction
from ponder.tasks import get_task
from ponder.train.rl import RLConfig, RLTrainer
from ponder.train.rl_batch import drop_zero_rows

TASK = get_task("arith", instruction=False)
PROBLEMS = TASK.problems("train", n=16, seed=0)


class ScriptedTask:
    """The arith task with scripted correctness, independent of what a random model writes:
    per problem id, every sample is right ("all"), none is ("none", the default), or every
    other sample in the order the trainer scores them ("alternate": a group of 4 gets 2)."""

    def __init__(self, modes: dict[str, str]):
        self.modes, self.calls = modes, 0

    def __getattr__(self, name):
        return getattr(TASK, name)

    def is_correct(self, problem, text):
        self.calls += 1
        mode = self.modes.get(problem.id, "none")
        return mode == "all" or (mode == "alternate" and self.calls % 2 == 0)


def distinct(prompts, completions, **_):
    """Varies between samples of a random model: the share of distinct characters."""
    return [len(set(c)) / 12 for c in completions]


def first_prompts(seed):
    """The two problems of rollout 0 (before any refill) for prompts_per_step=2."""
    probe = make_trainer("/tmp/unused", ScriptedTask({}), seed=seed)
    return [p.id for p in probe._prompts(0, 0)]


def make_trainer(run_dir, task, rewards=None, process_scorer=None, **overrides):
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, "1m", seed=0)
    cfg = dict(steps=1, prompts_per_step=2, group_size=4, max_tokens=12, ppo_epochs=1, num_minibatches=1,
               lr=1e-3, save_every=0, eval_every=0, seed=3)
    cfg.update(overrides)
    rewards = [RewardFunction("distinct", distinct)] if rewards is None else rewards
    return RLTrainer(model, tok, task, PROBLEMS, [], rewards, RLConfig(**cfg), run_dir, progress=False,
                     process_scorer=process_scorer)


def test_dynamic_sampling_drops_all_correct_group_despite_varying_format_reward(tmp_path):
    a, b = first_prompts(3)
    task = ScriptedTask({a: "all", b: "alternate"})

    def correct_plus_format(prompts, completions, problem, **_):
        # an outcome term that is 1 for every sample of a, plus a format term that varies
        return [float(p.id == a) + len(set(c)) / 100 for p, c in zip(problem, completions)]

    trainer = make_trainer(tmp_path, task, rewards=[RewardFunction("f", correct_plus_format)],
                           dynamic_sampling=True, max_refills=0)
    trainer._can_skip_zero_rows = lambda: False
    [mb] = trainer.rollout(0)
    assert mb["mask"].shape[0] == 4  # only b's group: a's accuracy is 1, so it carries no signal
    assert mb["stats"]["accuracy"] == 0.5
    assert mb["stats"]["groups_kept"] == 0.5


def test_dynamic_sampling_refills_up_to_prompts_per_step(tmp_path):
    a, _ = first_prompts(3)
    task = ScriptedTask({p.id: "alternate" for p in PROBLEMS} | {a: "all"})
    trainer = make_trainer(tmp_path, task, dynamic_sampling=True, max_refills=4)
    trainer._can_skip_zero_rows = lambda: False
    [mb] = trainer.rollout(0)
    groups = mb["advantages"].abs().sum(-1).view(-1, 4)
    assert groups.shape[0] == 2  # b, then the first refill group that is not a
    assert (groups.sum(-1) > 0).all()
    assert mb["stats"]["accuracy"] == 0.5
    assert mb["stats"]["groups_kept"] == 2 / 4  # two rounds of two groups sampled, a dropped


class ScriptedSteps:
    """Step rewards by prompt: constant for the prompts in `flat`, varying with the step's
    length parity for the others."""

    def __init__(self, flat: set[str] = frozenset()):
        self.flat = flat

    def score_steps(self, prompts, steps):
        return [[0.5] * len(row) if p in self.flat else [float(len(s) % 2) for s in row]
                for p, row in zip(prompts, steps)]


def test_process_grpo_dynamic_sampling_keeps_groups_whose_step_rewards_vary(tmp_path):
    """Process GRPO's advantages normalise a group's step rewards, so a group carries signal
    when they vary, whatever its accuracy: a's group (mixed accuracy, equal step rewards) is
    dropped, b's (all wrong, step rewards that vary) is kept."""
    a, b = first_prompts(3)
    task = ScriptedTask({a: "alternate", b: "none"})
    [pa] = [p for p in PROBLEMS if p.id == a]
    trainer = make_trainer(tmp_path, task, rewards=[], process_scorer=ScriptedSteps({TASK.prompt(pa)}),
                           estimator="process_grpo", dynamic_sampling=True, max_refills=0)
    trainer._can_skip_zero_rows = lambda: False
    [mb] = trainer.rollout(0)
    assert mb["mask"].shape[0] == 4
    assert mb["stats"]["accuracy"] == 0.0  # b's group, not a's
    assert mb["stats"]["groups_kept"] == 0.5
    assert mb["advantages"].abs().sum() > 0


def test_refills_do_not_draw_a_kept_prompt_again(tmp_path):
    """Every training problem of a rollout is drawn at most once, refills included."""
    task = ScriptedTask({p.id: "all" for p in PROBLEMS})  # no group has signal: every refill round runs
    trainer = make_trainer(tmp_path, task, dynamic_sampling=True, max_refills=20)
    seen = []
    original = trainer._prompts

    def recording(r, attempt, drawn=frozenset()):
        out = original(r, attempt, drawn)
        seen.extend(p.id for p in out)
        return out

    trainer._prompts = recording
    trainer.rollout(0)
    assert len(seen) == len(set(seen)) == len(PROBLEMS)  # 16 problems, 2 per round, none twice


def test_no_group_with_signal_falls_back_to_one_group_and_says_none_was_kept(tmp_path):
    trainer = make_trainer(tmp_path, ScriptedTask({}), dynamic_sampling=True, max_refills=1)
    trainer._can_skip_zero_rows = lambda: False
    [mb] = trainer.rollout(0)
    assert mb["mask"].shape[0] == 4  # one group, so that the step still has a batch
    assert mb["stats"]["groups_kept"] == 0.0


def test_drop_zero_rows_of_an_empty_minibatch():
    mb = {"input_ids": torch.zeros(0, 5, dtype=torch.long), "attention_mask": torch.zeros(0, 5, dtype=torch.long),
          "position_ids": torch.zeros(0, 5, dtype=torch.long), "response": torch.zeros(0, 2, dtype=torch.long),
          "mask": torch.zeros(0, 2), "advantages": torch.zeros(0, 2), "prompt_len": 3}
    assert drop_zero_rows(mb)["mask"].shape == (0, 2)


@pytest.mark.parametrize("extra", [{}, {"entropy_coef": 0.01}], ids=["rows-skipped", "rows-kept"])
def test_fewer_rows_than_minibatches(tmp_path, extra):
    # dynamic sampling keeps one group of 4 rows; 8 mini-batches leave 4 of them empty
    a, b = first_prompts(3)
    runs = {}
    for n in (8, 4):
        trainer = make_trainer(tmp_path / str(n), ScriptedTask({a: "alternate"}), dynamic_sampling=True,
                               max_refills=0, num_minibatches=n, **extra)
        trainer.train()
        runs[n] = trainer
    records = [json.loads(l) for l in (tmp_path / "8" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 9))
    assert all(r["loss"] == r["loss"] for r in records)  # no NaN stopped the run
    assert [r["loss"] for r in records[4:]] == [0.0] * 4
    # an empty mini-batch's optimiser step changes nothing (no gradient, so AdamW's momentum and
    # weight decay leave every weight alone): the same weights as 4 mini-batches of one row each
    for (name, p), (_, q) in zip(runs[8].policy.named_parameters(), runs[4].policy.named_parameters()):
        assert torch.equal(p, q), name
    init = build_tiny_model(build_char_tokenizer(), "1m", seed=0)
    assert not torch.equal(init.lm_head.weight, runs[8].policy.lm_head.weight)


def test_fully_truncated_rows_are_not_counted_as_sequences(tmp_path):
    # max_tokens=12: most random samples run to the limit and mask_truncated masks them out whole
    trainer = make_trainer(tmp_path, ScriptedTask({}), mask_truncated=True, loss_agg="seq-mean-token-mean",
                           prompts_per_step=4)
    trainer._can_skip_zero_rows = lambda: False
    [mb] = trainer.rollout(0)
    live = int((mb["mask"].sum(-1) > 0).sum())
    assert 0 < live < mb["mask"].shape[0]
    assert mb["num_seqs"] == live


def test_process_grpo_refuses_a_kl_it_would_drop_and_applies_one_in_the_loss(tmp_path):
    """Process GRPO's advantages read only step rewards: a KL in the reward had no effect (beta
    did nothing), so it is refused; in the loss it changes the update."""
    with pytest.raises(ValueError, match="keep the KL in the loss"):
        RLConfig(estimator="process_grpo", beta=0.1, kl_in_reward=True).check()
    weights = {}
    for beta in (0.0, 0.1):
        trainer = make_trainer(tmp_path / str(beta), ScriptedTask({}), rewards=[], process_scorer=ScriptedSteps(),
                               estimator="process_grpo", beta=beta, steps=2, lr=1e-2)
        trainer.train()
        weights[beta] = torch.cat([p.detach().flatten() for p in trainer.policy.parameters()])
    # the KL's gradient is 0 while the policy equals the reference (step 1), not after it
    assert (weights[0.0] - weights[0.1]).abs().max() > 1e-6


def test_rollout_correction_weights_and_kl_by_hand():
    from ponder.train.policy_loss import rollout_correction

    trainer = torch.tensor([[-1.0, -2.0, -3.0]])
    sampler = torch.tensor([[-1.5, -1.0, -3.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    w, st = rollout_correction(trainer, sampler, mask, cap=1.5)
    # ratios exp(0.5) = 1.6487 (capped at 1.5) and exp(-1) = 0.3679; the masked token's is 1
    assert w.tolist()[0] == pytest.approx([1.5, 0.36788, 1.0], abs=1e-4)
    k3 = ((1.64872 - 1 - 0.5) + (0.36788 - 1 + 1.0)) / 2
    assert st["rollout_kl"] == pytest.approx(k3, abs=1e-4) and st["tis_clip_frac"] == 0.5
    w, st = rollout_correction(trainer, trainer, mask, cap=2.0)
    assert w.tolist()[0] == [1.0, 1.0, 1.0] and st["rollout_kl"] == 0.0
    with pytest.raises(ValueError, match="top_p = 1"):
        RLConfig(top_p=0.9).check()


def test_rollouts_from_another_distribution_are_measured_and_corrected(tmp_path):
    """The engine's own samples: sampler and trainer agree (rollout_kl ~ 0). A sampler whose
    weights lag the trainer's (as bf16, vLLM or a server would differ): rollout_kl > 0, and
    truncated importance sampling changes the loss."""
    def first_step(tis_cap, stale):
        trainer = make_trainer(tmp_path / f"{tis_cap}-{stale}", ScriptedTask({p.id: "alternate" for p in PROBLEMS}),
                               tis_cap=tis_cap)
        if stale:
            from ponder.generation import make_engine

            tok = build_char_tokenizer()
            other = build_tiny_model(tok, "1m", seed=1)  # another policy samples
            trainer.generator = make_engine("torch", other, tokenizer=tok)
            trainer._sync_weights = lambda: None
            trainer.correct_rollouts = tis_cap > 0  # as for an engine other than the trainer's own
        [mb] = trainer.batch_at(0)
        loss, stats = trainer.loss_fn(trainer.trainable, mb)
        return float(loss), stats

    _, own = first_step(2.0, stale=False)
    assert abs(own["rollout_kl"]) < 1e-5 and own["tis_clip_frac"] == 0.0
    corrected, stale = first_step(2.0, stale=True)
    plain, _ = first_step(0.0, stale=True)
    assert stale["rollout_kl"] > 0.01
    assert corrected != pytest.approx(plain, abs=1e-7)


def test_old_and_reference_logprobs_are_taken_without_dropout(tmp_path):
    from ponder.train.rl_batch import response_logprobs

    trainer = make_trainer(tmp_path, ScriptedTask({p.id: "alternate" for p in PROBLEMS}), num_minibatches=2,
                           beta=0.1)
    for m in trainer.policy.modules():
        if hasattr(m, "attention_dropout"):
            m.attention_dropout = 0.5  # dropout that train mode would apply
    trainer.trainable.train()
    mbs = trainer.rollout(0)
    assert trainer.trainable.training  # the mode is given back
    trainer.policy.eval()
    with torch.no_grad():
        for mb in mbs:
            want = response_logprobs(trainer.policy, mb, 1.0)[0]
            assert (mb["old_logp"] - want).abs().max() < 1e-5
            assert (mb["ref_logp"] - want).abs().max() < 1e-5  # the reference is the initial policy
