"""The HTTP engine: any OpenAI-compatible server (`vllm serve`, SGLang, `ponder serve`, a
hosted API) behind the engine contract.

    engine = make_engine("http://127.0.0.1:8000/v1", "smollm2", max_concurrency=16)

How the contract maps onto the wire:

- a user text goes to `/v1/chat/completions` (the server applies its chat template) when the
  served model has one, else to `/v1/completions` as plain text - the torch engine's rule;
- model-ready token ids go to `/v1/completions` as a token-id prompt, with
  `return_token_ids` so the generated ids come back exactly (vLLM >= 0.10.2, ponder serve);
- `prompt_ids` and `tokenize` use the server's `/tokenize` (vLLM, SGLang, ponder serve);
- `logprobs` asks `/v1/completions` for the prompt's logprobs (`echo` with `logprobs=0` and
  one generated token) on prompt + completion ids;
- `update_weights` writes the tensors to a safetensors file and posts its folder to
  `/update_weights_from_disk` (SGLang's name; ponder serve implements it): the server must
  see this machine's files, i.e. run on it or share its disk, and ponder serve loads only
  folders inside the one it allows (`--allow-weight-updates DIR`): the file is written into
  `weights_dir` (default `$PONDER_WEIGHTS_DIR`, else the system's temporary folder);
- `usage` comes from the server's own `usage` (prompt, completion and cached prompt tokens).

One request per prompt (its n samples share one prefill on the server), at most
`max_concurrency` in flight; connection errors, 429 and 5xx are retried with exponential
backoff (honouring Retry-After), anything else fails at once with the server's message and
the URL. A capability the server lacks (no `/tokenize`, no weight loading, no logprobs) is an
`EngineError` saying so, never a silent fallback.

Seeds: each request carries its own seed (`prompt_seed` of the call's seed and the prompt's
index, or the caller's per-prompt seed), which vLLM and ponder serve honour; a server that ignores
seeds gives unseeded samples. Logprobs: vLLM returns the model's raw log-probabilities by
default, which match the contract's log_softmax(logits / T) only at T = 1 (or 0), so other
temperatures are refused for servers other than ponder serve.

Extra fields (`top_k`, `return_token_ids`, `include_stop_str_in_output`) are sent only to
servers known to take them (vLLM, SGLang, ponder serve, by `owned_by` in `/v1/models`): a
hosted API refuses fields it does not know.
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ponder.generation.base import EngineError, Generator, Sample, SamplingParams, Usage, prompt_seed, seed_key

# Servers that take vLLM's extra sampling fields (`owned_by` of their models).
EXTRAS = ("vllm", "sglang", "ponder")
RETRIES = 5
BACKOFF_S = 0.5


class HTTPGenerator(Generator):
    """An OpenAI-compatible server as an engine (see the module docstring)."""

    def __init__(self, url: str, model: str | None = None, api_key: str | None = None, max_concurrency: int = 16,
                 timeout: float = 600.0, progress: bool = False, chat: bool | None = None, retries: int = RETRIES,
                 weights_dir: str | None = None):
        """`url`: the API base, `http(s)://host:port/v1`. `model`: the served model's name
        (None: the server's only model). `chat`: whether user texts go through the chat
        template (None: iff the server's /tokenize applies one for this model). `retries`:
        attempts after the first for a connection error, 429 or 5xx. `weights_dir`: where
        `update_weights` writes the weights the server loads (default: $PONDER_WEIGHTS_DIR,
        else the system's temporary folder)."""
        import httpx

        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.base = url.rstrip("/")
        self.root = self.base[: -len("/v1")] if self.base.endswith("/v1") else self.base
        self.name = self.base
        self.progress, self.retries = progress, retries
        self.usage = Usage()
        self._lock = threading.Lock()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout, headers=headers,
                                    limits=httpx.Limits(max_connections=max_concurrency))
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="ponder-http")
        self.model, self.owner = self._pick_model(model)
        self.extras = self.owner in EXTRAS
        self._chat = chat
        self.weights_dir = weights_dir or os.environ.get("PONDER_WEIGHTS_DIR") or None

    # ----- plumbing -----

    def _request(self, method: str, url: str, body: dict | None = None) -> dict:
        """JSON of a successful response; retries transient failures; EngineError otherwise."""
        import httpx

        failures = []
        for attempt in range(self.retries + 1):
            wait = BACKOFF_S * 2**attempt
            try:
                r = self._client.request(method, url, json=body)
            except httpx.TimeoutException:
                raise EngineError(f"server {url} did not answer within {self._client.timeout.read} s")
            except httpx.TransportError as e:
                if attempt == self.retries:
                    raise EngineError(f"server {self.root} is unreachable ({type(e).__name__}: {e}); "
                                      "is it running, and is the URL right?") from None
                time.sleep(wait)
                continue
            if r.status_code == 429 or r.status_code >= 500:
                failures.append(f"{r.status_code} {r.reason_phrase}")
                if attempt == self.retries:
                    raise EngineError(f"server {url} failed {attempt + 1} times ({', '.join(failures)}): {_message(r)}")
                retry_after = r.headers.get("retry-after", "")
                time.sleep(float(retry_after) if retry_after.replace(".", "", 1).isdigit() else wait)
                continue
            if r.status_code >= 400:
                err = EngineError(f"server {url} refused the request ({r.status_code}): {_message(r)}")
                err.status = r.status_code
                raise err
            try:
                return r.json()
            except ValueError:  # a proxy's HTML page, or not an OpenAI-compatible server at all
                kind = r.headers.get("content-type", "no content type")
                raise EngineError(f"server {url} answered {r.status_code} with non-JSON ({kind}: "
                                  f"{r.text[:80]!r}); is the URL an OpenAI-compatible API (http://host:port/v1)?") from None
        raise AssertionError("unreachable")

    def _pick_model(self, model: str | None) -> tuple[str, str]:
        data = self._request("GET", f"{self.base}/models").get("data", [])
        served = {m["id"]: m.get("owned_by", "") for m in data}
        if model is None:
            if len(served) != 1:
                raise EngineError(f"server {self.base} serves {len(served)} models ({', '.join(served) or 'none'}); "
                                  "name one with --model")
            model = next(iter(served))
        if model not in served:
            raise EngineError(f"server {self.base} does not serve model {model!r}; it serves: {', '.join(served)}")
        return model, served[model]

    def _map(self, fn, items: list) -> list:
        """fn over items with at most max_concurrency requests in flight, in order."""
        results = self._pool.map(fn, items)
        if self.progress and len(items) > 1:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(items), desc="generate", unit="req")
        return list(results)

    def _count(self, usage: dict | None) -> None:
        usage = usage or {}
        cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
        with self._lock:
            self.usage.prefill_tokens += usage.get("prompt_tokens", 0)
            self.usage.generated_tokens += usage.get("completion_tokens", 0)
            self.usage.cached_tokens += cached

    # ----- prompts -----

    @property
    def chat(self) -> bool:
        """Whether user texts go through the served model's chat template: the server's
        /tokenize tells (a model without a template refuses `messages`); a server without
        /tokenize (a hosted API) serves chat models."""
        if self._chat is None:
            try:
                self._tokenize({"messages": [{"role": "user", "content": "x"}], "add_generation_prompt": True})
                self._chat = True
            except EngineError as e:
                status = getattr(e, "status", None)
                self._chat = status in (404, 405)  # no /tokenize: a hosted chat API
                if status not in (400, 404, 405, 422):
                    raise
        return self._chat

    def _tokenize(self, body: dict) -> list[int]:
        return self._request("POST", f"{self.root}/tokenize", {"model": self.model, **body})["tokens"]

    def _need_tokenizer(self, fn, items):
        try:
            return self._map(fn, items)
        except EngineError as e:
            if getattr(e, "status", None) in (404, 405):
                raise EngineError(f"server {self.root} does not tokenize (no /tokenize endpoint): continuing token ids "
                                  "(step-level search, annotation rollouts, RL, logprobs) needs a server that does - "
                                  "vLLM, SGLang or ponder serve") from None
            raise

    def prompt_ids(self, prompts) -> list[list[int]]:
        if self.chat:
            body = lambda t: {"messages": [{"role": "user", "content": t}], "add_generation_prompt": True,
                              "add_special_tokens": False}
        else:
            body = lambda t: {"prompt": t, "add_special_tokens": True}
        return self._need_tokenizer(lambda t: self._tokenize(body(t)), list(prompts))

    def tokenize(self, texts) -> list[list[int]]:
        return self._need_tokenizer(lambda t: self._tokenize({"prompt": t, "add_special_tokens": False}), list(texts))

    # ----- generation -----

    def generate(self, prompts, params: SamplingParams, seeds=None) -> list[list[Sample]]:
        prompts = list(prompts)
        if seeds is not None and len(seeds) != len(prompts):
            raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts; give one seed per prompt")
        # Prompt i alone in a call seeded s is a request seeded prompt_seed(s, 0): the server
        # (vLLM, ponder serve) takes that seed as is, so `seeds[i]` is mixed the same way (a
        # pair (s, k): as prompt k of a call seeded s, prompt_seed(s, k)).
        if seeds is not None:
            seeds = [prompt_seed(*seed_key(s)) for s in seeds]
        elif params.seed is not None:
            seeds = [prompt_seed(params.seed, i) for i in range(len(prompts))]
        jobs = [(p, None if seeds is None else int(seeds[i])) for i, p in enumerate(prompts)]
        out = self._map(lambda job: self._one(job[0], params, job[1]), jobs)
        with self._lock:
            self.usage.calls += 1
        return out

    def _body(self, params: SamplingParams, seed: int | None) -> dict:
        body = {"model": self.model, "n": params.n, "temperature": params.temperature, "top_p": params.top_p,
                "max_tokens": params.max_tokens}
        if params.stop:
            body["stop"] = list(params.stop)
        if seed is not None:
            body["seed"] = seed
        if self.extras:
            if params.top_k > 0:
                body["top_k"] = params.top_k
            if params.include_stop_str_in_output:
                body["include_stop_str_in_output"] = True
        elif params.top_k > 0 or params.include_stop_str_in_output:
            raise EngineError(f"server {self.base} ({self.owner or 'unknown'}) takes no top_k or "
                              "include_stop_str_in_output; vLLM, SGLang and ponder serve do")
        return body

    def _one(self, prompt, params: SamplingParams, seed: int | None) -> list[Sample]:
        body = self._body(params, seed)
        if isinstance(prompt, str) and self.chat:
            body["messages"] = [{"role": "user", "content": prompt}]
            if params.logprobs:
                body["logprobs"] = True
            if self.extras:
                body["return_token_ids"] = True
            resp = self._request("POST", f"{self.base}/chat/completions", body)
        else:
            if not isinstance(prompt, str):
                if not self.extras:
                    raise EngineError(f"server {self.base} takes no token-id prompts; vLLM, SGLang and ponder serve do")
                prompt = [int(t) for t in prompt]
            body["prompt"] = prompt
            if params.logprobs:
                body["logprobs"] = 0
            if self.extras:
                body["return_token_ids"] = True
            resp = self._request("POST", f"{self.base}/completions", body)
        self._count(resp.get("usage"))
        choices = sorted(resp.get("choices", []), key=lambda c: c.get("index", 0))
        if len(choices) != params.n:
            raise EngineError(f"server {self.base} returned {len(choices)} choices for n={params.n}")
        return [self._sample(c, params, resp.get("usage") or {}) for c in choices]

    def _sample(self, choice: dict, params: SamplingParams, usage: dict) -> Sample:
        text = choice["message"]["content"] or "" if "message" in choice else choice.get("text", "")
        ids = choice.get("token_ids")
        lps = None
        logprobs = choice.get("logprobs")
        if params.logprobs:
            if not logprobs:
                raise EngineError(f"server {self.base} returned no logprobs; ask without logprobs "
                                  "(SamplingParams.logprobs=False) or use a server that gives them")
            lps = ([t["logprob"] for t in logprobs["content"]] if "content" in logprobs
                   else [float(v) for v in logprobs["token_logprobs"]])
        if ids is not None:
            num = len(ids)
        elif lps is not None:
            num = len(lps)
        elif params.n == 1:
            num = usage.get("completion_tokens", 0)
        else:
            raise EngineError(f"server {self.base} returns neither token ids nor logprobs, so the tokens of each of "
                              "n > 1 samples are unknown; ask with logprobs or n=1")
        stop = choice.get("stop_reason")
        return Sample(text=text, token_ids=list(ids or []), logprobs=lps,
                      finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
                      num_tokens=num, stop_reason=stop if isinstance(stop, str) else None)

    # ----- scoring -----

    def logprobs(self, prompts, completions, temperature: float = 1.0) -> list[list[float]]:
        if len(prompts) != len(completions):
            raise ValueError(f"got {len(prompts)} prompts but {len(completions)} completions; pass one completion per prompt")
        if temperature not in (0.0, 1.0) and self.owner != "ponder":
            raise EngineError(f"server {self.base} gives the model's raw log-probabilities, i.e. temperature 1; "
                              f"temperature {temperature} needs ponder serve (or rescale on your side)")
        prompt_ids = self.encode(prompts)
        comp_text = [i for i, c in enumerate(completions) if isinstance(c, str)]
        comp_ids = [None if isinstance(c, str) else list(c) for c in completions]
        for i, ids in zip(comp_text, self.tokenize([completions[i] for i in comp_text])):
            comp_ids[i] = ids

        def score(pair):
            p, c = pair
            if not c:
                return []
            body = {"model": self.model, "prompt": p + c, "max_tokens": 1, "echo": True, "logprobs": 0,
                    "temperature": temperature if self.owner == "ponder" else 1.0}
            resp = self._request("POST", f"{self.base}/completions", body)
            self._count({"prompt_tokens": (resp.get("usage") or {}).get("prompt_tokens", 0)})
            lp = (resp["choices"][0].get("logprobs") or {}).get("token_logprobs")
            if not lp or len(lp) < len(p) + len(c):
                raise EngineError(f"server {self.base} did not return the prompt's logprobs (echo with logprobs)")
            return [float(v) for v in lp[len(p): len(p) + len(c)]]

        out = self._map(score, list(zip(prompt_ids, comp_ids)))
        with self._lock:
            self.usage.calls += 1
        return out

    # ----- weights -----

    def update_weights(self, named_tensors) -> None:
        """Write the tensors to a safetensors file in a temporary folder and have the server
        load it (`/update_weights_from_disk`); the folder is removed afterwards."""
        from safetensors.torch import save_file

        tensors, seen = {}, set()
        for name, t in named_tensors:
            if t.data_ptr() in seen:  # a tied weight: the server loads it through its twin
                continue
            seen.add(t.data_ptr())
            tensors[name] = t.detach().to("cpu").contiguous()
        if self.weights_dir is not None and not os.path.isdir(self.weights_dir):
            raise EngineError(f"engine {self.base}: the weights folder {self.weights_dir} ($PONDER_WEIGHTS_DIR) "
                              "does not exist")
        with tempfile.TemporaryDirectory(prefix="ponder-weights-", dir=self.weights_dir) as folder:
            save_file(tensors, os.path.join(folder, "model.safetensors"))
            try:
                self._request("POST", f"{self.root}/update_weights_from_disk", {"model_path": folder})
            except EngineError as e:
                if getattr(e, "status", None) in (404, 405):
                    raise EngineError(f"server {self.root} takes no new weights (no /update_weights_from_disk): "
                                      "RL with a server engine needs one that does (ponder serve, SGLang)") from None
                if getattr(e, "status", None) in (400, 403):
                    raise EngineError(f"{e}. For ponder serve: start it with --allow-weight-updates DIR and set "
                                      "PONDER_WEIGHTS_DIR to a folder inside DIR that this machine and the server "
                                      "both see") from None
                raise

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()


def _message(response) -> str:
    """The error message of an OpenAI-style error body, else the body's start."""
    try:
        body = response.json()
        err = body.get("error", body)
        return str(err.get("message", err) if isinstance(err, dict) else err)[:500]
    except Exception:
        return response.text[:500]

