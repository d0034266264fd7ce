"""`budget_forcing`: control how long a model thinks (s1, Muennighoff et al. 2025, "s1:
Simple test-time scaling", §3.1).

For models that think in a delimited block (`<think> ... </think>`, then the answer):

- to think longer, each time the model tries to close the block, the closing string is
  suppressed and `wait` ("Wait") is appended instead, N times; the model usually re-checks
  its reasoning;
- to think less, the block is cut at `think_tokens` generated tokens and closed by force.

Then the block is closed and the model writes its answer. The thinking is continued from
its token ids, so the model sees exactly what it wrote plus the tokens of "Wait". With
N = 0 and no cap this is plain sampling.
"""
from __future__ import annotations

from ponder.generation.base import SamplingParams
from ponder.search.base import Candidate, SearchParams, SearchContext, register_strategy, seed_for
from ponder.search.steps import generate, root_ids
from ponder.tasks.base import Problem


@register_strategy("budget_forcing")
def budget_forcing(ctx: SearchContext, problem: Problem, cfg: SearchParams):
    if cfg.n < 0 or cfg.think_tokens < 0:
        raise ValueError(f"budget_forcing: n (extensions) and think_tokens must be >= 0, "
                         f"got n={cfg.n}, think_tokens={cfg.think_tokens}")
    if not cfg.think_end:
        raise ValueError("budget_forcing: think_end must be the string that closes the thinking block, e.g. '</think>'")
    root = root_ids(ctx, problem)
    wait_ids, end_ids = ctx.generator.tokenize([cfg.wait, cfg.think_end])
    cap = cfg.think_tokens or cfg.max_tokens
    text, ids, used, waits, call = "", [], 0, 0, 0
    while True:
        params = SamplingParams(n=1, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=max(cap - used, 1),
                                stop=[cfg.think_end], seed=seed_for(cfg.seed, problem, call), logprobs=False)
        [[s]] = generate(ctx, [root + ids], params)
        text, used, call = text + s.text, used + s.num_tokens, call + 1
        ids = ids + _before_stop(ctx, s)
        if s.stop_reason == cfg.think_end and waits < cfg.n and used < cap:
            text, ids = text + cfg.wait, ids + wait_ids  # suppress the end of thinking: think on
            waits += 1
            continue
        if s.stop_reason is None and s.finish_reason == "stop":  # EOS: the model ended without closing
            return [Candidate(text, ctx.task.extract_answer(text))], 0
        break  # closed on its own with no extensions left, or cut at the budget
    text, ids = text + cfg.think_end, ids + end_ids
    answer_budget = max(cfg.max_tokens - used, 1)
    params = SamplingParams(n=1, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=answer_budget,
                            seed=seed_for(cfg.seed, problem, call), logprobs=False)
    [[s]] = generate(ctx, [root + ids], params)
    text += s.text
    return [Candidate(text, ctx.task.extract_answer(text.split(cfg.think_end)[-1]))], 0


def _before_stop(ctx: SearchContext, sample) -> list[int]:
    """The sample's token ids without the tokens that formed its stop string (the text
    already leaves it out): re-tokenised only when a stop string ended it, since a token
    may straddle the stop."""
    if sample.stop_reason is None:
        return list(sample.token_ids)
    return ctx.generator.tokenize([sample.text])[0] if sample.text else []
