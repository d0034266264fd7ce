"""`gym:<dataset>`: the procedural datasets of reasoning-gym (Stojanovski et al. 2025,
github.com/open-thought/reasoning-gym) as ponder tasks — `get_task("gym:chain_sum")`.

reasoning-gym is an optional extra (`pip install 'ponder[gym]'`), imported only when a gym
task is built. Each dataset generates item i from its seed, and scores an answer with its own
`score_answer(answer, entry)`; a completion counts as correct when that score is 1.0 (some
datasets give partial credit below it, which we do not count as solved).

Splits: reasoning-gym has none, so we make them as `arith` does. Items are drawn from one
seeded stream and each question belongs to "test" or "train" by a hash of its text
(`stable_split`), so the two splits never share a question, at the price of generating
about ten items per test item kept.
"""
from __future__ import annotations

from typing import Any

from ponder.tasks.answers import extract_answer
from ponder.tasks.base import Problem, Task, stable_split


def _import_reasoning_gym():
    try:
        import reasoning_gym
    except ImportError as e:
        raise ImportError(
            "gym tasks need the optional dependency reasoning-gym: pip install 'ponder[gym]'"
        ) from e
    return reasoning_gym


class GymTask(Task):
    """A reasoning-gym dataset. `size`: problems per split when `problems` is not given `n`;
    `seed`: the stream of items (combined with the `seed` passed to `problems`); `cfg`: the
    dataset's own config fields (e.g. `min_terms=2` for chain_sum)."""

    def __init__(self, dataset_name: str, size: int = 500, seed: int = 0, **cfg: Any):
        rg = _import_reasoning_gym()
        known = rg.factory.DATASETS
        if dataset_name not in known:
            raise ValueError(
                f"unknown reasoning-gym dataset {dataset_name!r}: expected one of "
                f"{', '.join(sorted(known))}"
            )
        self._rg = rg
        self.dataset_name, self.size, self.seed, self.cfg = dataset_name, int(size), int(seed), cfg
        self.name = f"gym:{dataset_name}"
        self._scorer = None

    def _dataset(self, seed: int, size: int):
        return self._rg.create_dataset(self.dataset_name, size=size, seed=seed, **self.cfg)

    def problems(self, split: str = "test", n: int | None = None, seed: int = 0) -> list[Problem]:
        """`n` (default `size`) distinct problems of `split` ("train" or "test"); problem i
        depends only on (split, seed, i), the constructor's seed and the config."""
        if split not in ("train", "test"):
            raise ValueError(f"{self.name}: split must be 'train' or 'test', got {split!r}")
        n = self.size if n is None else n
        # Items are generated lazily by index, so a generous size costs nothing up front.
        budget = 20 * n + 100
        dataset = self._dataset(seed=self.seed * 1_000_003 + seed, size=budget)
        seen: set[str] = set()
        out: list[Problem] = []
        for index in range(budget):
            if len(out) == n:
                break
            entry = dataset[index]
            question = entry["question"]
            if question in seen or stable_split(f"{self.name}:{question}") != split:
                continue
            seen.add(question)
            out.append(
                Problem(
                    id=f"{self.name}-{split}-{len(out)}",
                    question=question,
                    answer=str(entry["answer"]),
                    meta={"entry": entry},
                )
            )
        if len(out) < n:
            raise ValueError(
                f"{self.name}: found only {len(out)} distinct {split} problems among {budget} "
                f"generated; ask for fewer or widen the dataset config"
            )
        return out

    def prompt(self, problem: Problem) -> str:
        return (
            f"{problem.question}\n"
            "End with your final answer on its own line as 'Answer: <answer>'.\n"
        )

    def extract_answer(self, text: str) -> str | None:
        # No last-number fallback: many gym answers are words, lists or grids.
        return extract_answer(text, number_fallback=False)

    def is_correct(self, problem: Problem, text: str) -> bool:
        if self._scorer is None:
            self._scorer = self._dataset(seed=self.seed, size=1)
        answer = self.extract_answer(text)
        if answer is None:
            return False
        return self._scorer.score_answer(answer=answer, entry=problem.meta["entry"]) >= 1.0
