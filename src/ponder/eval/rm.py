"""`ponder eval-rm`: how good is a reward model, on solutions sampled from a policy.

- ProcessBench-style F1 (Zheng et al. 2024, "ProcessBench", §3): predict a solution's first
  error as the first step scored below `threshold` (None if none is); accuracy on the
  erroneous solutions (predicted step == true first error) and on the fully correct ones
  (predicted None); F1 is their harmonic mean. Ground truth comes from the task's exact step
  checker.
- Best-of-N: per problem, pick the sample with the highest aggregated score among the first
  N, for N = 1, 2, 4, ...; weighted best-of-N sums the scores per distinct answer; beside
  majority vote (self-consistency) and the oracle (pass@N: any of the N right).
"""
from __future__ import annotations

from dataclasses import dataclass

from ponder.eval.evaluate import gold_vote_key
from ponder.eval.metrics import majority_vote
from ponder.generation.base import Generator, SamplingParams
from ponder.rewards.base import Scorer, aggregate
from ponder.search.base import seed_for
from ponder.search.vote import weighted_winner
from ponder.tasks.base import Problem, Task


def first_below(scores: list[float], threshold: float) -> int | None:
    """Index of the first step scored below `threshold`, or None."""
    return next((i for i, s in enumerate(scores) if s < threshold), None)


def processbench_f1(predicted: list[int | None], truth: list[int | None]) -> dict:
    """F1 = 2 * acc_err * acc_correct / (acc_err + acc_correct), where acc_err is exact
    first-error accuracy over solutions with an error and acc_correct the fraction of fully
    correct solutions predicted error-free."""
    err = [(p, t) for p, t in zip(predicted, truth, strict=True) if t is not None]
    ok = [p for p, t in zip(predicted, truth) if t is None]
    acc_err = sum(p == t for p, t in err) / len(err) if err else 0.0
    acc_ok = sum(p is None for p in ok) / len(ok) if ok else 0.0
    f1 = 2 * acc_err * acc_ok / (acc_err + acc_ok) if acc_err + acc_ok > 0 else 0.0
    return {"f1": f1, "acc_erroneous": acc_err, "acc_correct": acc_ok, "erroneous": len(err), "correct": len(ok)}


@dataclass
class SampleSet:
    """N sampled solutions per problem with their ground truth."""

    problems: list[Problem]
    prompts: list[str]
    texts: list[list[str]]
    steps: list[list[list[str]]]
    correct: list[list[bool]]
    first_error: list[list[int | None]] | None
    keys: list[list[str | None]]


def merge_samples(parts: list[SampleSet]) -> SampleSet:
    """Sample sets of consecutive problem chunks, as one."""
    join = lambda name: [x for part in parts for x in getattr(part, name)]  # noqa: E731
    first_error = None if any(part.first_error is None for part in parts) else join("first_error")
    return SampleSet(join("problems"), join("prompts"), join("texts"), join("steps"), join("correct"), first_error,
                     join("keys"))


def sample_solutions(generator: Generator, task: Task, problems: list[Problem], n: int, temperature: float,
                     max_tokens: int, seed: int) -> SampleSet:
    """n solutions per problem, each problem seeded by itself (`ponder.search.base.seed_for`), so a chunk of
    the problems, sampled anywhere, gives the same solutions as the whole set."""
    prompts = [task.prompt(p) for p in problems]
    outs = generator.generate(prompts, SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens,
                                                      logprobs=False),
                              seeds=[seed_for(seed, p) for p in problems])
    texts = [[s.text for s in o] for o in outs]
    steps = [[task.split_steps(t) for t in ts] for ts in texts]
    correct = [[task.is_correct(p, t) for t in ts] for p, ts in zip(problems, texts)]
    keys = [[gold_vote_key(task, p, t, c) for t, c in zip(ts, cs)] for p, ts, cs in zip(problems, texts, correct)]
    first_error = None
    if task.has_step_checker:
        first_error = [[task.check_steps(p, st).first_error if st else 0 for st in sts]
                       for p, sts in zip(problems, steps)]
    return SampleSet(problems, prompts, texts, steps, correct, first_error, keys)


def solution_scores(scorer: Scorer, data: SampleSet, aggregation: str) -> tuple[list[list[float]], list | None]:
    """(aggregated score per sample, per-step scores per sample or None for outcome-only
    scorers)."""
    flat_prompts = [p for p, ts in zip(data.prompts, data.texts) for _ in ts]
    flat_steps = [st or [""] for sts in data.steps for st in sts]
    n = len(data.texts[0]) if data.texts else 0
    try:
        step_scores = scorer.score_steps(flat_prompts, flat_steps)
        agg = [aggregate(s, aggregation) for s in step_scores]
    except NotImplementedError:
        step_scores = None
        agg = scorer.score_outcomes(flat_prompts, [t for ts in data.texts for t in ts])
    reshape = lambda flat: [flat[i * n:(i + 1) * n] for i in range(len(data.texts))]  # noqa: E731
    return reshape(agg), (reshape(step_scores) if step_scores is not None else None)


def best_of_n(data: SampleSet, scores: list[list[float]], ns: list[int]) -> dict[int, float]:
    """Accuracy of picking the top-scored sample among the first N, for each N."""
    out = {}
    for n in ns:
        hits = [cs[max(range(n), key=lambda j: sc[j])] for cs, sc in zip(data.correct, scores)]
        out[n] = sum(hits) / len(hits) if hits else 0.0
    return out


def weighted_best_of_n(data: SampleSet, scores: list[list[float]], ns: list[int]) -> dict[int, float]:
    """Weighted best-of-N (Li et al. 2023; search-and-learn): sum the scores of the samples
    giving each distinct answer among the first N and pick the answer with the largest sum
    (the weighted vote search uses: `ponder.search.vote.weighted_winner`; ties go to the
    answer seen first). It keeps a verifier's signal while resisting its noise: one lucky
    high score on a wrong answer no longer beats many good scores on the right one."""
    out = {}
    for n in ns:
        hits = 0
        for keys, sc in zip(data.keys, scores):
            best = weighted_winner(keys[:n], sc[:n])
            hits += best is not None and best.startswith("gold:")
        out[n] = hits / len(data.keys) if data.keys else 0.0
    return out


def vote_and_oracle(data: SampleSet, ns: list[int]) -> tuple[dict[int, float], dict[int, float]]:
    maj, oracle = {}, {}
    for n in ns:
        m = [majority_vote(keys[:n]) for keys in data.keys]
        maj[n] = sum(isinstance(k, str) and k.startswith("gold:") for k in m) / max(len(m), 1)
        oracle[n] = sum(any(cs[:n]) for cs in data.correct) / max(len(data.correct), 1)
    return maj, oracle


def evaluate_reward_model(scorer: Scorer, data: SampleSet, aggregation: str = "last",
                          threshold: float = 0.5, ns: list[int] | None = None) -> dict:
    agg, steps = solution_scores(scorer, data, aggregation)
    return quality_of_scores(data, agg, steps, threshold, ns)


def quality_of_scores(data: SampleSet, agg: list[list[float]], steps: list | None, threshold: float = 0.5,
                      ns: list[int] | None = None) -> dict:
    """`evaluate_reward_model` from scores already computed (`solution_scores`)."""
    n = len(data.texts[0]) if data.texts else 0
    ns = ns or [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= n]
    out = {"best_of_n": best_of_n(data, agg, ns), "weighted_best_of_n": weighted_best_of_n(data, agg, ns)}
    if steps is not None and data.first_error is not None:
        pred = [[first_below(s, threshold) for s in sols] for sols in steps]
        flat = lambda nested: [x for xs in nested for x in xs]  # noqa: E731
        out["processbench"] = {**processbench_f1(flat(pred), flat(data.first_error)),
                               "f1_se": bootstrap_f1_se(pred, data.first_error)}
    return out


def bootstrap_f1_se(predicted: list[list[int | None]], truth: list[list[int | None]], rounds: int = 200,
                    seed: int = 0) -> float:
    """Standard error of the ProcessBench F1 by the bootstrap over problems (Efron & Tibshirani
    1993, ch. 6): the standard deviation of the F1 of `rounds` resamples of the problems, each
    problem taking all its solutions along (they share a question, so they are not independent)."""
    import random
    import statistics

    if len(predicted) < 2:
        return 0.0
    rng = random.Random(seed)
    f1s = []
    for _ in range(rounds):
        pick = [rng.randrange(len(predicted)) for _ in predicted]
        f1s.append(processbench_f1([p for i in pick for p in predicted[i]], [t for i in pick for t in truth[i]])["f1"])
    return statistics.stdev(f1s)
