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
    POST /pooling, /v1/score_steps  the --scorer PRM: vLLM's pooling API, and exact step scores (scoring.py)

With `"stream": true`, completions and chat answer with server-sent events as the tokens are
sampled (streaming.py), in chunked transfer encoding so the connection stays open for the
next request; a client whose connection fails a write has its rows dropped like one that
hangs up.

A request body may carry the `ponder` extension (extension.py) to be answered with
test-time search. The standard library's `ThreadingHTTPServer` gives each connection a
thread; those threads check who may ask what (guard.py), parse and check requests
(protocol.py) and wait; one engine thread runs everything that touches the engine
(batcher.py). A waiting thread watches its connection: a client that hangs up has its work
dropped. Every error is an OpenAI-style error object: 400 for a bad field, 401 for a missing
or wrong API key, 403 for what this server does not allow (a foreign web origin, weight
updates when they are off), 404 for an unknown route or model, 405 for a wrong method,
411/413/415 for a body it will not read, 503 when `--max-pending` requests are in progress,
and 500 with a one-line message naming only the error's type (the traceback goes to the
server's log, never into the response).
"""
from __future__ import annotations

import hmac
import json
import select
import socket
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from ponder.generation import make_engine
from ponder.serve import extension
from ponder.serve.batcher import Batcher, ClientGone, request_seeds
from ponder.serve.guard import Guard, check_host_header, is_loopback
from ponder.serve.protocol import (
    APIError,
    Request,
    bad,
    check_model,
    parse_chat,
    parse_completion,
    parse_detokenize,
    parse_tokenize,
)
from ponder.serve.responses import chat_response, completion_response, envelope
from ponder.serve.scoring import Scoring
from ponder.serve.streaming import ChunkWriter, search_chunks
from ponder.serve.weights import check_fits, read_checkpoint
from ponder.tasks import get_task

# Routes that put work on the engine: they count against --max-pending.
ENGINE_ROUTES = ("/v1/completions", "/v1/chat/completions", "/update_weights_from_disk", "/pooling",
                 "/v1/score_steps", "/v1/score_outcomes")
# A connection idle (or a body trickling in) this long is closed.
SOCKET_TIMEOUT_S = 60
# How long the server goes on reading a body it refused as too large, before it closes.
DISCARD_S = 10


class Streamed:
    """A route's streamed answer: the chunks to send as server-sent events, and what to
    release once they are sent or the client is gone (`close`, called exactly once)."""

    def __init__(self, chunks, *on_close: Callable[[], None]):
        self.chunks, self.on_close = chunks, list(on_close)

    def close(self) -> None:
        closing, self.on_close = self.on_close, []
        for fn in [getattr(self.chunks, "close", None), *closing]:
            if fn is not None:
                fn()


class PonderServer:
    """The model, its engine and batcher, and the routes; `serve_forever` answers HTTP."""

    def __init__(self, model, tokenizer, name: str, host: str = "127.0.0.1", port: int = 8000,
                 batch_size: int = 64, max_batch_wait_ms: float = 5.0, guard: Guard | None = None,
                 setup: "extension.Setup | None" = None, log: Callable[[str], None] | None = None):
        """`batch_size`: rows the engine decodes together, and the rows the batcher stops
        waiting at. `max_batch_wait_ms`: how long the batcher waits after a request arrives
        for others to share its engine call. `guard`: keys, origins, weight folder and
        request bounds (guard.py; default: loopback use, no key, weight updates off).
        `setup`: the search extension's task and PRM (default: arith, no PRM). `log`: where
        the one-line request log goes (stderr)."""
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.guard = guard or Guard()
        if setup is None:
            setup = extension.Setup(get_task("arith"), "arith")
        self.setup = setup
        self.batch_size = batch_size
        self.engine = make_engine("torch", model, tokenizer=tokenizer, batch_size=batch_size)
        self.batcher = Batcher(self.engine, max_batch_wait_ms / 1000, batch_size)
        self.max_len = int(getattr(model.config, "max_position_embeddings", None) or tokenizer.model_max_length)
        self.max_prompt = min(self.guard.max_prompt_tokens or self.max_len - 1, self.max_len - 1)
        self.vocab = model.get_input_embeddings().num_embeddings
        self.loopback = is_loopback(host)
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.created = int(time.time())
        self._slots = threading.BoundedSemaphore(self.guard.max_pending)
        self._pending = 0
        self._lock = threading.Lock()
        self.scoring = Scoring(setup.prm, setup.prm_name, name, self.batcher, self.guard)  # scoring.py
        self.routes = {
            "/v1/models": ("GET", self.models),
            "/health": ("GET", lambda: {"status": "ok"}),
            "/ponder/stats": ("GET", self.stats),
            "/v1/completions": ("POST", self.completions),
            "/v1/chat/completions": ("POST", self.chat),
            "/tokenize": ("POST", self.tokenize),
            "/detokenize": ("POST", self.detokenize),
            "/update_weights_from_disk": ("POST", self.update_weights),
            **self.scoring.routes(),
        }
        server = type("Server", (ThreadingHTTPServer,), {"request_queue_size": self.guard.backlog,
                                                          "daemon_threads": True})
        self.httpd = server((host, port), type("Handler", (_Handler,), {"app": self}))

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

    # ----- dispatch -----

    def route(self, method: str, path: str, headers) -> tuple[str, Callable]:
        """(path, handler) of a request, once its route, method and key are right."""
        path = path.split("?", 1)[0].rstrip("/") or "/"
        if path not in self.routes:
            raise APIError(404, f"no route {path}; this server answers {', '.join(sorted(self.routes))}",
                           code="not_found")
        allowed, fn = self.routes[path]
        if method != allowed:
            raise APIError(405, f"{method} is not allowed on {path}; use {allowed}", code="method_not_allowed")
        key = self.guard.api_key
        if key is not None and path != "/health":
            given = headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
                raise APIError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                               code="invalid_api_key")
        return path, fn

    def handle(self, path: str, fn: Callable, method: str, raw: bytes, alive: Callable[[], bool]) -> "dict | Streamed":
        """The JSON answer of a routed request (or its `Streamed` chunks, which hold their
        --max-pending slot until closed); raises APIError for the error responses and
        ClientGone when the client hung up before its answer was ready."""
        if method == "GET":
            return fn()
        try:
            body = json.loads(raw or b"")
        except ValueError as e:
            raise APIError(400, f"the request body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise APIError(400, f"the request body must be a JSON object, got {type(body).__name__}")
        if path not in ENGINE_ROUTES:
            return fn(body)
        if not self._slots.acquire(blocking=False):
            raise APIError(503, f"the server is busy: {self.guard.max_pending} requests are in progress "
                                "(--max-pending); retry shortly", type="server_error", code="overloaded")
        with self._lock:
            self._pending += 1
        out = None
        try:
            out = fn(body, alive)
            if isinstance(out, Streamed):
                out.on_close.append(self._release)
            return out
        finally:
            if not isinstance(out, Streamed):
                self._release()

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1
        self._slots.release()

    # ----- routes -----

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "created": self.created,
                                            "owned_by": "ponder", "root": self.name, "parent": None,
                                            "max_model_len": self.max_len}]}

    def stats(self) -> dict:
        u = self.engine.usage
        with self._lock:
            pending = self._pending
        return {**self.batcher.stats(), "pending_requests": pending, "prefill_tokens": u.prefill_tokens,
                "generated_tokens": u.generated_tokens, "cached_tokens": u.cached_tokens}

    def completions(self, body: dict, alive: Callable[[], bool]) -> dict:
        check_model(body, self.name)
        req = parse_completion(body, self.tokenizer, self.vocab, self.max_len)
        self._check_bounds(req, "prompt")
        if req.extension is not None:
            return self._search("text_completion", body, req, alive)
        if req.stream:
            prompt_logprobs = None
            if req.echo and req.logprobs is not None:  # the prompt's logprobs come first, in the opening chunks
                firsts, rests, t = [p[:1] for p in req.prompts], [p[1:] for p in req.prompts], req.params.temperature
                prompt_logprobs = self.batcher.call(lambda: self.engine.logprobs(firsts, rests, t), alive)
            return self._stream("text_completion", req, alive, prompt_logprobs)
        gen = self.batcher.generate(req.prompts, req.params, request_seeds(req.seed, len(req.prompts)), alive)
        prompt_logprobs = None
        if req.echo and req.logprobs is not None:
            # Teacher-forced logprobs of prompt tokens 2..P under the request temperature.
            firsts, rests, t = [p[:1] for p in req.prompts], [p[1:] for p in req.prompts], req.params.temperature
            prompt_logprobs = self.batcher.call(lambda: self.engine.logprobs(firsts, rests, t), alive)
        return completion_response(self.name, req, gen, self.tokenizer, prompt_logprobs)

    def chat(self, body: dict, alive: Callable[[], bool]) -> dict:
        check_model(body, self.name)
        req = parse_chat(body, self.tokenizer, self.max_len)
        self._check_bounds(req, "messages")
        if req.extension is not None:
            return self._search("chat.completion", body, req, alive)
        if req.stream:
            return self._stream("chat.completion", req, alive)
        gen = self.batcher.generate(req.prompts, req.params, request_seeds(req.seed, len(req.prompts)), alive)
        return chat_response(self.name, req, gen, self.tokenizer)

    def _stream(self, kind: str, req: Request, alive: Callable[[], bool], prompt_logprobs=None) -> Streamed:
        """The request's job queued now; its chunks follow its tokens as the engine samples them."""
        stream = self.batcher.stream(req.prompts, req.params, request_seeds(req.seed, len(req.prompts)), alive)
        writer = ChunkWriter(kind, self.name, req, self.tokenizer, req.include_usage)
        return Streamed(writer.generation(stream, prompt_logprobs), stream.close)

    def _check_bounds(self, req: Request, field: str) -> None:
        """A 400 for a request beyond the server's bounds (--max-prompt-tokens, --max-n,
        --max-request-tokens), before it reaches the engine."""
        g = self.guard
        longest = max(len(p) for p in req.prompts)
        if longest > self.max_prompt:
            raise bad(field, f"'{field}': a prompt has {longest} tokens; this server takes at most {self.max_prompt} "
                             "(--max-prompt-tokens)")
        rows = len(req.prompts) * req.params.n
        if rows > g.max_n:
            raise bad("n", f"'n': the request asks for {rows} samples ({len(req.prompts)} prompt(s) x n = "
                           f"{req.params.n}); this server gives at most {g.max_n} per request (--max-n)")
        if rows * req.params.max_tokens > g.max_request_tokens:
            raise bad("max_tokens", f"'max_tokens': the request may generate {rows} x {req.params.max_tokens} = "
                                    f"{rows * req.params.max_tokens} tokens; this server allows "
                                    f"{g.max_request_tokens} per request (--max-request-tokens)")

    def tokenize(self, body: dict) -> dict:
        if self.scoring.serves(body):  # the PRM's tokenizer, for clients of /pooling
            return self.scoring.tokenize(body)
        check_model(body, self.name)
        ids = parse_tokenize(body, self.tokenizer)
        return {"count": len(ids), "max_model_len": self.max_len, "tokens": ids, "token_strs": None}

    def detokenize(self, body: dict) -> dict:
        check_model(body, self.name)
        return {"prompt": self.tokenizer.decode(parse_detokenize(body, self.vocab))}

    def update_weights(self, body: dict, alive: Callable[[], bool]) -> dict:
        tensors = read_checkpoint(body.get("model_path"), self.guard.weights_dir)
        check_fits(tensors, self.model)
        self.batcher.call(lambda: self.engine.update_weights(tensors.items()), alive)
        return {"success": True, "message": f"loaded {len(tensors)} tensors from {body['model_path']}",
                "num_paused_requests": 0}

    # ----- the search extension -----

    def _search(self, kind: str, body: dict, req: Request, alive: Callable[[], bool]) -> dict:
        chat = kind == "chat.completion"
        if len(req.texts) != 1 or req.texts[0] is None:
            field = "messages" if chat else "prompt"
            raise bad(field, "the 'ponder' extension searches from one text: a chat request with one user "
                             "message (after any system messages), or a completions request with one string prompt")
        sr = extension.parse(req.extension, body, self.max_len - len(req.prompts[0]), self.setup, self.guard)
        # A completions text is model-ready ("tokenized as is"): no chat template.
        engine = extension.RequestGenerator(self.batcher, self.tokenizer, chat, alive, self.guard.max_request_tokens)
        result = extension.run(sr, engine, req.texts[0], self.setup)
        choice = {"index": 0, "logprobs": None, "finish_reason": "stop", "stop_reason": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": result.text or ""}
        else:
            choice["text"] = result.text or ""
        out = {**envelope(kind, self.name), "choices": [choice],
               **extension.response_fields(result, engine.usage.cached_tokens)}
        # Streamed, the answer goes out once the search has chosen it.
        return Streamed(search_chunks(kind, out, req.include_usage)) if req.stream else out


class _Handler(BaseHTTPRequestHandler):
    """One HTTP request -> guard checks -> `app.handle` -> a JSON response and one log line."""

    app: PonderServer
    protocol_version = "HTTP/1.1"
    server_version = "ponder"
    timeout = SOCKET_TIMEOUT_S

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

    def do_OPTIONS(self):
        self._dispatch("OPTIONS")

    def _dispatch(self, method: str) -> None:
        t0 = time.perf_counter()
        app, headers, extra = self.app, {}, {}
        try:
            origin = app.guard.check_origin(self.headers)
            extra = app.guard.cors_headers(origin)
            if app.loopback:
                check_host_header(self.headers)
            if method == "OPTIONS":  # a CORS preflight, from an allowed origin (or none)
                status, payload = 204, None
                extra = app.guard.preflight_headers(origin) if origin else {}
            else:
                path, fn = app.route(method, self.path, self.headers)
                length = app.guard.check_body(self.headers)
                raw = self.rfile.read(length) if length else b""
                if len(raw) < length:
                    raise ClientGone()
                status, payload = 200, app.handle(path, fn, method, raw, self._alive)
                if isinstance(payload, Streamed):
                    return self._send_stream(payload, extra, method, t0)
        except ClientGone:
            self.close_connection = True
            app.log(f"{method} {self.path} client hung up after {(time.perf_counter() - t0) * 1000:.0f}ms; "
                    "its work was dropped")
            return
        except (TimeoutError, ConnectionError):  # a body that stopped arriving
            self.close_connection = True
            return
        except APIError as e:
            status, payload = e.status, e.body()
            if status in (411, 413):  # the body was not read: this connection cannot carry another request
                self.close_connection = True
            if status == 503:
                headers["Retry-After"] = "1"
        except Exception as e:  # a bug or an engine failure: the traceback to the log, never to the client
            app.log(traceback.format_exc().rstrip())
            status, payload = 500, APIError(500, f"internal error ({type(e).__name__}); the server's log has the "
                                                 "details", type="server_error").body()
        data = json.dumps(payload).encode() if payload is not None else b""
        try:
            self.send_response(status)
            for k, v in {**headers, **extra}.items():
                self.send_header(k, v)
            if payload is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            if status == 413:
                self._discard_body()
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        app.log(f"{method} {self.path} {status} {(time.perf_counter() - t0) * 1000:.0f}ms")

    def _send_stream(self, streamed: Streamed, extra: dict, method: str, t0: float) -> None:
        """Server-sent events (`data: {chunk}` lines, then `data: [DONE]`), one HTTP chunk
        each, written as they come. A failure after the 200 went out is an error event."""
        app, ended = self.app, "200"
        try:
            self.send_response(200)
            for k, v in extra.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            # Small writes must leave at once, not wait for the previous one's ACK (Nagle).
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                for chunk in streamed.chunks:
                    self._write_event(json.dumps(chunk))
            except (ClientGone, ConnectionError, TimeoutError):
                raise
            except Exception as e:  # the engine failed mid-stream: the client learns it in the stream
                app.log(traceback.format_exc().rstrip())
                ended = "200 (error event)"
                self._write_event(json.dumps(APIError(500, f"internal error ({type(e).__name__}); the server's log "
                                                           "has the details", type="server_error").body()))
            self._write_event("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
        except (ClientGone, ConnectionError, TimeoutError):  # a failed write: the client is gone too
            self.close_connection = True
            ended = "client hung up; its work was dropped"
        finally:
            streamed.close()
        app.log(f"{method} {self.path} {ended} (streamed) {(time.perf_counter() - t0) * 1000:.0f}ms")

    def _write_event(self, data: str) -> None:
        event = f"data: {data}\n\n".encode()
        self.wfile.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")

    def _discard_body(self) -> None:
        """Read and drop a refused body (a while at most), so that closing the connection does
        not reset it before the client has read the answer."""
        left, deadline = int(self.headers.get("Content-Length") or 0), time.monotonic() + DISCARD_S
        while left > 0 and time.monotonic() < deadline:
            chunk = self.rfile.read1(min(left, 2**16))
            if not chunk:
                break
            left -= len(chunk)

    def _alive(self) -> bool:
        """False once the client has closed its end of the connection (or reset it). Data
        waiting to be read (a pipelined request) is not a hang-up."""
        try:
            ready, _, _ = select.select([self.connection], [], [], 0)
            return not ready or self.connection.recv(1, socket.MSG_PEEK) != b""
        except (OSError, ValueError):
            return False

    def log_message(self, format, *args):  # the one line per request above replaces the stdlib's
        pass
