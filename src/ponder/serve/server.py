"""`PonderServer`: ponder's torch engine behind an OpenAI-compatible HTTP API.

    server = PonderServer(model, tokenizer, "tiny", port=8000)
    server.serve_forever()          # until server.shutdown() from another thread

Routes (vLLM's shapes, so one client speaks to `vllm serve` and `ponder serve` alike):

    GET  /v1/models                 the served model, with max_model_len
    GET  /health                    200 once the server accepts requests
    GET  /ponder/stats              engine calls and the requests they carried (batching)
    POST /v1/completions            text or token-id prompts; logprobs, echo, return_token_ids
    POST /v1/chat/completions       messages through the chat template
    POST /tokenize, /detokenize     vLLM's tokenizer endpoints
    POST /update_weights_from_disk  SGLang's weight sync: {"model_path": DIR}

A request body may carry the `ponder` extension (extension.py) to be answered with
test-time search. The standard library's `ThreadingHTTPServer` gives each connection a
thread; those threads parse and check requests (protocol.py), and one engine thread runs
everything that touches the engine (batcher.py). Every error is an OpenAI-style error
object: 400 for a bad field, 401 for a missing or wrong API key, 404 for an unknown route
or model, 405 for a wrong method, and 500 with a one-line message (the traceback goes to
the server's log, never into the response).
"""
from __future__ import annotations

import hmac
import json
import sys
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from ponder.serve.batcher import Batcher
from ponder.serve.protocol import (
    APIError,
    bad,
    check_model,
    parse_chat,
    parse_completion,
    parse_detokenize,
    parse_tokenize,
)
from ponder.serve.responses import chat_response, completion_response, envelope


class PonderServer:
    """The model, its engine and batcher, and the routes; `serve_forever` answers HTTP."""

    def __init__(self, model, tokenizer, name: str, host: str = "127.0.0.1", port: int = 8000,
                 batch_size: int = 64, max_batch_wait_ms: float = 5.0, api_key: str | None = None,
                 log: Callable[[str], None] | None = None):
        """`batch_size`: rows the engine decodes together, and the rows the batcher stops
        waiting at. `max_batch_wait_ms`: how long the batcher waits after a request arrives
        for others to share its engine call. `api_key`: required as `Authorization: Bearer`
        on every route but /health. `log`: where the one-line request log goes (stderr)."""
        from ponder.generation import make_engine

        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.batch_size = batch_size
        self.engine = make_engine("torch", model, tokenizer=tokenizer, batch_size=batch_size)
        self.batcher = Batcher(self.engine, max_batch_wait_ms / 1000, batch_size)
        self.max_len = int(getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length)
        self.vocab = model.get_input_embeddings().num_embeddings
        self.api_key = api_key
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.created = int(time.time())
        self._plain_engine = None  # built on first use: search on a completions text (see _search)
        self._prms: dict = {}  # PRM scorers loaded for the search extension, by directory
        self.routes = {
            "/v1/models": ("GET", self.models),
            "/health": ("GET", lambda: {"status": "ok"}),
            "/ponder/stats": ("GET", self.stats),
            "/v1/completions": ("POST", self.completions),
            "/v1/chat/completions": ("POST", self.chat),
            "/tokenize": ("POST", self.tokenize),
            "/detokenize": ("POST", self.detokenize),
            "/update_weights_from_disk": ("POST", self.update_weights),
        }
        self.httpd = ThreadingHTTPServer((host, port), type("Handler", (_Handler,), {"app": self}))
        self.httpd.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        """Stop accepting, finish the engine work in hand, release the engines. Call it from
        another thread than the one in `serve_forever`."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.batcher.close()
        self.engine.close()
        if self._plain_engine is not None:
            self._plain_engine.close()

    # ----- dispatch -----

    def handle(self, method: str, path: str, headers, raw: bytes) -> tuple[int, dict]:
        """(status, JSON body) of one request; raises APIError for the error responses."""
        path = path.split("?", 1)[0].rstrip("/") or "/"
        if path not in self.routes:
            raise APIError(404, f"no route {path}; this server answers {', '.join(sorted(self.routes))}",
                           code="not_found")
        allowed, fn = self.routes[path]
        if method != allowed:
            raise APIError(405, f"{method} is not allowed on {path}; use {allowed}", code="method_not_allowed")
        if self.api_key is not None and path != "/health":
            given = headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.api_key}".encode()):
                raise APIError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                               code="invalid_api_key")
        if method == "GET":
            return 200, fn()
        try:
            body = json.loads(raw or b"")
        except ValueError as e:
            raise APIError(400, f"the request body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise APIError(400, f"the request body must be a JSON object, got {type(body).__name__}")
        return 200, fn(body)

    # ----- routes -----

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "created": self.created,
                                            "owned_by": "ponder", "root": self.name, "parent": None,
                                            "max_model_len": self.max_len}]}

    def stats(self) -> dict:
        u = self.engine.usage
        return {**self.batcher.stats(), "prefill_tokens": u.prefill_tokens, "generated_tokens": u.generated_tokens,
                "cached_tokens": u.cached_tokens}

    def completions(self, body: dict) -> dict:
        check_model(body, self.name)
        req = parse_completion(body, self.tokenizer, self.vocab, self.max_len)
        if req.extension is not None:
            return self._search("text_completion", body, req)
        gen = self.batcher.generate(req.prompts, req.params, req.seed)
        prompt_logprobs = None
        if req.echo and req.logprobs is not None:
            # Teacher-forced logprobs of prompt tokens 2..P under the request temperature.
            firsts, rests, t = [p[:1] for p in req.prompts], [p[1:] for p in req.prompts], req.params.temperature
            prompt_logprobs = self.batcher.call(lambda: self.engine.logprobs(firsts, rests, t))
        return completion_response(self.name, req, gen, self.tokenizer, prompt_logprobs)

    def chat(self, body: dict) -> dict:
        check_model(body, self.name)
        req = parse_chat(body, self.tokenizer, self.max_len)
        if req.extension is not None:
            return self._search("chat.completion", body, req)
        gen = self.batcher.generate(req.prompts, req.params, req.seed)
        return chat_response(self.name, req, gen, self.tokenizer)

    def tokenize(self, body: dict) -> dict:
        check_model(body, self.name)
        ids = parse_tokenize(body, self.tokenizer)
        return {"count": len(ids), "max_model_len": self.max_len, "tokens": ids, "token_strs": None}

    def detokenize(self, body: dict) -> dict:
        check_model(body, self.name)
        return {"prompt": self.tokenizer.decode(parse_detokenize(body, self.vocab))}

    def update_weights(self, body: dict) -> dict:
        from ponder.serve.weights import check_fits, read_checkpoint

        tensors = read_checkpoint(body.get("model_path"))
        check_fits(tensors, self.model)
        self.batcher.call(lambda: self.engine.update_weights(tensors.items()))
        return {"success": True, "message": f"loaded {len(tensors)} tensors from {body['model_path']}",
                "num_paused_requests": 0}

    # ----- the search extension -----

    def _search(self, kind: str, body: dict, req) -> dict:
        from ponder.serve import extension

        chat = kind == "chat.completion"
        if len(req.texts) != 1 or req.texts[0] is None:
            field = "messages" if chat else "prompt"
            raise bad(field, "the 'ponder' extension searches from one text: a chat request with a single user "
                             "message, or a completions request with one string prompt")
        sr = extension.parse(req.extension, body, self.max_len - len(req.prompts[0]))
        text = req.texts[0]
        result, cached = self.batcher.call(
            lambda: extension.run(sr, self.engine if chat else self._completions_engine(), text, self._prms))
        choice = {"index": 0, "logprobs": None, "finish_reason": "stop", "stop_reason": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": result.text or ""}
        else:
            choice["text"] = result.text or ""
        return {**envelope(kind, self.name), "choices": [choice], **extension.response_fields(result, cached)}

    def _completions_engine(self):
        """The engine for search on a completions text, which is model-ready ("tokenized as
        is"): the served engine templates user texts when the tokenizer has a chat template,
        so such a model gets a second engine over the same weights that does not (engine
        thread only)."""
        if not getattr(self.tokenizer, "chat_template", None):
            return self.engine
        if self._plain_engine is None:
            from ponder.generation import make_engine

            self._plain_engine = make_engine("torch", self.model, tokenizer=self.tokenizer,
                                             batch_size=self.batch_size, chat=False)
        return self._plain_engine


class _Handler(BaseHTTPRequestHandler):
    """One HTTP request -> `app.handle` -> a JSON response and one log line."""

    app: PonderServer
    protocol_version = "HTTP/1.1"
    server_version = "ponder"

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def _dispatch(self, method: str) -> None:
        t0 = time.perf_counter()
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, payload = self.app.handle(method, self.path, self.headers, raw)
        except APIError as e:
            status, payload = e.status, e.body()
        except Exception as e:  # a bug or an engine failure: one line out, the traceback to the log
            self.app.log(traceback.format_exc().rstrip())
            message = " ".join(f"internal error: {type(e).__name__}: {e}".split())
            status, payload = 500, APIError(500, message, type="server_error").body()
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.app.log(f"{method} {self.path} {status} {(time.perf_counter() - t0) * 1000:.0f}ms")

    def log_message(self, format, *args):  # the one line per request above replaces the stdlib's
        pass
