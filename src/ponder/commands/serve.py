"""`ponder serve`: serve a model over vLLM's OpenAI-compatible API, batching concurrent requests (see ponder.serve)."""
from __future__ import annotations

import os
from dataclasses import dataclass

from ponder.config import ConfigError, require


@dataclass
class Config:
    model: str = ""
    """model dir, .gguf, smollm2, or a run name under runs/"""
    host: str = "127.0.0.1"
    """address to listen on"""
    port: int = 8000
    """port to listen on (0: any free port; the line printed says which)"""
    served_model_name: str | None = None
    """the model's name in the API (default: the model option as given)"""
    batch_size: int = 64
    """rows (prompts x n) the engine decodes together"""
    max_batch_wait_ms: float = 5.0
    """how long a request waits for others to share its engine call"""
    api_key: str | None = None
    """require 'Authorization: Bearer KEY' on every route but /health (default: $PONDER_API_KEY)"""


def run(cfg: Config) -> None:
    import signal
    import sys
    import threading

    from ponder.commands.common import resolve_model
    from ponder.models import load_model, resolve_model_path

    if not cfg.model:
        raise ConfigError("--model is required: a model dir, .gguf, smollm2, or a run name")
    require(cfg, positive=("batch_size",), non_negative=("max_batch_wait_ms", "port"))
    path = resolve_model(cfg.model)
    resolve_model_path(path)  # a bad name fails here, before torch is imported
    model, tokenizer = load_model(path)

    from ponder.serve import PonderServer

    name = cfg.served_model_name or cfg.model
    try:
        server = PonderServer(model, tokenizer, name, host=cfg.host, port=cfg.port, batch_size=cfg.batch_size,
                              max_batch_wait_ms=cfg.max_batch_wait_ms,
                              api_key=cfg.api_key or os.environ.get("PONDER_API_KEY"))
    except OSError as e:
        raise ConfigError(f"cannot listen on {cfg.host}:{cfg.port}: {e}") from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, name="ponder-http", daemon=True).start()
    print(f"serving {name} on {server.url}", flush=True)
    while not stop.wait(0.5):
        pass
    print("shutting down", file=sys.stderr, flush=True)
    server.shutdown()
