"""Advantage estimators, policy losses and reward adapters against hand-computed numbers."""
import math

import pytest
import torch

from ponder.rewards.functions import (
    RewardError,
    RewardFunction,
    combine,
    load_reward_function,
    overlong_penalty,
    verl_reward,
)
from ponder.train.advantages import (
    dr_grpo_advantages,
    gae_advantages,
    grpo_advantages,
    process_grpo_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
)
from ponder.train.policy_loss import aggregate, kl_penalty, ppo_clip_loss, value_loss

R = torch.tensor([1.0, 0.0, 0.0, 0.0])
M = torch.ones(4, 2)


def test_grpo_divides_by_group_std():
    # mean 0.25, unbiased std sqrt((0.75^2 + 3 * 0.25^2) / 3) = 0.5
    adv = grpo_advantages(R, M, group_size=4)
    assert adv[:, 0].tolist() == pytest.approx([1.5, -0.5, -0.5, -0.5], abs=1e-5)
    assert torch.equal(adv[:, 0], adv[:, 1])  # every token of a completion gets its advantage


def test_grpo_group_all_equal_gives_zero():
    adv = grpo_advantages(torch.tensor([1.0, 1.0, 0.0, 0.0]), M, group_size=2)
    assert adv.abs().sum() == 0


@pytest.mark.parametrize("value,group_size", [(0.7, 8), (0.675, 8), (1 / 3, 16)])
def test_all_equal_group_gets_exactly_zero_advantage(value, group_size):
    # float32 cannot hold these values exactly: the group mean can come out one ulp off, and
    # GRPO's division by (std + eps) with std ~ 1e-8 used to turn that into +-0.056 per token
    rewards = torch.full((group_size,), value)
    mask = torch.ones(group_size, 3)
    token_rewards = torch.zeros(group_size, 3)
    token_rewards[:, -1] = rewards
    steps = [[value, value]] * group_size
    for adv in (grpo_advantages(rewards, mask, group_size), dr_grpo_advantages(rewards, mask, group_size),
                rloo_advantages(rewards, mask, group_size), reinforce_pp_advantages(token_rewards, mask),
                process_grpo_advantages(steps, [[0, 2]] * group_size, mask, group_size)):
        assert adv.abs().max().item() == 0.0


def test_all_equal_group_next_to_a_mixed_one():
    rewards = torch.tensor([0.7] * 8 + [1.0, 0.0] * 4)
    adv = grpo_advantages(rewards, torch.ones(16, 1), group_size=8)[:, 0]
    assert adv[:8].abs().max().item() == 0.0
    # mean 0.5, unbiased std sqrt(8 * 0.25 / 7)
    assert adv[8:10].tolist() == pytest.approx([0.5 / math.sqrt(2 / 7), -0.5 / math.sqrt(2 / 7)], abs=1e-5)


def test_dr_grpo_and_rloo():
    assert dr_grpo_advantages(R, M, 4)[:, 0].tolist() == pytest.approx([0.75, -0.25, -0.25, -0.25])
    # r_i minus the mean of the other three: 1 - 0, 0 - 1/3
    assert rloo_advantages(R, M, 4)[:, 0].tolist() == pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3])


def test_padding_gets_zero_advantage():
    mask = torch.tensor([[1.0, 0.0]] * 4)
    assert grpo_advantages(R, mask, 4)[:, 1].abs().sum() == 0


def test_reinforce_pp_whitens_returns_over_batch_tokens():
    token_rewards = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    # returns [1, 1] and [0]; mean 2/3, population std sqrt(2/9)
    adv = reinforce_pp_advantages(token_rewards, mask)
    s = math.sqrt(2 / 9)
    assert adv.flatten().tolist() == pytest.approx([(1 / 3) / s, (1 / 3) / s, -(2 / 3) / s, 0.0], abs=1e-4)


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 1.0]])
    values = torch.tensor([[0.5, 0.8]])
    adv, ret = gae_advantages(rewards, values, torch.ones(1, 2), gamma=1.0, lam=0.5)
    # delta_1 = 1 - 0.8 = 0.2; delta_0 = 0 + 0.8 - 0.5 = 0.3; A_0 = 0.3 + 0.5 * 0.2
    assert adv.flatten().tolist() == pytest.approx([0.4, 0.2])
    assert ret.flatten().tolist() == pytest.approx([0.9, 1.0])


def test_gae_stops_at_padding():
    rewards = torch.tensor([[1.0, 0.0]])
    adv, _ = gae_advantages(rewards, torch.tensor([[0.25, 9.0]]), torch.tensor([[1.0, 0.0]]), 1.0, 0.9)
    assert adv.flatten().tolist() == pytest.approx([0.75, 0.0])  # the padded value 9.0 is never bootstrapped


def test_process_grpo_sums_normalised_rewards_of_later_steps():
    # group of 2: step rewards {1, 0} and {1}; mean 2/3, unbiased std sqrt(1/3)
    mask = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 0]])
    adv = process_grpo_advantages([[1.0, 0.0], [1.0]], [[1, 3], [2]], mask, group_size=2)
    hi, lo = (1 / 3) / math.sqrt(1 / 3), -(2 / 3) / math.sqrt(1 / 3)
    assert adv.flatten().tolist() == pytest.approx([hi + lo, hi + lo, lo, lo, hi, hi, hi, 0.0], abs=1e-4)


def test_ppo_clip_with_clip_higher():
    old = torch.zeros(1, 4)
    logp = torch.log(torch.tensor([[1.5, 0.5, 0.5, 1.5]]))
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    loss, stats = ppo_clip_loss(logp, old, adv, torch.ones(1, 4), epsilon_low=0.2, epsilon_high=0.28)
    # 1.5 A=1 -> clipped at 1.28; 0.5 A=1 -> 0.5; 0.5 A=-1 -> clipped at 0.8; 1.5 A=-1 -> 1.5
    assert loss.flatten().tolist() == pytest.approx([-1.28, -0.5, 0.8, 1.5])
    assert stats["clip_frac"] == pytest.approx(0.5)


def test_loss_aggregations():
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    assert aggregate(loss, mask, "token-mean").item() == pytest.approx(10 / 4)
    assert aggregate(loss, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    assert aggregate(loss, mask, "seq-mean-token-sum-norm", norm=4).item() == pytest.approx((6 / 4 + 4 / 4) / 2)
    with pytest.raises(ValueError, match="unknown loss aggregation 'sum'"):
        aggregate(loss, mask, "sum")


def test_seq_mean_token_mean_leaves_out_fully_masked_rows():
    # the second row was truncated and masked out (DAPO overlong filtering): it is no sequence
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert aggregate(loss, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 7) / 2)
    # Dr. GRPO's normaliser stays a constant: every row counts
    assert aggregate(loss, mask, "seq-mean-token-sum-norm", norm=3).item() == pytest.approx((6 / 3 + 7 / 3) / 3)
    assert aggregate(loss, torch.zeros(3, 3), "seq-mean-token-mean").item() == 0.0  # no NaN from 0 / 0
    assert aggregate(loss[:0], mask[:0], "seq-mean-token-sum-norm", num_seqs=0).item() == 0.0


def test_kl_estimators():
    logp, ref = torch.log(torch.tensor([0.5])), torch.log(torch.tensor([0.25]))
    assert kl_penalty(logp, ref, "k1").item() == pytest.approx(math.log(2))
    assert kl_penalty(logp, ref, "k3").item() == pytest.approx(0.5 + math.log(2) - 1)
    assert kl_penalty(logp, logp, "k3").item() == 0


def expected_loss_gradient(estimator, logits, ref_logp):
    """d/dlogits of E_{x ~ pi}[k(x)] with the samples x held fixed, as a loss term sees it:
    sum_x pi(x) grad k(x), pi not differentiated."""
    logits = logits.clone().requires_grad_(True)
    logp = torch.log_softmax(logits, -1)
    (logp.exp().detach() * kl_penalty(logp, ref_logp, estimator)).sum().backward()
    return logits.grad


def test_kl_loss_gradients_on_a_categorical():
    logits = torch.tensor([0.3, -1.2, 0.8, 0.1], dtype=torch.float64)
    ref_logp = torch.log_softmax(torch.tensor([-0.5, 0.4, 0.2, 1.0], dtype=torch.float64), -1)
    x = logits.clone().requires_grad_(True)
    logp = torch.log_softmax(x, -1)
    (logp.exp() * (logp - ref_logp)).sum().backward()  # exact KL(pi || pi_ref)
    reverse = x.grad
    x = logits.clone().requires_grad_(True)
    logp = torch.log_softmax(x, -1)
    (ref_logp.exp() * (ref_logp - logp)).sum().backward()  # exact KL(pi_ref || pi)
    forward = x.grad
    # k2 as a loss: the gradient of the reverse KL; k1: zero; k3: the gradient of the forward KL
    assert torch.allclose(expected_loss_gradient("k2", logits, ref_logp), reverse, atol=1e-12)
    assert torch.allclose(expected_loss_gradient("k1", logits, ref_logp), torch.zeros(4, dtype=torch.float64),
                          atol=1e-12)
    assert torch.allclose(expected_loss_gradient("k3", logits, ref_logp), forward, atol=1e-12)
    assert not torch.allclose(forward, reverse, atol=1e-2)  # a distribution where the two differ
    # as a detached reward penalty, the gradient is the score-function term E_pi[k grad log pi]
    x = logits.clone().requires_grad_(True)
    logp = torch.log_softmax(x, -1)
    k = {e: kl_penalty(logp.detach(), ref_logp, e) for e in ("k1", "k3")}
    grads = [torch.autograd.grad((logp.exp().detach() * k[e] * logp).sum(), x, retain_graph=True)[0]
             for e in ("k1", "k3")]
    assert torch.allclose(grads[0], reverse, atol=1e-12)
    assert torch.allclose(grads[1], reverse - forward, atol=1e-12)


def test_kl_k2_value():
    logp, ref = torch.log(torch.tensor([0.5])), torch.log(torch.tensor([0.25]))
    assert kl_penalty(logp, ref, "k2").item() == pytest.approx(0.5 * math.log(2) ** 2)
    with pytest.raises(ValueError, match="unknown KL estimator 'k4': expected 'k1', 'k2' or 'k3'"):
        kl_penalty(logp, ref, "k4")


def test_value_loss_takes_the_clipped_max():
    v = value_loss(torch.tensor([[1.0]]), torch.tensor([[0.5]]), torch.tensor([[0.0]]), torch.ones(1, 1), clip=0.2)
    assert v.item() == pytest.approx(0.5)  # max(1.0^2, 0.7^2) / 2


def test_overlong_penalty_dapo():
    f = overlong_penalty(max_tokens=10, buffer=4)
    assert f([], [], num_tokens=[6, 8, 10, 11]) == pytest.approx([0.0, -0.5, -1.0, -1.0])


def test_reward_function_errors_name_the_function():
    def boom(prompts, completions, **_):
        raise ZeroDivisionError("bad")

    def short(prompts, completions, **_):
        return [1.0]

    with pytest.raises(RewardError, match=r"reward function 'boom' raised ZeroDivisionError: bad"):
        RewardFunction("boom", boom).call(["a", "b"], ["x", "y"], {})
    with pytest.raises(RewardError, match=r"'short' returned 1 rewards for 2 completions"):
        RewardFunction("short", short).call(["a", "b"], ["x", "y"], {})
    with pytest.raises(RewardError, match=r"'nan' returned nan for completion 0"):
        RewardFunction("nan", lambda prompts, completions, **_: [float("nan")]).call(["a"], ["x"], {})


def test_combine_skips_none_like_trl():
    out = combine({"a": [1.0, None], "b": [0.5, 2.0]}, {"a": 2.0, "b": 1.0})
    assert out == [2.5, 2.0]
    with pytest.raises(RewardError, match="completion 0: every reward function returned None"):
        combine({"a": [None]}, {"a": 1.0})


def test_verl_signature_and_file_loading(tmp_path):
    def compute_score(data_source, solution_str, ground_truth, extra_info=None):
        return {"score": float(solution_str.strip() == ground_truth), "src": data_source}

    f = verl_reward(compute_score)
    assert f(["p", "q"], ["4", "5"], answer=["4", "4"], data_source=["arith"] * 2) == [1.0, 0.0]
    path = tmp_path / "my_rewards.py"
    path.write_text("def compute_score(data_source, solution_str, ground_truth, extra_info=None):\n"
                    "    return 1.0\n\ndef short_bonus(prompts, completions, **kw):\n"
                    "    return [-len(c) for c in completions]\n")
    verl = load_reward_function(f"{path}:compute_score")
    assert verl.call(["p"], ["x"], {"answer": ["1"]}) == [1.0]
    trl = load_reward_function(f"{path}:short_bonus")
    assert trl.call(["p"], ["abc"], {"answer": ["1"]}) == [-3.0]
    with pytest.raises(ValueError, match="has no function 'nope'"):
        load_reward_function(f"{path}:nope")
