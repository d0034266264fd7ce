"""A PRM served by another process, as a scorer: `--scorer http://host:port/v1`.

    scorer = HTTPScorer("http://127.0.0.1:8001/v1")
    scorer.score_steps(prompts, steps)        # the same scores the PRM gives in process

Two kinds of server, told apart by `GET /v1/models` (`owned_by`):

- **ponder serve --scorer PRM** (serve/scoring.py): `/ponder/scorer` names the PRM, its format
  and aggregation, and `/v1/score_steps` / `/v1/score_outcomes` take the texts and answer the
  scorer contract itself. The server lays each solution out as the PRM reads it in process
  (ponder's PRM tokenises each step on its own, which no token-id round trip through text
  reproduces), so the scores are exactly the in-process ones.
- **vLLM serving a PRM** (`vllm serve Qwen/Qwen2.5-Math-PRM-7B --runner pooling`, or a
  Math-Shepherd PRM with `--pooler-config '{"pooling_type": "STEP", "step_tag_id": TAG,
  "returned_token_ids": [GOOD, BAD]}'`, vLLM's docs/models/pooling_models/reward.md): the
  client lays each solution out in the PRM's published format (rewards/published.py; the
  format read from the server's tokenizer as `load_published_prm` reads it from a folder:
  `<extra_0>` one token is a Qwen2.5-Math-PRM, else the step tag `ки` a Math-Shepherd PRM),
  tokenises it with the server's `/tokenize` and finds its step markers, sends the token ids
  to vLLM's pooling API (`POST /pooling {"model", "input": [[ids]]}`), and reads each step's
  row: one per step (a STEP pooler with `step_tag_id`) or one per token (picked at the
  markers). The probability of a correct step is column 1 of a Qwen row ([P(0), P(1)]) and
  column 0 of a Math-Shepherd row ([P(+), P(-)]); a row that is not a distribution (raw
  logits) is softmaxed first. `route="pooling"` uses this path with ponder serve too.

`usage.tokens` adds the tokens the server says it read (`usage.prompt_tokens`), so a search's
scorer compute is the same whether its PRM is here or there; `row_tokens` keeps each row's
count of the last call, for a batched search to charge each problem its own (search/batch.py).

The key: `api_key`, else `$PONDER_SCORER_API_KEY`, else `$OPENAI_API_KEY` (the policy's, for
servers that share one). Connection errors, 429 and 5xx are retried a few times; every other
failure is an `EngineError` naming the URL and what was expected there.
"""
from __future__ import annotations

import math
import os
import threading
import time

from ponder.generation.base import EngineError
from ponder.rewards.base import AGGREGATIONS, Scorer, ScorerUsage, aggregate
from ponder.rewards.published import QWEN_SYSTEM
from ponder.tasks.base import split_steps

KEY_ENV = "PONDER_SCORER_API_KEY"
ROUTES = ("auto", "score_steps", "pooling")
RETRIES = 3
BACKOFF_S = 0.5
SERVED = ("a PRM server: `ponder serve --scorer PRM_DIR` (its base URL http://host:port/v1) or vLLM serving a "
          "PRM on its pooling API (`vllm serve PRM --runner pooling`)")


class HTTPScorer(Scorer):
    """The PRM at `url` (see the module docstring)."""

    kind = "prm"

    def __init__(self, url: str, api_key: str | None = None, delimiter: str = "\n", aggregation: str | None = None,
                 route: str = "auto", batch_size: int = 64, timeout: float = 600.0, retries: int = RETRIES):
        """`delimiter`: how `score_outcomes` splits a completion into steps on the pooling path
        (ponder serve splits with its PRM's own). `aggregation`: a solution's score from its
        step scores (default: the served PRM's; "min" for a published one, as its papers rank).
        `route`: "auto" (ponder serve's exact routes where offered, else /pooling), or either
        one. `batch_size`: solutions per request (ponder serve takes at most --max-n)."""
        import httpx

        if route not in ROUTES:
            raise ValueError(f"route must be one of {', '.join(ROUTES)}, got {route!r}")
        if aggregation is not None and aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}: expected one of {', '.join(AGGREGATIONS)}")
        self.base = url.rstrip("/")
        if not self.base.endswith("/v1"):
            self.base += "/v1"
        self.root = self.base[: -len("/v1")]
        self.batch_size, self.retries = max(1, batch_size), retries
        self.usage = ScorerUsage()
        self.row_tokens: list[int] = []
        """tokens each row of the last call read, as the server counted them"""
        self._lock = threading.Lock()
        key = api_key or os.environ.get(KEY_ENV) or os.environ.get("OPENAI_API_KEY")
        self._client = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {key}"} if key else {})

        models = self._request("GET", f"{self.base}/models", expect="its list of models (GET /v1/models)")
        data = models.get("data") if isinstance(models, dict) else None
        if not isinstance(data, list) or not data:
            raise EngineError(f"scorer {self.base}: /v1/models lists no model; expected {SERVED}")
        owners = {m.get("owned_by") for m in data if isinstance(m, dict)}
        if "ponder" in owners:
            info = self._ponder_info()
            self.model, self.format = info["model"], info["format"]
            self.delimiter = info.get("step_delimiter", delimiter)
            self.aggregation = aggregation or info.get("aggregation", "last")
            self.route = "score_steps" if route in ("auto", "score_steps") else "pooling"
            if self.route == "pooling" and self.format == "ponder":
                raise EngineError(f"scorer {self.base}: ponder's own PRM format reads every step tokenised on its own; "
                                  "score it through /v1/score_steps (route 'auto'), not /pooling")
        else:
            if route == "score_steps":
                raise EngineError(f"scorer {self.base} is not ponder serve (owned_by {', '.join(map(str, owners))}): "
                                  "it has no /v1/score_steps; use route 'pooling'")
            if len(data) != 1:
                raise EngineError(f"scorer {self.base} serves {len(data)} models; a PRM server serves one")
            self.model, self.route = data[0].get("id"), "pooling"
            self.delimiter, self.aggregation = delimiter, aggregation or "min"
            self.format = self._detect_format()
        if self.route == "pooling":
            self._marker = self._marker_id()
            self._pool([self._tokenize({"prompt": "1", "add_special_tokens": False})])  # a PRM on /pooling at all?

    # ----- the scorer contract -----

    def score_steps(self, prompts: list[str], steps: list[list[str]]) -> list[list[float]]:
        prompts, steps = list(prompts), [list(s) for s in steps]
        if len(prompts) != len(steps):
            raise ValueError(f"got {len(prompts)} prompts but {len(steps)} step lists; pass one per prompt")
        if self.route == "score_steps":
            out, rows = self._score("score_steps", "steps", prompts, steps, "scores")
        else:
            out, rows = self._pooled_steps(prompts, steps)
        self._charge(rows)
        return out

    def score_outcomes(self, prompts: list[str], completions: list[str]) -> list[float]:
        prompts, completions = list(prompts), list(completions)
        if len(prompts) != len(completions):
            raise ValueError(f"got {len(prompts)} prompts but {len(completions)} completions; pass one per prompt")
        if self.route == "score_steps":
            out, rows = self._score("score_outcomes", "completions", prompts, completions, "score")
            self._charge(rows)
            return out
        steps = self.score_steps(prompts, [self.split(c) for c in completions])
        return [aggregate(s, self.aggregation) for s in steps]

    def split(self, completion: str) -> list[str]:
        """A completion's steps as the pooling path scores them (the whole text if it has no delimiter)."""
        return split_steps(completion, self.delimiter) or [completion]

    def close(self) -> None:
        self._client.close()

    def _charge(self, rows: list[int]) -> None:
        with self._lock:
            self.usage.tokens += sum(rows)
            self.usage.calls += 1
        self.row_tokens = rows

    # ----- ponder serve: the exact routes -----

    def _ponder_info(self) -> dict:
        try:
            info = self._request("GET", f"{self.root}/ponder/scorer", expect="its PRM (GET /ponder/scorer)")
        except EngineError as e:
            if getattr(e, "status", None) == 404:
                raise EngineError(f"scorer {self.base} is ponder serve without a PRM: start it with "
                                  "`ponder serve --model POLICY --scorer PRM_DIR`") from None
            raise
        if not isinstance(info, dict) or not isinstance(info.get("model"), str) or "format" not in info:
            raise EngineError(f"scorer {self.base}: /ponder/scorer answered {str(info)[:120]!r}; expected the PRM's "
                              "model, format and aggregation")
        return info

    def _score(self, route: str, field: str, prompts: list[str], items: list, key: str) -> tuple[list, list[int]]:
        out, rows = [], []
        for start in range(0, len(prompts), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            resp = self._request("POST", f"{self.base}/{route}", {"model": self.model, "prompts": prompts[chunk],
                                                                  field: items[chunk]}, expect=f"scores ({route})")
            data = sorted(resp.get("data") or [], key=lambda d: d.get("index", 0))
            if len(data) != len(prompts[chunk]):
                raise EngineError(f"scorer {self.base}/{route} returned {len(data)} rows for {len(prompts[chunk])}")
            out += [d[key] for d in data]
            rows += [int(d.get("tokens", 0)) for d in data]
            total = (resp.get("usage") or {}).get("prompt_tokens")
            if total is not None and total != sum(rows[-len(data):]):  # rows not counted: charge the total
                rows[-len(data):] = _spread(total, len(data))
        return out, rows

    # ----- the pooling API (vLLM's) -----

    def _detect_format(self) -> str:
        if len(self._tokenize({"prompt": "<extra_0>", "add_special_tokens": False})) == 1:
            return "qwen_prm"
        probe = self._tokenize({"prompt": "1 ки\n2 ки", "add_special_tokens": False})
        tag = self._tokenize({"prompt": "1 ки", "add_special_tokens": False})[-1:]
        if tag and probe.count(tag[0]) == 2:
            return "math_shepherd"
        raise EngineError(f"scorer {self.base}: cannot tell the served PRM's format from its tokenizer: neither "
                          "'<extra_0>' is one token (Qwen2.5-Math-PRM) nor the step tag 'ки' (Math-Shepherd)")

    def _marker_id(self) -> int:
        if self.format == "qwen_prm":
            return self._tokenize({"prompt": "<extra_0>", "add_special_tokens": False})[0]
        return self._tokenize({"prompt": "1 ки", "add_special_tokens": False})[-1]

    def _tokenize(self, body: dict) -> list[int]:
        resp = self._request("POST", f"{self.root}/tokenize", {"model": self.model, **body},
                             expect="the PRM's tokenizer (POST /tokenize)")
        return resp["tokens"]

    def _encode(self, prompt: str, steps: list[str]) -> tuple[list[int], list[int]]:
        """(token ids, marker positions) of one solution in the PRM's published layout
        (rewards/published.py: the same text, tokenised by the server)."""
        if self.format == "qwen_prm":
            sep = "<extra_0>"
            clean = [s.replace(sep, "") for s in steps]
            messages = [{"role": "system", "content": QWEN_SYSTEM}, {"role": "user", "content": prompt.replace(sep, "")},
                        {"role": "assistant", "content": "".join(s + sep for s in clean)}]
            ids = self._tokenize({"messages": messages, "add_generation_prompt": False, "add_special_tokens": False})
        else:
            tag = "ки"
            clean = [s.replace(tag, "") for s in steps]
            text = prompt.replace(tag, "") + " " + "\n".join(f"{s} {tag}" for s in clean)
            ids = self._tokenize({"prompt": text, "add_special_tokens": True})
        positions = [i for i, t in enumerate(ids) if t == self._marker]
        if len(positions) != len(steps):
            raise ValueError(f"scorer {self.base}: the PRM's tokenizer merged a step marker with the text around it "
                             f"({len(positions)} found for {len(steps)} steps)")
        return ids, positions

    def _pool(self, inputs: list[list[int]]) -> tuple[list[list], int]:
        """(rows per input, tokens the server read) from POST /pooling."""
        try:
            resp = self._request("POST", f"{self.root}/pooling", {"model": self.model, "input": inputs},
                                 expect="a pooling model (POST /pooling)")
        except EngineError as e:
            if getattr(e, "status", None) in (400, 404, 405):
                raise EngineError(f"scorer {self.base} does not pool with its model ({e}); expected {SERVED}") from None
            raise
        data = sorted(resp.get("data") or [], key=lambda d: d.get("index", 0))
        if len(data) != len(inputs) or not all(isinstance(d.get("data"), list) for d in data):
            raise EngineError(f"scorer {self.base}/pooling returned {len(data)} rows of data for {len(inputs)} inputs")
        tokens = (resp.get("usage") or {}).get("prompt_tokens")
        return [d["data"] for d in data], sum(len(x) for x in inputs) if tokens is None else int(tokens)

    def _pooled_steps(self, prompts: list[str], steps: list[list[str]]) -> tuple[list[list[float]], list[int]]:
        encoded = [self._encode(p, s) for p, s in zip(prompts, steps)]
        out, rows = [], []
        for start in range(0, len(encoded), self.batch_size):
            chunk = encoded[start:start + self.batch_size]
            pooled, tokens = self._pool([ids for ids, _ in chunk])
            for (ids, positions), data in zip(chunk, pooled):
                if len(data) == len(ids) and len(ids) != len(positions):
                    data = [data[i] for i in positions]
                elif len(data) != len(positions):
                    raise EngineError(f"scorer {self.base}/pooling returned {len(data)} rows for an input of "
                                      f"{len(ids)} tokens and {len(positions)} steps; expected one per token or per step")
                out.append([self._correct(row) for row in data])
            own = [len(ids) for ids, _ in chunk]
            rows += own if tokens == sum(own) else _spread(tokens, len(chunk))
        return out, rows

    def _correct(self, row) -> float:
        """P(step correct) from one pooled row (module docstring)."""
        values = row if isinstance(row, list) else [row]
        if len(values) != 2 or not all(isinstance(v, (int, float)) for v in values):
            hint = (" (serve a Math-Shepherd PRM with --pooler-config '{\"pooling_type\": \"STEP\", \"step_tag_id\": "
                    "TAG, \"returned_token_ids\": [GOOD, BAD]}')" if self.format == "math_shepherd" else "")
            raise EngineError(f"scorer {self.base}/pooling returned rows of {len(values)} values; a "
                              f"{self.format} PRM's rows hold 2{hint}")
        if min(values) < 0 or abs(sum(values) - 1) > 1e-3:  # logits, not probabilities
            top = max(values)
            exp = [math.exp(v - top) for v in values]
            values = [e / sum(exp) for e in exp]
        return float(values[1] if self.format == "qwen_prm" else values[0])

    # ----- plumbing -----

    def _request(self, method: str, url: str, body: dict | None = None, expect: str = "") -> dict:
        """JSON of a successful response; connection errors, 429 and 5xx retried; an
        EngineError naming the URL and what was expected there otherwise."""
        import httpx

        for attempt in range(self.retries + 1):
            try:
                r = self._client.request(method, url, json=body)
            except httpx.TimeoutException:
                raise EngineError(f"scorer {url} did not answer within {self._client.timeout.read} s") from None
            except httpx.TransportError as e:
                if attempt == self.retries:
                    raise EngineError(f"scorer {self.base} is unreachable ({type(e).__name__}: {e}); expected "
                                      f"{SERVED} running there") from None
                time.sleep(BACKOFF_S * 2**attempt)
                continue
            if (r.status_code == 429 or r.status_code >= 500) and attempt < self.retries:
                time.sleep(BACKOFF_S * 2**attempt)
                continue
            if r.status_code >= 400:
                why = "refused the API key (set $PONDER_SCORER_API_KEY)" if r.status_code == 401 else "answered"
                err = EngineError(f"scorer {url} {why} ({r.status_code}): {_message(r)}; expected {expect} of {SERVED}")
                err.status = r.status_code
                raise err
            try:
                return r.json()
            except ValueError:
                raise EngineError(f"scorer {url} answered with non-JSON ({r.headers.get('content-type', 'no type')}: "
                                  f"{r.text[:80]!r}); expected {SERVED}") from None
        raise AssertionError("unreachable")


def _spread(total: int, rows: int) -> list[int]:
    """`total` tokens shared out over `rows` rows as evenly as integers allow (for a server
    that counts a request's tokens but not its rows')."""
    return [total // rows + (i < total % rows) for i in range(rows)]


def _message(response) -> str:
    try:
        body = response.json()
        err = body.get("error", body) if isinstance(body, dict) else body
        return str(err.get("message", err) if isinstance(err, dict) else err)[:300]
    except ValueError:
        return response.text[:300]
