"""Fixtures shared by the test suites (`make test` and `make test-engines`).

`tiny_dir`: a random tiny character-level Llama saved once per session (commands that only
need some model to run on).

`arith_policy`: a tiny character-level Llama fine-tuned on `arith` reference solutions for
a few hundred steps (about a minute on 2 cores), once per session, so that comparisons
between engines are made on a policy that solves some problems and fails others - a
random model's accuracy is 0 on every engine and proves nothing.
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
    from ponder.train.sft import SFTConfig, SFTTrainer, reference_rows

    run = tmp_path_factory.mktemp("arith_policy")
    torch.manual_seed(0)
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, "1m", seed=0)
    rows = reference_rows(get_task("arith", instruction=False), 20000, seed=0)
    cfg = SFTConfig(lr=3e-3, steps=POLICY_STEPS, warmup_steps=30, seed=0, save_every=POLICY_STEPS, batch_size=32)
    SFTTrainer(model, tok, rows, cfg, run, progress=False).train()
    return str(run / "model")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """Folder of a random `tiny:1m` model and its character tokenizer."""
    from ponder.models import build_char_tokenizer, build_tiny_model

    d = tmp_path_factory.mktemp("tiny")
    tok = build_char_tokenizer()
    build_tiny_model(tok, "1m", seed=0).save_pretrained(d)
    tok.save_pretrained(d)
    return d
