"""The RL trainer on a tiny random model: exact resume, NaN stop, reward errors, estimators."""
import hashlib
import json

import pytest
import torch

from ponder.generation import Sample
from ponder.models import build_char_tokenizer, build_tiny_model
from ponder.rewards.functions import RewardError, RewardFunction
from ponder.tasks import get_task
from ponder.train.rl import RLConfig, RLTrainer, step_token_ends

TASK = get_task("arith", instruction=False)
PROBLEMS = TASK.problems("train", n=16, seed=0)


def ones_share(prompts, completions, **_):
    """A reward that varies between samples of a random model: the share of '1' characters."""
    return [c.count("1") / (len(c) + 1) for c in completions]


def make_trainer(run_dir, rewards=None, **overrides):
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, "1m", seed=0)
    cfg = dict(steps=4, prompts_per_step=2, group_size=4, max_tokens=12, ppo_epochs=2, num_minibatches=2,
               lr=1e-3, save_every=2, eval_every=0, seed=3)
    cfg.update(overrides)
    rewards = rewards or [RewardFunction("ones", ones_share)]
    return RLTrainer(model, tok, TASK, PROBLEMS, [], rewards, RLConfig(**cfg), run_dir, progress=False)


def test_killed_run_resumes_with_same_weights_and_optimizer(tmp_path):
    full = make_trainer(tmp_path / "full")
    full.train()

    calls = {"n": 0}

    def dies_on_third_rollout(prompts, completions, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the process is killed while sampling rollout 3
        return ones_share(prompts, completions)

    with pytest.raises(KeyboardInterrupt):
        make_trainer(tmp_path / "cut", rewards=[RewardFunction("ones", dies_on_third_rollout)]).train()
    state = json.loads((tmp_path / "cut" / "checkpoint" / "trainer_state.json").read_text())
    assert state["step"] == 2 * 4  # two rollouts of ppo_epochs * num_minibatches optimiser steps
    resumed = make_trainer(tmp_path / "cut")
    resumed.train()

    init = build_tiny_model(build_char_tokenizer(), "1m", seed=0)
    assert not torch.equal(init.lm_head.weight, full.policy.lm_head.weight)  # training moved the weights
    for (name, a), (_, b) in zip(full.policy.named_parameters(), resumed.policy.named_parameters()):
        assert torch.equal(a, b), name
    opt_a = torch.load(tmp_path / "full" / "checkpoint" / "optimizer.bin", weights_only=False)["state"]
    opt_b = torch.load(tmp_path / "cut" / "checkpoint" / "optimizer.bin", weights_only=False)["state"]
    assert opt_a.keys() == opt_b.keys()
    for k in opt_a:
        assert torch.equal(opt_a[k]["exp_avg_sq"], opt_b[k]["exp_avg_sq"])
    steps = [json.loads(l)["step"] for l in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 17))  # no step lost or duplicated


def test_non_finite_loss_stops_and_keeps_checkpoint(tmp_path):
    calls = {"n": 0}

    def explodes_later(prompts, completions, **_):
        calls["n"] += 1
        if calls["n"] < 3:
            return ones_share(prompts, completions)
        # finite rewards (reward functions refuse inf) whose group statistics overflow float32
        return [3e38 * (-1) ** i for i in range(len(completions))]

    clean = make_trainer(tmp_path / "clean", steps=2, ppo_epochs=1, num_minibatches=1)
    clean.train()
    run = tmp_path / "run"
    trainer = make_trainer(run, rewards=[RewardFunction("explodes", explodes_later)], ppo_epochs=1, num_minibatches=1)
    with pytest.raises(FloatingPointError, match=r"non-finite loss .* at step 2; the last good checkpoint"):
        trainer.train()
    assert json.loads((run / "checkpoint" / "trainer_state.json").read_text())["step"] == 2
    # the checkpoint is the one written after step 2, identical to a clean two-step run's
    digest = lambda d: hashlib.sha256((d / "checkpoint" / "model.safetensors").read_bytes()).hexdigest()
    assert digest(run) == digest(tmp_path / "clean")
    assert not (run / "checkpoint.tmp").exists()


def test_bad_reward_function_is_named(tmp_path):
    def two_only(prompts, completions, **_):
        return [0.0, 1.0]

    trainer = make_trainer(tmp_path, rewards=[RewardFunction("two_only", two_only)])
    with pytest.raises(RewardError, match=r"reward function 'two_only' returned 2 rewards for 8 completions"):
        trainer.train()


@pytest.mark.parametrize("estimator,extra", [
    ("gae", {}), ("reinforce_pp", {"beta": 0.1, "kl_in_reward": True}), ("dr_grpo", {"beta": 0.1}),
    # 24 tokens: at 12 every sample of the random model is truncated, and masked out
    ("rloo", {"mask_truncated": True, "loss_agg": "seq-mean-token-sum-norm", "max_tokens": 24}),
])
def test_each_estimator_trains_and_logs(tmp_path, estimator, extra):
    from ponder.train.policy_loss import aggregate
    from ponder.train.rl_batch import response_logprobs

    distinct = RewardFunction("distinct", lambda prompts, completions, **_: [len(set(c)) / 12 for c in completions])
    trainer = make_trainer(tmp_path, rewards=[distinct], estimator=estimator, steps=1, ppo_epochs=1,
                           num_minibatches=1, lr=1e-4, **extra)
    out = trainer.train()
    rec = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("reward", "accuracy", "entropy", "clip_frac", "response_length", "tokens_per_s", "loss"):
        assert key in rec and rec[key] == rec[key], key  # present and not NaN
    assert ("kl" in rec) == ("beta" in extra)
    assert ("value_loss" in rec) == (estimator == "gae")
    assert out["rl_steps"] == 1
    assert (tmp_path / "model" / "config.json").exists()

    # The logged loss, by hand from the logged batch: at the first step the policy is the
    # sampler and the reference (ratio 1, KL 0), so the clipped surrogate is -agg(A); GAE adds
    # vf_coef * 0.5 * token-mean(R^2), its value head starting at zero.
    [mb] = trainer._cache[1]
    adv, mask, cfg = mb["advantages"], mb["mask"], trainer.cfg
    agg = lambda x: aggregate(x, mask, cfg.loss_agg, norm=cfg.max_tokens, num_tokens=mb["num_tokens"],  # noqa: E731
                              num_seqs=mb["num_seqs"]).item()
    expected = -agg(adv)
    if estimator == "gae":
        expected += cfg.vf_coef * 0.5 * aggregate(mb["returns"] ** 2, mask, "token-mean").item()
        assert rec["value_loss"] > 0
    assert adv.abs().sum() > 0
    assert rec["loss"] == pytest.approx(expected, abs=1e-6)
    if "beta" in extra:
        assert rec["kl"] == pytest.approx(0.0, abs=1e-6)
    # The step moved the policy toward the samples with positive advantage: the importance-
    # weighted surrogate agg(A * pi_new / pi_old) over that batch rose above agg(A).
    init = build_tiny_model(build_char_tokenizer(), "1m", seed=0)
    with torch.no_grad():
        before = response_logprobs(init, mb, cfg.temperature)[0]
        after = response_logprobs(trainer.policy, mb, cfg.temperature)[0]
    gain = agg(adv * torch.exp(after - before)) - agg(adv)
    assert gain > 0, gain


def test_step_token_ends_char_tokenizer():
    tok = build_char_tokenizer()
    text = "1+2\n3\nAnswer: 3"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    steps, ends = step_token_ends(tok, ids, text, "\n")
    assert steps == ["1+2", "3", "Answer: 3"]
    assert ends == [2, 4, 14]


class ScriptedSteps:
    """A process scorer that likes steps of odd length."""

    def score_steps(self, prompts, steps):
        return [[float(len(s) % 2) for s in row] for row in steps]


def test_process_grpo_rollout_uses_step_scores(tmp_path):
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, "1m", seed=0)
    cfg = RLConfig(estimator="process_grpo", steps=1, prompts_per_step=2, group_size=4, max_tokens=16, seed=1)
    trainer = RLTrainer(model, tok, TASK, PROBLEMS, [], [], cfg, tmp_path, process_scorer=ScriptedSteps(),
                        progress=False)
    [mb] = trainer.rollout(0)
    adv, mask = mb["advantages"], mb["mask"]
    assert (adv * (1 - mask)).abs().sum() == 0
    # within a row, advantages only change where a step ends (they are suffix sums over steps)
    groups = trainer._sample_groups(0, 0)
    rows = [x for g in groups for x in g]
    for i, x in enumerate(rows):
        ends = set(x["step_ends"])
        n = x["sample"].num_tokens
        for t in range(1, n):
            if t - 1 not in ends:
                assert adv[i, t] == pytest.approx(adv[i, t - 1].item())


class ScriptedSamples:
    """An engine that answers every prompt with the same fixed completions, one per sample."""

    def __init__(self, tokenizer, texts):
        self.samples = []
        for text in texts:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            self.samples.append(Sample(text=text, token_ids=ids, logprobs=None, finish_reason="stop",
                                       num_tokens=len(ids)))

    def update_weights(self, named_parameters):
        pass

    def generate(self, prompts, params):
        assert params.n == len(self.samples)
        return [list(self.samples) for _ in prompts]


def test_process_grpo_advantages_of_several_steps_per_row(tmp_path):
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, "1m", seed=0)
    cfg = RLConfig(estimator="process_grpo", steps=1, prompts_per_step=1, group_size=2, max_tokens=16, seed=1)
    # an outcome reward that differs between the rows: process supervision must not use it
    outcome = RewardFunction("outcome", lambda prompts, completions, **_: [5.0 * len(c) for c in completions])
    trainer = RLTrainer(model, tok, TASK, PROBLEMS, [], [outcome], cfg, tmp_path, process_scorer=ScriptedSteps(),
                        progress=False)
    trainer._can_skip_zero_rows = lambda: False
    # one character per token; steps and the token at which each ends:
    #   row 0 "12\n3\n45": "12" (even: 0) ends at 1, "3" (odd: 1) at 3, "45" (0) at 6
    #   row 1 "7\n89":     "7" (1) ends at 0, "89" (0) at 3
    trainer.generator = ScriptedSamples(tok, ["12\n3\n45", "7\n89"])
    [mb] = trainer.rollout(0)
    # DeepSeekMath §4.1.3: the group's step rewards {0, 1, 0, 1, 0} are normalised together
    # (mean 0.4, unbiased std sqrt(0.3)); token t gets the sum over steps ending at or after t
    hi, lo = 0.6 / 0.3 ** 0.5, -0.4 / 0.3 ** 0.5
    expected = [[2 * lo + hi, 2 * lo + hi, hi + lo, hi + lo, lo, lo, lo],
                [hi + lo, lo, lo, lo, 0.0, 0.0, 0.0]]
    assert mb["advantages"].tolist()[0] == pytest.approx(expected[0], abs=1e-5)
    assert mb["advantages"].tolist()[1] == pytest.approx(expected[1], abs=1e-5)
    assert expected[0][0] == pytest.approx(-0.36515, abs=1e-5)


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_dropping_zero_advantage_rows_keeps_loss_and_gradient(tmp_path, agg):
    from ponder.train.rl_batch import drop_zero_rows

    def half_flat(prompts, completions, **_):
        # groups of prompts with a product all get 0.7: zero advantage, although float32's mean
        # of eight 0.7 is one ulp off 0.7
        return [0.7 if "*" in p else len(set(c)) / 12 for p, c in zip(prompts, completions)]

    trainer = make_trainer(tmp_path, rewards=[RewardFunction("half", half_flat)], prompts_per_step=4, group_size=8,
                           ppo_epochs=1, num_minibatches=1, loss_agg=agg)
    trainer._can_skip_zero_rows = lambda: False
    [full] = trainer.rollout(0)
    small = drop_zero_rows(full)
    flat_groups = sum("*" in trainer.task.prompt(p) for p in trainer._prompts(0, 0))
    assert 0 < flat_groups < 4
    assert small["mask"].shape[0] == full["mask"].shape[0] - 8 * flat_groups
    results = []
    for mb in (full, small):
        trainer.policy.zero_grad()
        loss, _ = trainer.loss_fn(trainer.policy, mb)
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in trainer.policy.parameters()]))
    # on-policy the loss value is -mean(A) ~ 0; the gradient is what matters
    assert results[0][0] == pytest.approx(results[1][0], abs=1e-6)
    assert sum(g.abs().sum() for g in results[0][1]) > 0
    for a, b in zip(results[0][1], results[1][1]):
        assert torch.allclose(a, b, atol=1e-7, rtol=1e-4)


def test_lora_trains_adapters_only_and_saves_merged_model(tmp_path):
    pytest.importorskip("peft", reason="LoRA needs the optional peft package (pip install 'ponder[lora]')")
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, "1m", seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = RLConfig(steps=2, prompts_per_step=2, group_size=4, max_tokens=12, lr=1e-2, beta=0.1, save_every=0,
                   eval_every=0, seed=3, lora_r=4, lora_alpha=8)
    distinct = RewardFunction("distinct", lambda prompts, completions, **_: [len(set(c)) / 12 for c in completions])
    trainer = RLTrainer(model, tok, TASK, PROBLEMS, [], [distinct], cfg, tmp_path, progress=False)
    trainable = [n for n, p in trainer.peft.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    trainer.train()
    rec = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["kl"] > 0  # the reference is the base model with the adapters switched off
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert set(merged.state_dict()) == set(before)
    changed = [k for k, v in merged.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(k.endswith("proj.weight") for k in changed)


def test_shared_prompt_forward_matches_full_rows(tmp_path):
    from ponder.train.rl_batch import response_logprobs, shared_prompt_logits

    trainer = make_trainer(tmp_path, rewards=[RewardFunction("distinct", lambda prompts, completions, **_: [
        len(set(c)) / 12 for c in completions])], ppo_epochs=1, num_minibatches=1, prompts_per_step=3)
    [mb] = trainer.rollout(0)
    model = trainer.policy
    assert shared_prompt_logits(model, mb) is not None  # 3 prompts x 4 samples share prompts
    grads = []
    for shared in (True, False):
        model.zero_grad()
        if shared:
            logp, ent, _ = response_logprobs(model, mb, 1.0)
        else:
            import ponder.train.rl_batch as rb

            saved, rb.shared_prompt_logits = rb.shared_prompt_logits, lambda policy, batch: None
            try:
                logp, ent, _ = response_logprobs(model, mb, 1.0)
            finally:
                rb.shared_prompt_logits = saved
        (logp * mb["mask"]).sum().backward()
        grads.append((logp.detach(), [p.grad.clone() for p in model.parameters()]))
    assert torch.allclose(grads[0][0] * mb["mask"], grads[1][0] * mb["mask"], atol=1e-5)
    for a, b in zip(grads[0][1], grads[1][1]):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
