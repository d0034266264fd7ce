"""`budget_forcing`: control how long a model thinks (s1, Muennighoff et al. 2025, "s1:
Simple test-time scaling", §3.1).

For models that think in a delimited block (`<think> ... </think>`, then the answer):

- to think longer, each time the model tries to close the block, the closing string is
  suppressed and `wait` ("Wait") is appended instead, N times; the model usually re-checks
  its reasoning;
- to think less, the block is cut at `think_tokens` generated tokens and closed by force.

Then the block is closed and the model writes its answer. The thinking text is continued
verbatim (`formatted=True`), so the model sees exactly what it wrote plus "Wait". With
N = 0 and no cap this is plain sampling.
"""
from __future__ import annotations

from ponder.generation.base import SamplingParams
from ponder.search.base import Candidate, SearchConfig, SearchContext, register_strategy, seed_for
from ponder.search.steps import generate, root_text
from ponder.tasks.base import Problem


@register_strategy("budget_forcing")
def budget_forcing(ctx: SearchContext, problem: Problem, cfg: SearchConfig):
    if cfg.n < 0 or cfg.think_tokens < 0:
        raise ValueError(f"budget_forcing: n (extensions) and think_tokens must be >= 0, "
                         f"got n={cfg.n}, think_tokens={cfg.think_tokens}")
    if not cfg.think_end:
        raise ValueError("budget_forcing: think_end must be the string that closes the thinking block, e.g. '</think>'")
    root = root_text(ctx, problem)
    cap = cfg.think_tokens or cfg.max_tokens
    text, used, waits, call = "", 0, 0, 0
    while True:
        params = SamplingParams(n=1, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=max(cap - used, 1),
                                stop=[cfg.think_end], seed=seed_for(cfg.seed, problem, call), logprobs=False)
        [[s]] = generate(ctx, [root + text], params)
        text, used, call = text + s.text, used + s.num_tokens, call + 1
        if s.stop_reason == cfg.think_end and waits < cfg.n and used < cap:
            text += cfg.wait  # suppress the end of thinking: think on
            waits += 1
            continue
        if s.stop_reason is None and s.finish_reason == "stop":  # EOS: the model ended without closing
            return [Candidate(text, ctx.task.extract_answer(text))], 0
        break  # closed on its own with no extensions left, or cut at the budget
    text += cfg.think_end
    answer_budget = max(cfg.max_tokens - used, 1)
    params = SamplingParams(n=1, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=answer_budget,
                            seed=seed_for(cfg.seed, problem, call), logprobs=False)
    [[s]] = generate(ctx, [root + text], params)
    text += s.text
    return [Candidate(text, ctx.task.extract_answer(text.split(cfg.think_end)[-1]))], 0
