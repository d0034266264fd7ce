"""Rollouts from a partial solution: the one primitive every process labeller shares.

A *state* is a problem plus a prefix of solution steps. Completing it `k` times with the
policy and checking each completion against the gold answer gives the Monte Carlo estimate
MC(state) = (completions reaching the gold answer) / k, the quantity both Math-Shepherd and
OmegaPRM label steps with. All states of a round are completed in one batched `generate`
call (`n=k` samples share one prefill of their state), never one rollout per forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass

from ponder.generation.base import Generator, SamplingParams
from ponder.tasks.base import Problem, Task


@dataclass
class Rollout:
    steps: list[str]
    """the completion's steps (after the state's prefix)"""
    correct: bool
    """the full solution (prefix + completion) reaches the gold answer"""
    num_tokens: int
    """generated tokens"""


def join_prefix(task: Task, steps: list[str]) -> str:
    """Text of a step prefix as the policy continues it: steps joined by the delimiter, with a
    trailing delimiter so the next token starts a new step ("" for the empty prefix)."""
    return "".join(s + task.step_delimiter for s in steps)


def continuation_prompts(generator: Generator, task: Task, states: list[tuple[Problem, list[str]]]) -> list[list[int]]:
    """Model-ready token ids continuing each state's `steps`: the task prompt's ids (chat
    template applied once) followed by the ids of the prefix text. The prefix is tokenised
    on its own, so the prompt/answer boundary is exactly where generation starts; steps come
    from split sample texts, so their ids are re-tokenised (exact for character-level models,
    the usual tokenisation of that text for BPE ones)."""
    prompts = generator.prompt_ids([task.prompt(p) for p, _ in states])
    prefixes = [join_prefix(task, steps) for _, steps in states]
    nonempty = [i for i, t in enumerate(prefixes) if t]
    for i, ids in zip(nonempty, generator.tokenize([prefixes[i] for i in nonempty])):
        prompts[i] = prompts[i] + ids
    return prompts


def complete_states(
    generator: Generator,
    task: Task,
    states: list[tuple[Problem, list[str]]],
    k: int,
    temperature: float,
    max_tokens: int,
    seed: int,
) -> list[list[Rollout]]:
    """k rollouts from each (problem, prefix steps) state, in one batched call."""
    if not states:
        return []
    prompts = continuation_prompts(generator, task, states)
    params = SamplingParams(n=k, temperature=temperature, max_tokens=max_tokens, seed=seed, logprobs=False)
    outs = generator.generate(prompts, params)
    result = []
    for (problem, steps), samples in zip(states, outs):
        rolls = []
        for s in samples:
            full = join_prefix(task, steps) + s.text
            rolls.append(Rollout(task.split_steps(s.text), task.is_correct(problem, full), s.num_tokens))
        result.append(rolls)
    return result


def mc_estimate(rollouts: list[Rollout]) -> float:
    """MC(s): the fraction of rollouts from s that reach the gold answer (Math-Shepherd eq. 5
    soft estimate; OmegaPRM §3.2)."""
    return sum(r.correct for r in rollouts) / len(rollouts) if rollouts else 0.0
