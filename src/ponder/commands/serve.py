"""`ponder serve`: serve a model over vLLM's OpenAI-compatible API, batching concurrent requests (see ponder.serve)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from ponder.config import ConfigError, require
from ponder.options import DeviceField


@dataclass
class Config(DeviceField):
    model: str = ""
    """model dir, .gguf, smollm2, or a run name under runs/"""
    host: str = "127.0.0.1"
    """address to listen on (beyond loopback, set an API key)"""
    port: int = 8000
    """port to listen on (0: any free port; the line printed says which)"""
    served_model_name: str | None = None
    """the model's name in the API (default: the model option as given; an absolute path: its last two parts)"""
    batch_size: int = 64
    """rows (prompts x n) the engine decodes together"""
    max_batch_wait_ms: float = 5.0
    """how long a request waits for others to share its engine call"""
    api_key: str | None = None
    """require 'Authorization: Bearer KEY' on every route but /health (default: $PONDER_API_KEY)"""
    allow_weight_updates: str | None = None
    """let POST /update_weights_from_disk load folders inside this one (default: weight updates off)"""
    allowed_origins: list[str] = field(default_factory=list)
    """web origins (scheme://host[:port], or *) whose pages may call the API (default: none)"""
    task: str | None = None
    """task of the search extension: steps and answers (default: the model's ponder training task, else arith)"""
    task_args: dict = field(default_factory=dict)
    """task knobs, e.g. instruction=false"""
    scorer: str | None = None
    """PRM (a directory, Hub ID, or a scoring server's URL) that the search extension uses as scorer 'prm'; a local
    PRM is also served on /pooling and /v1/score_steps (default: none)"""
    auto_policy: str | None = None
    """a `ponder scale` run (its directory or scale.json) whose compute-optimal choices answer requests with
    "ponder": {"strategy": "auto", "budget": TOKENS}: strategy and N per request from its predicted difficulty
    (default: strategy 'auto' off)"""
    max_body_mb: float = 4.0
    """request body size, at most (413 beyond)"""
    max_prompt_tokens: int = 0
    """tokens of one prompt, at most (0: the model's context)"""
    max_n: int = 128
    """samples per request (prompts x n), at most"""
    max_request_tokens: int = 262144
    """generated tokens one request may ask for (prompts x n x max_tokens; a search's n x max_tokens), at most"""
    max_search_n: int = 64
    """n and beam_width of a search request, at most"""
    max_pending: int = 1024
    """generation requests in progress at once (503 beyond)"""
    backlog: int = 1024
    """connections waiting to be accepted, at most"""


def served_name(cfg: Config) -> str:
    """The model's name in the API: an absolute path would tell clients the server's folders."""
    if cfg.served_model_name:
        return cfg.served_model_name
    if os.path.isabs(cfg.model):
        parts = [p for p in cfg.model.split(os.sep) if p]
        return "/".join(parts[-2:]) or cfg.model
    return cfg.model


def run(cfg: Config) -> None:
    import signal
    import sys
    import threading

    from ponder.commands.common import resolve_model, resolve_task
    from ponder.models import load_model, resolve_model_path
    from ponder.serve.guard import Guard, startup_problems

    if not cfg.model:
        raise ConfigError("--model is required: a model dir, .gguf, smollm2, or a run name")
    require(cfg, positive=("batch_size", "max_body_mb", "max_n", "max_request_tokens", "max_search_n", "max_pending",
                           "backlog"),
            non_negative=("max_batch_wait_ms", "port", "max_prompt_tokens"))
    if cfg.port > 65535:
        raise ConfigError(f"--port {cfg.port}: a TCP port is 0 to 65535 (0: any free port)")
    weights_dir = None
    if cfg.allow_weight_updates is not None:
        if not os.path.isdir(cfg.allow_weight_updates):
            raise ConfigError(f"--allow-weight-updates {cfg.allow_weight_updates}: no such folder")
        weights_dir = os.path.realpath(cfg.allow_weight_updates)
    guard = Guard(api_key=cfg.api_key or os.environ.get("PONDER_API_KEY") or None,
                  allowed_origins=list(cfg.allowed_origins), weights_dir=weights_dir,
                  max_body_bytes=int(cfg.max_body_mb * 2**20), max_prompt_tokens=cfg.max_prompt_tokens or None,
                  max_n=cfg.max_n, max_request_tokens=cfg.max_request_tokens, max_search_n=cfg.max_search_n,
                  max_pending=cfg.max_pending, backlog=cfg.backlog)
    error, warnings = startup_problems(cfg.host, guard)
    if error:
        raise ConfigError(error)
    for line in warnings:
        print(line, file=sys.stderr, flush=True)
    path = resolve_model(cfg.model)
    resolve_model_path(path)  # a bad name fails here, before torch is imported
    resolve_task(cfg, cfg.model)
    setup = search_setup(cfg)
    if setup.policy is not None:
        for line in policy_lines(setup.policy, cfg.scorer):
            print(line, file=sys.stderr, flush=True)
    model, tokenizer = load_model(path, device=cfg.device)

    from ponder.serve import PonderServer

    name = served_name(cfg)
    try:
        server = PonderServer(model, tokenizer, name, host=cfg.host, port=cfg.port, batch_size=cfg.batch_size,
                              max_batch_wait_ms=cfg.max_batch_wait_ms, guard=guard, setup=setup)
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


def search_setup(cfg: Config):
    """The search extension's task and PRM, fixed now: no request names a file on this machine."""
    from ponder.generation.base import EngineError
    from ponder.search.scorers import load_scorer
    from ponder.serve.extension import Setup
    from ponder.tasks import get_task

    try:
        task = get_task(cfg.task, **cfg.task_args)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"--task {cfg.task}: {e}") from None
    prm = None
    if cfg.scorer:
        if cfg.scorer in ("none", "verifier"):
            raise ConfigError(f"--scorer {cfg.scorer}: give a PRM directory; requests choose 'none' or 'verifier' "
                              "themselves")
        try:
            prm = load_scorer(cfg.scorer, task, [])
        except (OSError, ValueError, EngineError) as e:
            raise ConfigError(f"--scorer: {e}") from None
    policy = None
    if cfg.auto_policy:
        from ponder.search.auto import load_policy

        try:
            policy = load_policy(cfg.auto_policy, prm=prm is not None, max_n=cfg.max_search_n,
                                 max_generated=cfg.max_request_tokens)
        except ValueError as e:
            raise ConfigError(f"--auto-policy {e}") from None
        if (policy.task, policy.task_args) != (cfg.task, cfg.task_args):
            raise ConfigError(f"--auto-policy {policy.source}: the run searched task {policy.task!r} "
                              f"{policy.task_args or ''}, this server's task is {cfg.task!r} {cfg.task_args or ''} "
                              "(--task, --task-arg): its accuracies say nothing about these problems")
    return Setup(task, cfg.task, prm, served_name(Config(model=cfg.scorer)) if cfg.scorer else None, policy)


def policy_lines(policy, scorer: str | None) -> list[str]:
    """What the server says at start about strategy 'auto''s policy (`scorer`: the server's PRM)."""
    lines = [f"strategy 'auto': {policy.source}, {len(policy.labels)} difficulty bins predicted from the "
             f"{policy.predictor} of {policy.probe_n} probe samples (~{policy.probe_tokens:.0f} {policy.compute} "
             f"tokens), budgets from {policy.min_budget():.0f} {policy.compute} tokens"]
    if policy.needs_prm and policy.scorer != scorer:
        lines.append(f"strategy 'auto': warning: the run scored with the PRM {policy.scorer}, this server with "
                     f"{scorer}; its choices hold for the run's PRM")
    lines += [f"strategy 'auto' leaves out {d}" for d in policy.dropped]
    return lines
