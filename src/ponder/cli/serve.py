"""`ponder serve`: a model behind an OpenAI-compatible HTTP API (see ponder.serve)."""
from __future__ import annotations

import signal
import sys
import threading
from typing import Optional

import typer

from ponder.cli import _fail, _resolve_run_model, app


@app.command()
def serve(
    model: str = typer.Option(..., help="model dir, .gguf, smollm2, or a run name under runs/"),
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="port to listen on (0: any free port; the line printed says which)"),
    served_model_name: Optional[str] = typer.Option(None, help="the model's name in the API (default: --model)"),
    batch_size: int = typer.Option(64, help="rows (prompts x n) the engine decodes together"),
    max_batch_wait_ms: float = typer.Option(5.0, help="how long a request waits for others to share its engine call"),
    api_key: Optional[str] = typer.Option(None, envvar="PONDER_API_KEY",
                                          help="require 'Authorization: Bearer KEY' on every route but /health"),
):
    """Serve a model over vLLM's OpenAI-compatible API, batching concurrent requests."""
    from ponder.models import load_model, resolve_model_path

    if batch_size < 1:
        _fail(f"--batch-size must be >= 1, got {batch_size}")
    if max_batch_wait_ms < 0:
        _fail(f"--max-batch-wait-ms must be >= 0, got {max_batch_wait_ms}")
    path = _resolve_run_model(model)
    try:
        resolve_model_path(path)  # a bad name fails here, before torch is imported
        m, tok = load_model(path)
    except (FileNotFoundError, ValueError, OSError) as e:
        _fail(str(e))

    from ponder.serve import PonderServer

    name = served_model_name or model
    try:
        server = PonderServer(m, tok, name, host=host, port=port, batch_size=batch_size,
                              max_batch_wait_ms=max_batch_wait_ms, api_key=api_key)
    except OSError as e:
        _fail(f"cannot listen on {host}:{port}: {e}")

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, name="ponder-http", daemon=True).start()
    print(f"serving {name} on {server.url}", flush=True)
    while not stop.wait(0.5):
        pass
    print("shutting down", file=sys.stderr, flush=True)
    server.shutdown()
