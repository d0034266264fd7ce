"""Fixtures shared by the test suites (`make test` and `make test-engines`).

`arith_policy`: a tiny character-level Llama fine-tuned on `arith` reference solutions for
a few hundred steps (about a minute on 2 cores), once per session, so that comparisons
between engines are made on a policy that solves some problems and fails others - a
random model's accuracy is 0 on every engine and proves nothing.

`greedy_differences` explains where two engines' greedy completions part: the first token
that differs and the torch engine's log-probability margin between the two tokens there. A
margin near zero is a near-tie that floating-point differences (another kernel, batch
shape or summation order) can flip; a large margin would be a real bug.
"""
from __future__ import annotations

import pytest

POLICY_STEPS = 400


@pytest.fixture(scope="session")
def arith_policy(tmp_path_factory) -> str:
    """Folder of the fine-tuned tiny arith policy (bare-expression prompts)."""
    import torch

    from ponder.models import build_char_tokenizer, build_tiny_model
    from ponder.tasks import get_task
    from ponder.train.loop import TrainConfig
    from ponder.train.sft import reference_rows, train_sft

    run = tmp_path_factory.mktemp("arith_policy")
    torch.manual_seed(0)
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, "1m", seed=0)
    rows = reference_rows(get_task("arith", instruction=False), 20000, seed=0)
    cfg = TrainConfig(lr=3e-3, max_steps=POLICY_STEPS, warmup_steps=30, seed=0, eval_every=0, save_every=POLICY_STEPS)
    train_sft(model, tok, rows, run, cfg, batch_size=32, progress=False)
    return str(run / "model")


def greedy_differences(engine, prompt_ids: list[list[int]], ours: list[list[int]], theirs: list[list[int]]) -> list[dict]:
    """For each prompt whose two greedy completions (token ids) differ: where, which tokens,
    and `engine`'s logprob margin between them at that position (see the module docstring)."""
    out = []
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a == b:
            continue
        k = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        if k >= min(len(a), len(b)):  # one is a prefix of the other: they stopped differently
            out.append({"prompt": i, "position": k, "margin": None, "why": "one stopped earlier"})
            continue
        prefix = prompt_ids[i] + a[:k]
        lp_a, lp_b = (engine.logprobs([prefix], [[t]], temperature=1.0)[0][0] for t in (a[k], b[k]))
        out.append({"prompt": i, "position": k, "tokens": (a[k], b[k]), "margin": abs(lp_a - lp_b),
                    "why": "near-tie" if abs(lp_a - lp_b) < 1e-3 else "MISMATCH"})
    return out
