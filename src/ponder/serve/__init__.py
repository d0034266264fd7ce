"""`ponder serve`: an OpenAI-compatible HTTP server (vLLM's dialect) over ponder's torch engine.

    from ponder.serve import PonderServer
    server = PonderServer(model, tokenizer, "tiny", port=8000)
    server.serve_forever()

guard.py decides what the server lets in (keys, web origins, the weight folder, request
bounds), protocol.py checks request bodies, batcher.py batches concurrent requests into
engine calls on one engine thread, responses.py shapes the answers, extension.py answers the
`ponder` extension with test-time search, weights.py loads new weights from an allowed
folder, and server.py holds the routes.
"""
from ponder.serve.server import PonderServer

__all__ = ["PonderServer"]
