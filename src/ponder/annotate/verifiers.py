"""Step verifiers built without step labels, as scorers a search can use at test time.

- `RolloutVerifier`: Math-Shepherd's Monte Carlo estimate (Wang et al. 2023, §3.3) computed at
  test time. The value of the prefix through step i is the fraction of K completions from it
  that the task's outcome check accepts; a step scored 0 (no completion succeeded, the "hard
  estimation") is predicted wrong, and so is every step after it. It needs an outcome check
  and nothing else: on countdown that check reads only the problem's numbers and target, so
  the verifier is deployable; on a task whose `is_correct` compares with a gold answer
  (GSM8K) it is a labeller, not a test-time verifier.
- `StepJudge`: a generative step verifier, the LLM-as-judge of process supervision (Zheng et
  al. 2024, "ProcessBench", §4.2 critic models; Zhang et al. 2024, "Generative Verifiers"):
  a model is shown the problem, the steps so far and one more step, asked whether that step
  is correct, and the step's score is P(yes) / (P(yes) + P(no)) read from its teacher-forced
  log-probabilities of the two answers. Any engine with `logprobs` can be the judge.

Both count what they spend in `usage.tokens` (prefill + generated tokens of their own engine),
so a search reports them as scorer compute. Give each an engine of its own, not the search's
policy engine, or the policy's counter would count the verifier's tokens a second time
(`ponder.search.scorers.load_scorer` opens one). Both keep what they computed per (prompt,
step prefix) for the length of one search (`start_search` forgets a prompt's), so a
step-level search that rescores a growing solution pays for each prefix once while a sweep's
cells still each pay for their own; and the rollouts of a prefix are seeded by the prefix
itself, so a score does not depend on what else was scored in the same call.
"""
from __future__ import annotations

import math
import threading

from ponder.annotate.rollouts import join_prefix
from ponder.generation.base import Generator, SamplingParams
from ponder.rewards.base import Scorer, ScorerUsage
from ponder.seeds import derive
from ponder.tasks.answers import FINAL_MARKER
from ponder.tasks.base import Problem, Task


ROLLOUTS = 8
"""rollouts per step prefix when none is given (the k of Math-Shepherd's and the demo's labels)"""


def _spent(generator: Generator, before) -> int:
    used = generator.usage - before
    return used.prefill_tokens + used.generated_tokens


class RolloutVerifier(Scorer):
    """MC(prefix) from `k` rollouts of the policy per step prefix (see the module docstring).

    `estimate`: "hard" scores a step 1.0 when any rollout succeeds, else 0.0 (Math-Shepherd's
    hard estimation); "soft" scores it by the fraction that succeed. `early_stop`: stop rolling
    out a solution at its first step scored 0 (every later step is then 0 without rollouts,
    as a wrong step cannot be made right by later ones); off, every prefix is rolled out.
    A step that carries a final-answer marker (`Answer:`, `\\boxed`, ...) ends the solution:
    it is scored by the outcome check itself, as Math-Shepherd labels a last step, with no
    rollouts; any other step, a partial solution's last one included (a node of a tree
    search), is rolled out."""

    def __init__(self, generator: Generator, task: Task, problems: list[Problem], k: int = ROLLOUTS,
                 temperature: float = 1.0, max_tokens: int = 256, estimate: str = "hard", early_stop: bool = True,
                 seed: int = 0):
        if k < 1:
            raise ValueError(f"rollout verifier: k (rollouts per step) must be >= 1, got {k}")
        if estimate not in ("hard", "soft"):
            raise ValueError(f"rollout verifier: estimate must be 'hard' or 'soft', got {estimate!r}")
        if max_tokens < 1 or temperature < 0:
            raise ValueError(f"rollout verifier: max_tokens must be >= 1 and temperature >= 0, got {max_tokens}, "
                             f"{temperature}")
        self.generator, self.task, self.k, self.temperature = generator, task, k, temperature
        self.max_tokens, self.estimate, self.early_stop, self.seed = max_tokens, estimate, early_stop, seed
        self.by_prompt = {task.prompt(p): p for p in problems}
        self.usage = ScorerUsage()
        self.rollouts = 0
        """rollouts generated so far"""
        self._values: dict[tuple[str, tuple[str, ...]], float] = {}
        self._lock = threading.Lock()

    def start_search(self, prompt: str) -> None:
        with self._lock:  # a batched search starts problems on threads of their own
            self._values = {k: v for k, v in self._values.items() if k[0] != prompt}

    def _problem(self, prompt: str) -> Problem:
        try:
            return self.by_prompt[prompt]
        except KeyError:
            raise KeyError(f"rollout verifier: prompt not among the problems it was given: {prompt[:80]!r}") from None

    def _roll_out(self, states: list[tuple[str, tuple[str, ...]]]) -> None:
        """Fill `_values` for the (prompt, prefix) states not yet known, in one batched call:
        each state is one prompt with n=k, so its prefix is prefilled once for its k rollouts.
        A prefix ending in a final answer is checked instead."""
        todo = []
        for state in dict.fromkeys(s for s in states if s not in self._values):
            prompt, steps = state
            if FINAL_MARKER.search(steps[-1]):
                self._values[state] = float(self.task.is_correct(self._problem(prompt), join_prefix(self.task, list(steps))))
            else:
                todo.append(state)
        if not todo:
            return
        prompts = self.generator.prompt_ids([p for p, _ in todo])
        prefixes = [join_prefix(self.task, list(steps)) for _, steps in todo]
        for i, ids in enumerate(self.generator.tokenize(prefixes)):
            prompts[i] = prompts[i] + ids
        params = SamplingParams(n=self.k, temperature=self.temperature, max_tokens=self.max_tokens, logprobs=False)
        before = self.generator.usage.copy()
        outs = self.generator.generate(prompts, params, seeds=[derive(self.seed, "rollout", p, prefix)
                                                              for (p, _), prefix in zip(todo, prefixes)])
        self.usage.tokens += _spent(self.generator, before)
        self.usage.calls += 1
        for (prompt, steps), prefix, samples in zip(todo, prefixes, outs):
            problem = self._problem(prompt)
            wins = sum(self.task.is_correct(problem, prefix + s.text) for s in samples)
            self.rollouts += len(samples)
            self._values[(prompt, steps)] = (float(wins > 0) if self.estimate == "hard" else wins / len(samples))

    def score_steps(self, prompts: list[str], steps: list[list[str]]) -> list[list[float]]:
        with self._lock:
            return self._score_steps(prompts, steps)

    def _score_steps(self, prompts: list[str], steps: list[list[str]]) -> list[list[float]]:
        for p in prompts:
            self._problem(p)
        out = [[0.0] * len(st) for st in steps]
        live = [j for j, st in enumerate(steps) if st]
        depth = 0
        # One batched call per step position: position i of every solution still live.
        while live:
            depth += 1
            states = [(prompts[j], tuple(steps[j][:depth])) for j in live]
            self._roll_out(states)
            still = []
            for j, state in zip(live, states):
                out[j][depth - 1] = self._values[state]
                if depth < len(steps[j]) and not (self.early_stop and self._values[state] <= 0):
                    still.append(j)
            live = still
        return out

    def score_outcomes(self, prompts: list[str], completions: list[str]) -> list[float]:
        """The last step's value: the outcome check for a solution that ends in a final
        answer, the Monte Carlo value of the whole text for one that does not."""
        scores = self.score_steps(prompts, [self.task.split_steps(c) or [""] for c in completions])
        return [s[-1] if s else 0.0 for s in scores]


JUDGE_STEP_TEMPLATE = (
    "Problem: {question}\n"
    "{previous}"
    "Next step: {step}\n"
    "Is the next step correct? Answer yes or no.\n"
)


class StepJudge(Scorer):
    """A generative step verifier over any engine that scores completions (see the module
    docstring). `yes` / `no`: the two answers whose log-probabilities are compared (for a chat
    model the reply starts the assistant turn, so no leading space; for a base model, " yes")."""

    def __init__(self, generator: Generator, template: str = JUDGE_STEP_TEMPLATE, yes: str = "yes", no: str = "no"):
        if "{step}" not in template:
            raise ValueError(f"step judge template must contain {{step}} (and may use {{question}} and {{previous}}), "
                             f"got {template!r}")
        if not yes or not no or yes == no:
            raise ValueError(f"step judge: yes and no must be two different non-empty answers, got {yes!r}, {no!r}")
        self.generator, self.template, self.yes, self.no = generator, template, yes, no
        self.usage = ScorerUsage()
        self._scores: dict[tuple[str, tuple[str, ...]], float] = {}
        self._lock = threading.Lock()

    def start_search(self, prompt: str) -> None:
        with self._lock:
            self._scores = {k: v for k, v in self._scores.items() if k[0] != prompt}

    def prompt(self, question: str, steps: list[str]) -> str:
        """The question about the last of `steps`, given the ones before it."""
        previous = "".join(f"Step {i + 1}: {s}\n" for i, s in enumerate(steps[:-1]))
        return self.template.format(question=question.strip(), previous=previous, step=steps[-1])

    def score_steps(self, prompts: list[str], steps: list[list[str]]) -> list[list[float]]:
        with self._lock:
            return self._score_steps(prompts, steps)

    def _score_steps(self, prompts: list[str], steps: list[list[str]]) -> list[list[float]]:
        states = [(p, tuple(st[:i + 1])) for p, st in zip(prompts, steps, strict=True) for i in range(len(st))]
        todo = list(dict.fromkeys(s for s in states if s not in self._scores))
        if todo:
            texts = [self.prompt(p, list(st)) for p, st in todo]
            before = self.generator.usage.copy()
            lps = self.generator.logprobs(texts + texts, [self.yes] * len(texts) + [self.no] * len(texts))
            self.usage.tokens += _spent(self.generator, before)
            self.usage.calls += 1
            for i, state in enumerate(todo):
                yes, no = sum(lps[i]), sum(lps[len(todo) + i])
                self._scores[state] = 1.0 / (1.0 + math.exp(no - yes))  # P(yes) / (P(yes) + P(no))
        return [[self._scores[(p, tuple(st[:i + 1]))] for i in range(len(st))] for p, st in zip(prompts, steps)]
