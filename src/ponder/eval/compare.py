"""Where two engines' greedy completions part, and why.

Two engines running the same weights in fp32 can still disagree: another kernel, batch shape
or summation order rounds differently in the last bit, and a greedy argmax sitting on a
near-exact tie flips; from there the completions diverge. `greedy_differences` finds the
first differing token of each pair and the reference engine's log-probability margin between
the two candidates there. A margin near zero is such a near-tie; a large one is a real bug
(a wrong prompt, template, tokenisation or weight).
"""
from __future__ import annotations

NEAR_TIE = 1e-3


def greedy_differences(engine, prompt_ids: list[list[int]], ours: list[list[int]], theirs: list[list[int]]) -> list[dict]:
    """For each prompt whose two greedy completions (token ids) differ: where, which tokens,
    and `engine`'s logprob margin between them at that position, `why` being "near-tie"
    (margin below NEAR_TIE), "MISMATCH" or "one stopped earlier"."""
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
                    "why": "near-tie" if abs(lp_a - lp_b) < NEAR_TIE else "MISMATCH"})
    return out
