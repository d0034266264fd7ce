"""`ponder eval`: greedy accuracy, unbiased pass@k, maj@k and mean tokens per solution.

Greedy decoding gives accuracy; k samples at the given temperature give pass@k (unbiased,
from the k samples) and maj@k (majority vote over the extracted answers, compared with the
task's own equivalence check through `is_correct`). On a task with an exact step checker,
`greedy_valid_accuracy` is the share answered right with every line passing it: a right
answer written over wrong arithmetic does not count there.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from ponder.eval.metrics import majority_vote, mean, pass_at_k
from ponder.generation.base import Generator, SamplingParams
from ponder.search.base import seed_for
from ponder.tasks.base import Problem, Task


@dataclass
class EvalConfig:
    n: int = 200
    """number of held-out problems"""
    k: int = 8
    """samples per problem for pass@k and maj@k (0 = greedy only)"""
    temperature: float = 0.8
    """sampling temperature for the k samples"""
    top_p: float = 1.0
    """nucleus sampling mass for the k samples"""
    max_tokens: int = 256
    """generated tokens per solution, at most"""
    seed: int = 1234
    """seed for problem selection and sampling"""
    split: str = "test"
    """task split to evaluate on"""
    chunk: int = 64
    """problems per engine call, and per shard with --workers"""


def gold_vote_key(task: Task, problem: Problem, text: str, correct: bool) -> str | None:
    """The key a sample votes under when the gold answer is known (evaluation only): every
    correct sample votes "gold:<answer>", so equivalent forms (e.g. '0.5' and '1/2') vote
    together by the task's own check; an incorrect one votes its extracted answer. Search at
    test time has no gold answer and groups answers by `ponder.search.vote.answer_key`."""
    return f"gold:{problem.answer}" if correct else task.extract_answer(text)


def evaluate_chunk(generator: Generator, task: Task, problems: list[Problem], cfg: EvalConfig) -> dict:
    """Per-problem records of `problems` (one greedy call, one sampled call) and the tokens
    they cost: {"records", "generated_tokens", "prefill_tokens"}."""
    prompts = [task.prompt(p) for p in problems]
    start = generator.usage.copy()
    greedy = generator.generate(prompts, SamplingParams(n=1, temperature=0.0, max_tokens=cfg.max_tokens))
    records = []
    for p, [s] in zip(problems, greedy):
        records.append({"id": p.id, "answer": p.answer, "greedy": s.text, "greedy_correct": task.is_correct(p, s.text),
                        "greedy_tokens": s.num_tokens, "finish_reason": s.finish_reason})
        if task.has_step_checker:  # a right answer counts as reasoned only if every line checks
            rec = records[-1]
            rec["greedy_valid"] = rec["greedy_correct"] and \
                task.check_steps(p, task.split_steps(s.text)).first_error is None
    if cfg.k > 0:
        sp = SamplingParams(n=cfg.k, temperature=cfg.temperature, top_p=cfg.top_p, max_tokens=cfg.max_tokens)
        sampled = generator.generate(prompts, sp, seeds=[seed_for(cfg.seed, p) for p in problems])
        for p, rec, samples in zip(problems, records, sampled):
            correct = [task.is_correct(p, s.text) for s in samples]
            keys = [gold_vote_key(task, p, s.text, ok) for s, ok in zip(samples, correct)]
            rec["num_correct"] = sum(correct)
            rec["majority"] = majority_vote(keys)
            rec["majority_correct"] = rec["majority"] == f"gold:{p.answer}"
            rec["sample_tokens"] = mean(s.num_tokens for s in samples)
    used = generator.usage - start
    return {"records": records, "generated_tokens": used.generated_tokens, "prefill_tokens": used.prefill_tokens}


def summarize(chunks: list[dict], k: int) -> dict:
    """The summary metrics of `evaluate_chunk` results, in problem order."""
    records = [r for c in chunks for r in c["records"]]
    out = {
        "problems": len(records),
        "greedy_accuracy": mean(r["greedy_correct"] for r in records),
        "mean_tokens": mean(r["greedy_tokens"] for r in records),
        "truncated": mean(r["finish_reason"] == "length" for r in records),
    }
    if records and all("greedy_valid" in r for r in records):
        out["greedy_valid_accuracy"] = mean(r["greedy_valid"] for r in records)
    if k > 0:
        for j in sorted({1, k} | ({k // 2} if k >= 4 else set())):
            out[f"pass@{j}"] = mean(pass_at_k(k, r["num_correct"], j) for r in records)
        out[f"maj@{k}"] = mean(r["majority_correct"] for r in records)
        out["mean_sample_tokens"] = mean(r["sample_tokens"] for r in records)
    out["generated_tokens"] = sum(c["generated_tokens"] for c in chunks)
    out["prefill_tokens"] = sum(c["prefill_tokens"] for c in chunks)
    return {"summary": out, "records": records}


def chunks_of(problems: list[Problem], size: int) -> list[tuple[int, list[Problem]]]:
    return [(i // size, problems[i:i + size]) for i in range(0, len(problems), size)]


def evaluate(generator: Generator | None, task: Task, problems: list[Problem], cfg: EvalConfig, workers: int = 1,
             ray_address: str | None = None, setup: Callable[[], tuple[Generator, Task]] | None = None) -> dict:
    """Score `problems` in chunks of `cfg.chunk`; returns summary metrics and per-problem
    records. With `workers` > 1 the chunks run on Ray workers, each with the (engine, task)
    that `setup()` builds (ponder.parallel); the records are the same as with one."""
    from ponder.parallel import map_shards

    if workers > 1 and setup is None:
        raise ValueError("evaluating on Ray workers needs `setup`: a function that builds a worker's (engine, task)")
    shards = chunks_of(problems, cfg.chunk)
    done = {r.index: r.value for r in map_shards(partial(_evaluate_shard, cfg), shards, setup=setup, workers=workers,
                                                  ray_address=ray_address, state=(generator, task))}
    return summarize([done[i] for i, _ in shards], cfg.k)


def _evaluate_shard(cfg: EvalConfig, state: tuple[Generator, Task], index: int, problems: list[Problem]) -> dict:
    generator, task = state
    return evaluate_chunk(generator, task, problems, cfg)


def greedy_accuracy(generator: Generator, task: Task, problems: list[Problem], max_tokens: int, model=None) -> float:
    """Greedy accuracy on `problems` (0 when there are none). `model`: a policy in training,
    whose weights are pushed into the engine first."""
    if not problems:
        return 0.0
    if model is not None:
        generator.update_weights(model.named_parameters())
    outs = generator.generate([task.prompt(p) for p in problems], SamplingParams(n=1, temperature=0.0,
                                                                                  max_tokens=max_tokens))
    return sum(task.is_correct(p, o[0].text) for p, o in zip(problems, outs)) / len(problems)
