"""`ponder generate`: sample completions from a model and show them with their token counts."""
from __future__ import annotations

from dataclasses import dataclass, field

from ponder.config import ConfigError, require
from ponder.options import DeviceField


@dataclass
class Config(DeviceField):
    model: str = ""
    """model dir, .gguf, smollm2, or a run name under runs/ (with a server engine: the served model's name)"""
    engine: str = "torch"
    """generation engine: torch (in this process; torch-bf16: its Linear layers in bf16), vllm, or an OpenAI-compatible server URL http(s)://host:port/v1"""
    prompts: list[str] = field(default_factory=list, metadata={"csv": False})
    """prompt texts (the engine applies the model's chat template)"""
    task: str | None = None
    """take prompts from this task's test split instead"""
    task_args: dict = field(default_factory=dict)
    """task knobs, e.g. num_ops=3"""
    num_problems: int = 3
    """problems to take from the task"""
    n: int = 1
    """samples per prompt"""
    temperature: float = 0.0
    """sampling temperature (0 = greedy)"""
    top_p: float = 1.0
    """nucleus sampling mass"""
    top_k: int = 0
    """sample among the k likeliest tokens (0 = all)"""
    max_tokens: int = 128
    """generated tokens per sample, at most"""
    stops: list[str] = field(default_factory=list, metadata={"csv": False})
    """stop strings; \\n is a newline"""
    seed: int = 0
    """seed of problem choice and sampling"""


def run(cfg: Config) -> dict:
    from ponder.commands.common import check_context, check_samples, open_engine
    from ponder.generation import SamplingParams, is_url

    if not cfg.model and not is_url(cfg.engine):  # a server serving one model needs no name
        raise ConfigError("--model is required: a model dir, .gguf, smollm2, or a run name")
    require(cfg, positive=("num_problems", "n", "max_tokens"), non_negative=("temperature", "top_k"),
            probability=("top_p",))
    if cfg.prompts and cfg.task:
        raise ConfigError("give either --prompt (your own texts) or --task (prompts from the task's test split, "
                          "checked against its answers), not both")
    if "" in cfg.stops:
        raise ConfigError("--stop '': an empty stop string would end every sample at once; give some text, "
                          "or leave --stop out")
    problems, texts, task = None, list(cfg.prompts), None
    if cfg.task:
        from ponder.tasks import get_task

        task = get_task(cfg.task, **cfg.task_args)
        problems = task.problems("test", n=cfg.num_problems, seed=cfg.seed)
        texts = [task.prompt(p) for p in problems]
    if not texts:
        raise ConfigError("give --prompt TEXT (repeatable) or --task NAME")
    stops = [s.encode().decode("unicode_escape") for s in cfg.stops]
    sp = SamplingParams(n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                        max_tokens=cfg.max_tokens, stop=stops, seed=cfg.seed)
    with open_engine(cfg.engine, cfg.model, device=cfg.device) as gen:
        check_context(gen, texts, cfg.max_tokens)  # names the model's context, so first
        check_samples(len(texts) * cfg.n, cfg.n, cfg.max_tokens)
        outs = gen.generate(texts, sp)
        usage = {"prefill_tokens": gen.usage.prefill_tokens, "generated_tokens": gen.usage.generated_tokens}
    results = []
    for i, (text, samples) in enumerate(zip(texts, outs)):
        rows = []
        for s in samples:
            verdict = None
            if problems is not None:
                verdict = task.is_correct(problems[i], s.text)
            rows.append({"text": s.text, "tokens": s.num_tokens, "finish_reason": s.finish_reason, "correct": verdict,
                         "gold": problems[i].answer if problems is not None else None})
        results.append({"prompt": text, "samples": rows})
    return {"results": results, "usage": usage}


def show(out: dict, console) -> None:
    for i, r in enumerate(out["results"]):
        console.rule(f"prompt {i}")
        console.print(r["prompt"], markup=False)
        for s in r["samples"]:
            verdict = "" if s["correct"] is None else "correct" if s["correct"] else f"wrong (gold {s['gold']})"
            console.print(f"[cyan]--- {s['tokens']} tokens, {s['finish_reason']} {verdict}[/cyan]")
            console.print(s["text"], markup=False)
    u = out["usage"]
    console.print(f"prefill tokens {u['prefill_tokens']}, generated tokens {u['generated_tokens']}")
