"""The `ponder` request extension: answer with test-time search instead of one sample.

    POST /v1/chat/completions
    {"messages": [{"role": "user", "content": "3+4*2\\n"}],
     "ponder": {"strategy": "beam", "n": 16, "beam_width": 4, "scorer": "prm"}}

The server runs ponder's search (ponder.search: the strategy registry, `search`) on the
request's text and answers with the chosen candidate's full solution text as the message
content (or completion text), the compute it spent in `usage` (prefill, generated and
scorer tokens, measured from this request's own engine calls and scorer calls), and a
`ponder` object with the strategy, the chosen answer and every candidate's answer and score.

Fields of the extension: `strategy` (required), any `SearchParams` field (n, beam_width,
temperature, max_tokens, aggregation, weighted, seed, ...; the request's own temperature,
top_p, max_tokens (or OpenAI's newer max_completion_tokens, which LangChain and the `openai`
client send) and seed fill those not given), `scorer` ("none" (default), "verifier",
"rollout[:k=N]" (the served model's own rollouts from each step, checked by the task against
`answer`: ponder.annotate.verifiers), or "prm": the PRM the server was started with, `ponder
serve --scorer DIR`, or the PRM server it names, `--scorer http://host:port/v1`, whose failures answer 502), `answer` (the gold
answer; the `verifier` scorer needs it) and `question` (the problem as the task's checker
reads it, e.g. arith's bare expression; default: the request's text, stripped: the
`verifier` scorer needs it whenever the request's text is more than the bare problem). The task
(step splitting, answer extraction) is the server's, fixed when it starts (`--task`); a
request may name it in `task` but not change it, so no request makes the server read a file.

`"strategy": "auto"` with `"budget": TOKENS` (serve/auto.py, ponder.search.auto) lets the
server pick the strategy and N from `--auto-policy`'s scale run: a probe predicts the
problem's difficulty, and `ponder.auto` reports the choice, why, and the probe's and
search's tokens (both in `usage`).

Budget: `n` and `beam_width` at most `--max-search-n`, `n x max_tokens` at most
`--max-request-tokens`, and a search that has generated that many tokens gets no more.

The model reads exactly the request's text: a chat request must be one user message, which
goes through the chat template as every user text does, optionally after system messages
(the template applies them to every prompt of the search, and the search grows the user's
problem, not the system text); a completions request must be one
string, which is tokenized as is (the completions endpoint's rule). The search runs in the
request's own thread; its engine (`RequestGenerator`) and PRM (`RequestScorer`) send each
call through the batcher, so a search takes turns with plain requests call by call, and
stops as soon as its client hangs up.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, fields, replace
from typing import Callable

from ponder.annotate.verifiers import ROLLOUTS, RolloutVerifier
from ponder.generation.base import EngineError, Generator, SamplingParams, Usage, check_params
from ponder.models import encode_prompts
from ponder.rewards.base import Scorer, ScorerUsage
from ponder.rewards.remote import HTTPScorer
from ponder.search import SearchContext, search
from ponder.search.auto import AUTO, AutoPolicy, auto_search
from ponder.search.base import SearchParams, get_strategy
from ponder.search.scorers import load_scorer, parse_spec
from ponder.serve import auto
from ponder.serve.batcher import Batcher, request_seeds
from ponder.serve.guard import Guard
from ponder.serve.protocol import APIError, bad, messages_of
from ponder.tasks.base import Problem, Task

OWN_FIELDS = ("strategy", "scorer", "task", "task_args", "answer", "question", "budget")
SCORERS = ("none", "verifier", "prm")
# Request-level sampling fields that fill the SearchParams fields of the same name.
FROM_BODY = ("temperature", "top_p", "max_tokens", "seed")


@dataclass
class Setup:
    """What the server fixes when it starts: the task searches use, and its PRM (if any)."""

    task: Task
    task_name: str
    prm: Scorer | None = None
    prm_name: str | None = None
    """the PRM's name in the scoring routes (scoring.py)"""
    policy: AutoPolicy | None = None
    """strategy 'auto''s choices, from a `ponder scale` run (ponder serve --auto-policy)"""


@dataclass
class SearchRequest:
    strategy: str
    cfg: SearchParams
    scorer: str | None
    """None, "verifier" or "prm" (the server's PRM)"""
    answer: str | None
    question: str | None
    system: list[dict] = ()
    """a chat request's system messages, applied by the chat template to every prompt of the search"""
    budget: float | None = None
    """strategy 'auto': tokens per request (serve/auto.py)"""


def parse(ext: dict, body: dict, room: int, setup: Setup, guard: Guard) -> SearchRequest:
    """Check the extension (and what of the request it cannot honour) before any work.
    `room`: the tokens left in the model's context after the prompt; a solution's
    `max_tokens` defaults to at most that, and asking for more is refused."""
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
    if strategy == AUTO:
        return _parse_auto(ext, body, room, setup, guard)
    if "budget" in ext:
        raise bad("ponder.budget", "'ponder.budget' goes with strategy 'auto'; other strategies take n")
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
        elif name == "max_tokens" and body.get("max_completion_tokens") is not None:  # OpenAI's newer name
            values[name] = _typed("max_completion_tokens", body["max_completion_tokens"], int)
    values.setdefault("seed", secrets.randbits(62))  # an unseeded request draws fresh samples
    cfg = SearchParams(**values)
    if "max_tokens" not in values:
        cfg.max_tokens = min(cfg.max_tokens, room)
    elif cfg.max_tokens > room:
        raise bad("ponder.max_tokens", f"'max_tokens' of the search is {cfg.max_tokens}, but the model's context "
                                       f"has room for {room} tokens after the prompt")

    for name, limit in (("n", guard.max_search_n), ("beam_width", guard.max_search_n)):
        if getattr(cfg, name) > limit:
            raise bad(f"ponder.{name}", f"'ponder.{name}' is {getattr(cfg, name)}; this server searches with at "
                                        f"most {limit} (--max-search-n)")
    if cfg.n * cfg.max_tokens > guard.max_request_tokens:
        raise bad("ponder.n", f"the search asks for up to n x max_tokens = {cfg.n * cfg.max_tokens} generated "
                              f"tokens; this server allows {guard.max_request_tokens} per request "
                              "(--max-request-tokens)")

    task_name = ext.get("task", setup.task_name)
    if task_name != setup.task_name or ext.get("task_args") not in (None, {}):
        raise bad("ponder.task", f"this server searches with the task {setup.task_name!r}, fixed when it starts "
                                 f"(ponder serve --task, --task-arg); a request cannot change it")

    scorer = ext.get("scorer", "none")
    answer = ext.get("answer")
    if isinstance(scorer, str) and scorer.split(":", 1)[0] == "rollout":
        try:
            k = parse_spec(scorer)[1].get("k", ROLLOUTS)
        except ValueError as e:
            raise bad("ponder.scorer", str(e)) from None
        if k > guard.max_n:
            raise bad("ponder.scorer", f"{scorer!r}: k={k} rollouts per step is more than this server's --max-n "
                                       f"{guard.max_n}")
    elif scorer not in SCORERS:
        raise bad("ponder.scorer", f"'ponder.scorer' must be 'none', 'verifier', 'prm' (the PRM this server was "
                                   f"started with: ponder serve --scorer DIR) or 'rollout[:k=N]' (the served "
                                   f"model's rollouts from each step), got {scorer!r}")
    if scorer == "prm" and setup.prm is None:
        raise bad("ponder.scorer", "this server has no PRM: start it with --scorer DIR to search with 'prm'")
    if answer is not None and not isinstance(answer, (str, int, float)):
        raise bad("ponder.answer", f"'ponder.answer' must be a string or a number, got {answer!r}")
    if (scorer == "verifier" or scorer.startswith("rollout")) and answer is None:
        raise bad("ponder.answer", f"scorer {scorer!r} checks solutions against a gold answer: give it as "
                                   "ponder.answer, or use 'prm' or 'none'")
    question = ext.get("question")
    if question is not None and not isinstance(question, str):
        raise bad("ponder.question", f"'ponder.question' must be a string, got {question!r}")
    system = []
    if "messages" in body:
        system = [m for m in messages_of(body) if m["role"] == "system"]
    return SearchRequest(strategy, cfg, None if scorer == "none" else scorer,
                         None if answer is None else str(answer), question, system)


def _parse_auto(ext: dict, body: dict, room: int, setup: Setup, guard: Guard) -> SearchRequest:
    """A `"strategy": "auto"` request: the budget and the policy's settings (serve/auto.py); the
    problem's fields (task, answer, question, system messages) checked as for a one-sample search."""
    budget, cfg = auto.parse(ext, body, room, setup.policy)
    problem = {k: ext[k] for k in ("task", "task_args", "answer", "question") if k in ext}
    plain = parse({**problem, "strategy": "greedy", "n": 1, "max_tokens": 1}, body, room, setup, guard)
    return replace(plain, strategy=AUTO, cfg=cfg, budget=budget, scorer="prm" if setup.policy.needs_prm else None)


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


class RequestGenerator(Generator):
    """The engine one request's search sees: each call goes through the batcher (taking turns
    with other requests), `usage` counts this request's calls only, and once the search has
    generated `budget` tokens, or its client has hung up, it gets no more."""

    name = "torch"

    def __init__(self, batcher: Batcher, tokenizer, chat: bool, alive: Callable[[], bool], budget: int):
        self.batcher, self.tokenizer, self.chat, self.alive, self.budget = batcher, tokenizer, chat, alive, budget
        self.system: list[dict] = []  # system messages the chat template puts before every user text (`run`)
        self.usage = Usage()
        self.sharing: list[RequestGenerator] = []
        """other generators of the same request (a rollout verifier's) whose tokens count against `budget` too"""

    def generate(self, prompts, params: SamplingParams, seeds=None):
        check_params(params)
        ids = self.encode(prompts)
        spent = self.usage.generated_tokens + sum(g.usage.generated_tokens for g in self.sharing)
        if spent >= self.budget:
            raise bad("ponder", f"the search generated {spent} tokens, this server's budget "
                                f"for one request (--max-request-tokens {self.budget}); ask for a smaller search")
        if seeds is None:  # prompt i of a call seeded s, as the engine would sample it
            seeds = [(params.seed, i) for i in range(len(ids))] if params.seed is not None else \
                request_seeds(None, len(ids))
        # Without its seed the params of equal calls are equal, so they share an engine call.
        out = self.batcher.generate(ids, replace(params, seed=None), list(seeds), self.alive)
        self.usage.prefill_tokens += sum(len(p) for p in ids)  # once per prompt: its n samples share it
        self.usage.cached_tokens += out.cached_tokens
        self.usage.generated_tokens += sum(s.num_tokens for samples in out.samples for s in samples)
        self.usage.calls += 1
        return out.samples

    def prompt_ids(self, prompts):
        if self.chat and self.system and prompts:  # as the server renders a chat request: template, then ids
            texts = [self.tokenizer.apply_chat_template([*self.system, {"role": "user", "content": t}], tokenize=False,
                                                        add_generation_prompt=True) for t in prompts]
            return self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return encode_prompts(self.tokenizer, list(prompts), self.chat)

    def tokenize(self, texts):
        texts = list(texts)
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


class RequestScorer(Scorer):
    """The server's PRM as one request's search sees it: each call runs on the engine thread
    (one model computes at a time; a remote PRM's call holds it while that server answers,
    which keeps this request's token count its own), and `usage` counts this request's rows only."""

    def __init__(self, scorer: Scorer, batcher: Batcher, alive: Callable[[], bool]):
        self.scorer, self.batcher, self.alive = scorer, batcher, alive
        self.usage = ScorerUsage()

    def _call(self, method: str, prompts, items):
        def measured():
            before = self.scorer.usage.copy()
            out = getattr(self.scorer, method)(prompts, items)
            return out, self.scorer.usage.tokens - before.tokens

        out, tokens = self.batcher.call(measured, self.alive)
        self.usage.tokens += tokens
        self.usage.calls += 1
        return out

    def score_outcomes(self, prompts, completions):
        return self._call("score_outcomes", prompts, completions)

    def score_steps(self, prompts, steps):
        return self._call("score_steps", prompts, steps)


def run(sr: SearchRequest, engine: RequestGenerator, text: str, setup: Setup):
    """The search result on `text`, searched through `engine`."""
    task = RequestTask(setup.task)
    engine.system = list(sr.system)
    problem = Problem(id="request", question=sr.question if sr.question is not None else text.strip(),
                      answer=sr.answer or "", meta={"prompt": text})
    scorer = None
    if sr.scorer == "verifier":
        scorer = load_scorer("verifier", task, [problem])
    elif sr.scorer == "prm":
        scorer = RequestScorer(setup.prm, engine.batcher, engine.alive)
    elif sr.scorer is not None and sr.scorer.startswith("rollout"):
        # The rollouts go through the batcher like the search's own calls (batched with other
        # requests), on a generator of their own so they count as scorer tokens, not generated ones.
        # One token budget for the request: the search's and the rollouts' generated tokens together.
        rollouts = RequestGenerator(engine.batcher, engine.tokenizer, engine.chat, engine.alive, engine.budget)
        rollouts.system, rollouts.sharing, engine.sharing = list(sr.system), [engine], [rollouts]
        options = {"max_tokens": sr.cfg.max_tokens, **parse_spec(sr.scorer)[1]}
        scorer = RolloutVerifier(rollouts, task, [problem], seed=sr.cfg.seed, **options)
    try:
        if sr.strategy == AUTO:
            return auto_search(SearchContext(engine, task, scorer), problem, setup.policy, sr.budget, sr.cfg.seed)
        return search(sr.strategy, SearchContext(engine, task, scorer), problem, sr.cfg)
    except (ValueError, KeyError, NotImplementedError) as e:
        if sr.scorer == "verifier" and sr.question is None:
            # the task's checker read the whole request text ("Compute 3+4. ...") as the problem
            raise bad("ponder.question", f"scorer 'verifier' checks solutions against the problem as the task "
                                         f"{setup.task_name!r} reads it, and the request's text is not that ({e}): "
                                         "pass the bare problem as ponder.question (e.g. arith's expression "
                                         "'3+4*2')") from None
        raise bad("ponder", f"'ponder' search {sr.strategy!r} failed: {e}") from None
    except EngineError as e:
        if not isinstance(setup.prm, HTTPScorer) or sr.scorer != "prm":
            raise
        raise APIError(502, f"the PRM this server scores with failed: {e}", type="server_error",
                       code="scorer_failed") from None


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
    if getattr(result, "auto", None) is not None:  # strategy 'auto': what it chose and why
        info["auto"] = result.auto
    return {"usage": usage, "ponder": info}
