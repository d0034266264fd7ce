"""`"ponder": {"strategy": "auto", "budget": TOKENS}`: the request's checks.

The server chooses the strategy and N per request from the policy of a `ponder scale` run
(`ponder serve --auto-policy RUN`; ponder.search.auto): a probe predicts the problem's
difficulty, its bin's most accurate setting within the budget runs. The scale run's settings
fix everything a search is run with (temperature, max_tokens, beam width, scorer), since its
accuracies were measured with them; a request gives the budget, and may give a seed, the
problem (`question`) and a gold `answer` as with any strategy. `budget` counts the run's
compute: generated tokens, or total tokens (generated + prefill + scorer) for a run made with
`--compute total`; the probe's tokens count.
"""
from __future__ import annotations

import secrets
from dataclasses import fields, replace

from ponder.search.auto import AutoPolicy
from ponder.search.base import SearchParams
from ponder.serve.protocol import bad

ALLOWED = ("strategy", "budget", "seed", "task", "task_args", "answer", "question")


def parse(ext: dict, body: dict, room: int, policy: AutoPolicy | None) -> tuple[float, SearchParams]:
    """(budget, search params with the request's seed) of an `auto` request; a 400 naming the
    field for anything it cannot honour."""
    if policy is None:
        raise bad("ponder.strategy", "this server has no policy for strategy 'auto': start it with --auto-policy "
                                     "RUN, a `ponder scale` run (its directory or scale.json)")
    searched = {f.name for f in fields(SearchParams)} | {"scorer"}
    for name in ext:
        if name not in ALLOWED and name in searched:
            raise bad(f"ponder.{name}", f"'ponder.{name}' is fixed by the scale run with strategy 'auto' (its "
                                        f"settings were measured that way); give ponder.budget, and optionally seed")
    budget = ext.get("budget")
    if budget is None:
        raise bad("ponder.budget", f"strategy 'auto' needs 'ponder.budget': tokens per request "
                                   f"({_unit(policy)}, the probe included)")
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0:
        raise bad("ponder.budget", f"'ponder.budget' must be a positive number of tokens, got {budget!r}")
    least = policy.min_budget()
    if budget < least:
        worst = max(policy.labels, key=lambda b: policy.cheapest(b).tokens)
        cheap = policy.cheapest(worst)
        raise bad("ponder.budget", f"'ponder.budget' is {budget:g} tokens; the cheapest this server's policy can do "
                                   f"is {least:.0f} ({_unit(policy)}: the probe's {policy.probe_tokens:.0f} plus "
                                   f"{cheap.strategy}@{cheap.n}'s {cheap.tokens:.0f} in difficulty bin {worst})")
    if policy.params.max_tokens > room:
        raise bad("messages" if "messages" in body else "prompt",
                  f"the policy searches with max_tokens {policy.params.max_tokens}, but the model's context has room "
                  f"for {room} tokens after this prompt")
    seed = ext.get("seed", body.get("seed"))
    if seed is None:
        seed = secrets.randbits(62)  # an unseeded request draws fresh samples
    elif isinstance(seed, bool) or not isinstance(seed, int):
        raise bad("ponder.seed", f"'ponder.seed' must be an integer, got {seed!r}")
    return float(budget), replace(policy.params, seed=seed)


def _unit(policy: AutoPolicy) -> str:
    return "generated tokens" if policy.compute == "generated" else "generated + prefill + scorer tokens"
