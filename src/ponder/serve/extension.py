"""The `ponder` request extension: answer with test-time search instead of one sample.

    POST /v1/chat/completions
    {"messages": [{"role": "user", "content": "3+4*2\\n"}],
     "ponder": {"strategy": "beam", "n": 16, "beam_width": 4, "scorer": "runs/prm/model"}}

The server runs ponder's search (ponder.search: the strategy registry, `search`) on the
request's text and answers with the chosen candidate's full solution text as the message
content (or completion text), the compute it spent in `usage` (prefill, generated and
scorer tokens, measured from the engine's and the scorer's own counters), and a `ponder`
object with the strategy, the chosen answer and every candidate's answer and score.

Fields of the extension: `strategy` (required), any `SearchParams` field (n, beam_width,
temperature, max_tokens, aggregation, weighted, seed, ...; the request's own temperature,
top_p, max_tokens and seed fill those not given), `scorer` ("none" (default), "verifier",
or a PRM directory), `task` (default `arith`: it splits steps and extracts answers) with
`task_args`, `answer` (the gold answer; the `verifier` scorer needs it) and `question` (the
problem as the task's checker reads it, e.g. arith's bare expression; default: the
request's text, stripped).

The model reads exactly the request's text: a chat request must be one user message, which
goes through the chat template as every user text does; a completions request must be one
string, which the caller gives an engine that does not template (the completions endpoint's
"tokenized as is"). Search calls the engine directly, so the caller runs `run` on the
engine thread, never alongside batched generation.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, fields

from ponder.generation.base import Generator
from ponder.search.base import SearchParams
from ponder.serve.protocol import bad
from ponder.tasks.base import Problem, Task

OWN_FIELDS = ("strategy", "scorer", "task", "task_args", "answer", "question")
# Request-level sampling fields that fill the SearchParams fields of the same name.
FROM_BODY = ("temperature", "top_p", "max_tokens", "seed")


@dataclass
class SearchRequest:
    strategy: str
    cfg: SearchParams
    scorer: str | None
    task: Task
    answer: str | None
    question: str | None


def parse(ext: dict, body: dict, room: int) -> SearchRequest:
    """Check the extension (and what of the request it cannot honour) before any work.
    `room`: the tokens left in the model's context after the prompt; a solution's
    `max_tokens` defaults to at most that, and asking for more is refused."""
    from ponder.search.base import get_strategy
    from ponder.tasks import get_task

    config_fields = {f.name: f for f in fields(SearchParams)}
    unknown = sorted(set(ext) - set(OWN_FIELDS) - set(config_fields))
    if unknown:
        raise bad("ponder", f"'ponder': unknown field(s) {', '.join(unknown)}; expected "
                            f"{', '.join(OWN_FIELDS + tuple(config_fields))}")
    for name in ("logprobs", "echo", "return_token_ids"):
        if body.get(name) not in (None, False):
            raise bad(name, f"'{name}' is not available with the 'ponder' search extension (its candidates "
                            "are whole solutions)")
    if body.get("n") not in (None, 1):
        raise bad("n", "'n' must be 1 with the 'ponder' extension (the search returns one answer); set the "
                       "search budget with ponder.n")
    strategy = ext.get("strategy")
    if not isinstance(strategy, str):
        raise bad("ponder.strategy", f"'ponder.strategy' must be a strategy name, got {strategy!r}")
    try:
        get_strategy(strategy)
    except ValueError as e:
        raise bad("ponder.strategy", str(e)) from None

    values = {}
    for name, f in config_fields.items():
        if name in ext:
            values[name] = _typed(f"ponder.{name}", ext[name], type(getattr(SearchParams(), name)))
        elif name in FROM_BODY and body.get(name) is not None:
            values[name] = _typed(name, body[name], type(getattr(SearchParams(), name)))
    values.setdefault("seed", secrets.randbits(62))  # an unseeded request draws fresh samples
    cfg = SearchParams(**values)
    if "max_tokens" not in values:
        cfg.max_tokens = min(cfg.max_tokens, room)
    elif cfg.max_tokens > room:
        raise bad("ponder.max_tokens", f"'max_tokens' of the search is {cfg.max_tokens}, but the model's context "
                                       f"has room for {room} tokens after the prompt")

    task_name = ext.get("task", "arith")
    task_args = ext.get("task_args", {})
    if not isinstance(task_name, str) or not isinstance(task_args, dict):
        raise bad("ponder.task", "'ponder.task' must be a task name and 'ponder.task_args' an object")
    try:
        task = get_task(task_name, **task_args)
    except (ValueError, TypeError) as e:
        raise bad("ponder.task", f"'ponder.task': {e}") from None

    scorer = ext.get("scorer", "none")
    answer = ext.get("answer")
    if not isinstance(scorer, str):
        raise bad("ponder.scorer", f"'ponder.scorer' must be 'none', 'verifier' or a PRM directory, got {scorer!r}")
    if answer is not None and not isinstance(answer, (str, int, float)):
        raise bad("ponder.answer", f"'ponder.answer' must be a string or a number, got {answer!r}")
    if scorer == "verifier" and answer is None:
        raise bad("ponder.answer", "scorer 'verifier' checks solutions against a gold answer: give it as "
                                   "ponder.answer, or use a PRM directory or 'none'")
    question = ext.get("question")
    if question is not None and not isinstance(question, str):
        raise bad("ponder.question", f"'ponder.question' must be a string, got {question!r}")
    return SearchRequest(strategy, cfg, None if scorer in ("", "none") else scorer, task,
                         None if answer is None else str(answer), question)


def _typed(param: str, value, kind: type):
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type(value) is not kind:
        raise bad(param, f"'{param}' must be of type {kind.__name__}, got {value!r}")
    return value


class RequestTask(Task):
    """The request's task, with the request's own text as the prompt (so the model reads
    exactly what the client sent); everything else is the task's."""

    def __init__(self, task: Task):
        self.task = task
        self.name, self.step_delimiter = task.name, task.step_delimiter

    def prompt(self, problem: Problem) -> str:
        return problem.meta["prompt"]

    def extract_answer(self, text: str):
        return self.task.extract_answer(text)

    def is_correct(self, problem: Problem, text: str) -> bool:
        return self.task.is_correct(problem, text)

    def split_steps(self, text: str) -> list[str]:
        return self.task.split_steps(text)

    def check_steps(self, problem: Problem, steps: list[str]):
        return self.task.check_steps(problem, steps)

    @property
    def has_step_checker(self) -> bool:
        return self.task.has_step_checker

    def __getattr__(self, name):  # any other task method (e.g. arith's is_complete)
        return getattr(self.task, name)


def run(sr: SearchRequest, engine: Generator, text: str, prms: dict) -> tuple[object, int]:
    """The search result on `text`, and the prompt tokens the engine served from cache.
    `prms` caches loaded PRMs by directory across requests (engine thread only)."""
    from ponder.search import SearchContext, search
    from ponder.search.scorers import load_scorer

    task = RequestTask(sr.task)
    problem = Problem(id="request", question=sr.question if sr.question is not None else text.strip(),
                      answer=sr.answer or "", meta={"prompt": text})
    scorer = None
    if sr.scorer == "verifier":
        scorer = load_scorer("verifier", task, [problem])
    elif sr.scorer is not None:
        if sr.scorer not in prms:
            try:
                prms[sr.scorer] = load_scorer(sr.scorer, task, [problem])
            except (OSError, ValueError) as e:
                raise bad("ponder.scorer", f"'ponder.scorer': {e}") from None
        scorer = prms[sr.scorer]
    cached0 = engine.usage.cached_tokens
    try:
        result = search(sr.strategy, SearchContext(engine, task, scorer), problem, sr.cfg)
    except (ValueError, KeyError, NotImplementedError) as e:
        raise bad("ponder", f"'ponder' search {sr.strategy!r} failed: {e}") from None
    return result, engine.usage.cached_tokens - cached0


def response_fields(result, cached: int) -> dict:
    """`usage` and `ponder` of a search's response."""
    c = result.compute
    usage = {"prompt_tokens": c.prefill_tokens, "completion_tokens": c.generated_tokens,
             "total_tokens": c.prefill_tokens + c.generated_tokens, "scorer_tokens": c.scorer_tokens,
             "prompt_tokens_details": {"cached_tokens": cached}}
    info = {"strategy": result.strategy, "answer": result.answer, "candidates": len(result.candidates),
            "answers": [cand.answer for cand in result.candidates],
            "scores": [cand.score for cand in result.candidates],
            "generate_calls": c.generate_calls, "scorer_calls": c.scorer_calls, "wall_s": round(c.wall_s, 4)}
    return {"usage": usage, "ponder": info}
