"""Same answers across engines, and RL weight sync into vLLM, on a trained arith policy.

1. Greedy eval of the policy (tests/conftest.py: a tiny Llama fine-tuned on `arith`) on 64
   held-out problems through the torch engine, offline vLLM and a real vLLM OpenAI server
   (a subprocess on a free loopback port, reached through ponder's HTTP engine): the same
   accuracy. Completions that differ are printed with the position and the torch engine's
   logprob margin there; a difference that is not a near-tie fails.
2. `ponder rl` with `engine="vllm"`: after RL steps, vLLM's logprobs of a fresh batch equal
   the trainer's recomputed ones (importance ratio 1 within LOGPROB_TOL) and differ from the
   initial policy's, so the weight push is what made them agree.
"""
from __future__ import annotations

import pytest
import torch

from conftest import vllm_server
from ponder.eval.compare import greedy_differences
from ponder.eval import EvalConfig, evaluate
from ponder.generation import SamplingParams, make_engine
from ponder.tasks import get_task

TASK = get_task("arith", instruction=False)
LOGPROB_TOL = 1e-3  # same weights, fp32, vLLM's fused CPU kernels vs PyTorch


def test_same_greedy_accuracy_on_torch_vllm_and_vllm_serve(arith_policy, tmp_path):
    problems = TASK.problems("test", n=64, seed=0)
    cfg = EvalConfig(n=64, k=0, max_tokens=80)
    local = make_engine("torch", arith_policy)
    ref = evaluate(local, TASK, problems, cfg)
    ids = local.prompt_ids([TASK.prompt(p) for p in problems])
    ref_ids = local.tokenize([r["greedy"] for r in ref["records"]])
    results = {}
    with make_engine("vllm", arith_policy, seed=0) as engine:
        results["vllm"] = evaluate(engine, TASK, problems, cfg)
    with vllm_server(arith_policy, "policy", tmp_path / "server.log") as root, \
            make_engine(f"{root}/v1", "policy") as engine:
        assert engine.owner == "vllm" and not engine.chat  # no chat template: plain completions
        results["vllm serve"] = evaluate(engine, TASK, problems, cfg)
        assert engine.usage.generated_tokens == pytest.approx(results["vllm serve"]["summary"]["mean_tokens"] * len(problems))
    acc = ref["summary"]["greedy_accuracy"]
    assert 0 < acc < 1
    for name, out in results.items():
        diffs = greedy_differences(local, ids, ref_ids, local.tokenize([r["greedy"] for r in out["records"]]))
        print(f"greedy accuracy torch {acc:.3f}, {name} {out['summary']['greedy_accuracy']:.3f}; "
              f"differing completions: {diffs}")
        assert not [d for d in diffs if d["why"] == "MISMATCH"], name
        assert out["summary"]["greedy_accuracy"] == acc, name


def test_rl_pushes_weights_into_vllm(tmp_path):
    from ponder.models import build_char_tokenizer, build_tiny_model
    from ponder.rewards.functions import RewardFunction
    from ponder.train.rl import RLConfig, RLTrainer
    from ponder.train.rl_batch import response_logprobs

    tok = build_char_tokenizer()
    policy = build_tiny_model(tok, "1m", seed=0)
    initial = make_engine("torch", build_tiny_model(tok, "1m", seed=0).eval(), tokenizer=tok)
    cfg = RLConfig(steps=2, prompts_per_step=2, group_size=4, max_tokens=12, lr=3e-3, save_every=0, eval_every=0)
    ones = RewardFunction("ones", lambda prompts, completions, **_: [c.count("1") / (len(c) + 1) for c in completions])
    trainer = RLTrainer(policy, tok, TASK, TASK.problems("train", n=8, seed=0), [], [ones], cfg, tmp_path,
                        progress=False, engine="vllm")
    try:
        trainer.train()
        trainer._sync_weights()
        ids = [tok(p)["input_ids"] for p in ("3+4*2", "(8-3)*2", "9-2-1")]
        samples = trainer.generator.generate(ids, SamplingParams(n=2, temperature=1.0, max_tokens=10, seed=5))
        rows = [{"prompt_ids": p, "sample": s} for p, group in zip(ids, samples) for s in group]
        batch = trainer._tensorize(rows)
        with torch.no_grad():
            trainer_lp = response_logprobs(trainer.policy, batch, 1.0)[0][batch["mask"].bool()]
        sampler_lp = torch.tensor([v for x in rows for v in x["sample"].logprobs])
        gap = (sampler_lp - trainer_lp).abs().max().item()
        before = torch.tensor([v for x in rows for v in initial.logprobs([x["prompt_ids"]], [x["sample"].token_ids])[0]])
        stale = (before - trainer_lp).abs().max().item()
        print(f"RL through vLLM: max |sampler - trainer| logprob {gap:.2e}; vs the initial policy {stale:.2e}; "
              f"weight sync {trainer.timing['sync_s']:.2f} s in all")
        assert gap < LOGPROB_TOL  # importance ratio exp(gap) ~ 1
        assert stale > 10 * LOGPROB_TOL  # without the sync the sampler would be the initial policy
    finally:
        trainer.generator.close()
