"""What `ponder serve` lets in: keys, origins, weight folders and the size of a request.

A server on 127.0.0.1 is still reachable by every local process and by every web page open
in the user's browser (a page may POST to http://127.0.0.1:8000 with a `text/plain` body,
which the browser sends without asking the server first). So by default:

- weight updates are off; `--allow-weight-updates DIR` turns them on for folders inside DIR
  only (every shard an index names included), and a server listening beyond loopback must
  then have a key;
- a request carrying an `Origin` header (a browser) is refused unless `--allowed-origins`
  names that origin, and CORS preflights are answered for those origins only;
- a POST must say `Content-Type: application/json` (browsers cannot send that cross-site
  without a preflight, which a foreign origin fails);
- a loopback server answers only requests addressed to a loopback name (`Host`), so a
  hostile DNS name rebound to 127.0.0.1 reaches nothing;
- every request is bounded: body bytes, prompt tokens, `n`, prompts x n x max_tokens, and
  the search extension's budget, each with its own flag and a 4xx answer.

Nothing a request carries names a file on the server: the search extension's task and PRM
are fixed when the server starts.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

from ponder.serve.protocol import APIError

LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


@dataclass
class Guard:
    """The server's access rules and request bounds (the `ponder serve` flags of the same names)."""

    api_key: str | None = None
    """required as 'Authorization: Bearer KEY' on every route but /health"""
    allowed_origins: list[str] = field(default_factory=list)
    """browser origins (scheme://host[:port]) allowed to call the API; '*' allows any"""
    weights_dir: str | None = None
    """folder whose subfolders /update_weights_from_disk may load; None: weight updates off"""
    max_body_bytes: int = 4 * 2**20
    """request body bytes, at most (413 beyond)"""
    max_prompt_tokens: int | None = None
    """tokens of one prompt, at most (None: the model's context)"""
    max_n: int = 128
    """samples per request (prompts x n), at most"""
    max_request_tokens: int = 2**18
    """tokens a request may ask to generate (prompts x n x max_tokens; a search's n x
    max_tokens and the tokens it really generates), at most"""
    max_search_n: int = 64
    """the search extension's n and beam_width, at most"""
    max_pending: int = 1024
    """generation requests admitted at once (queued or running); 503 beyond"""
    backlog: int = 1024
    """connections the kernel holds for the server before it accepts them"""

    def check_origin(self, headers) -> str | None:
        """The request's Origin when it is allowed (None when there is none); a 403 for a
        foreign one."""
        origin = headers.get("Origin")
        if origin is None:
            return None
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return origin
        raise APIError(403, f"requests from the web origin {origin!r} are refused: start ponder serve with "
                            "--allowed-origins naming it to let a page at that origin use this server",
                       code="origin_not_allowed")

    def cors_headers(self, origin: str | None) -> dict:
        if origin is None:
            return {}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}

    def preflight_headers(self, origin: str) -> dict:
        return {**self.cors_headers(origin), "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": "Authorization, Content-Type", "Access-Control-Max-Age": "600"}

    def check_body(self, headers) -> int:
        """The body's length from Content-Length; 411/413/415 for bodies the server will not read."""
        if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
            raise APIError(411, "send the request body with a Content-Length header (chunked bodies are not read)",
                           code="length_required")
        raw = headers.get("Content-Length") or "0"
        if not raw.isdigit():
            raise APIError(400, f"Content-Length must be a number of bytes, got {raw!r}")
        length = int(raw)
        if length > self.max_body_bytes:
            raise APIError(413, f"the request body has {length} bytes; this server reads at most "
                                f"{self.max_body_bytes} (--max-body-mb)", code="request_too_large")
        kind = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if length and kind != "application/json":
            raise APIError(415, f"the request body must be JSON sent as 'Content-Type: application/json', "
                                f"got {kind or 'no Content-Type'!r}", code="unsupported_media_type")
        return length


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) reaches only this machine."""
    host = host.strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addrs) and all(ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addrs)


def check_host_header(headers) -> None:
    """A loopback server's requests must be addressed to a loopback name or address: a page
    whose DNS name was rebound to 127.0.0.1 sends its own name as Host."""
    host = headers.get("Host")
    if host is None:
        return
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if not is_literal_loopback(name):
        raise APIError(403, f"this server listens on loopback and answers requests addressed to localhost or a "
                            f"loopback address only, not to {host!r}", code="host_not_allowed")


def is_literal_loopback(name: str) -> bool:
    """A loopback address or localhost, without asking DNS (the name comes from a request)."""
    name = name.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def startup_problems(host: str, guard: Guard) -> tuple[str | None, list[str]]:
    """(an error that stops the start, warnings to print) for listening on `host` with `guard`."""
    if is_loopback(host):
        return None, []
    if guard.api_key is None and guard.weights_dir is not None:
        return (f"--allow-weight-updates on a server that listens on {host} (beyond this machine) needs a key: "
                "set --api-key or $PONDER_API_KEY"), []
    if guard.api_key is None:
        return None, [f"warning: ponder serve listens on {host} without an API key: anyone who can reach this "
                      "machine can use the model; set --api-key (or $PONDER_API_KEY)"]
    return None, []
