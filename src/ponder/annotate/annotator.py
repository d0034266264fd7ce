"""The annotator: sample solutions from a policy, label outcomes with the task verifier and
steps with the chosen process labellers, and write training data in TRL's formats
(`ponder annotate` is its command; the demo calls it directly):

    annotator = Annotator(cfg, generator, task)
    summary = annotate(cfg, problems, run_dir, annotator)     # resumable, by chunks

Per problem chunk (resumable, see records.py):
  1. sample `samples` solutions per problem; label each with `task.is_correct` (outcome);
  2. STaR rationalisation (Zelikman et al. 2022, §3.2): for a problem none of whose samples
     is right, sample again with the gold answer as a hint and keep correct ones, stored
     under the original prompt (the hint is not part of the training prompt);
  3. process labels for the policy samples with each method in `methods`:
     `math_shepherd`, `omega_prm`, `judge` (an LLM judge), and `truth` (the task's exact step
     checker, where it has one: the yardstick).

Outputs in the run directory, written when all chunks are done:
  sft.jsonl                 prompt-completion: verified solutions (rejection sampling)
  orm.jsonl                 prompt, completion, label (bool): outcome-labelled samples
  preference.jsonl          prompt, chosen, rejected: correct vs incorrect of one problem
  stepwise_<method>.jsonl   prompt, completions (steps), labels (floats) + metadata
  stepwise_consensus.jsonl  where math_shepherd and judge agree on the first error
  summary.json              counts, cost per method, and quality against `truth` (outputs.py)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ponder.annotate.judge import LLMJudge
from ponder.annotate.math_shepherd import math_shepherd
from ponder.annotate.omega_prm import OmegaConfig, omega_prm
from ponder.annotate.outputs import derived_files, label_quality
from ponder.generation.base import SamplingParams
from ponder.options import DeviceField
from ponder.seeds import derive

METHODS = ("math_shepherd", "omega_prm", "judge", "truth")


@dataclass
class AnnotateConfig(DeviceField):
    task: str | None = None
    """task name or dataset path (GSM8K-format JSONL works); default: the policy's ponder training task, else arith"""
    task_args: dict = field(default_factory=dict)
    """task knobs, e.g. {instruction: false}"""
    split: str = "train"
    """split to draw problems from"""
    n_problems: int = 64
    """problems to annotate"""
    policy: str = "runs/demo/sft/model"
    """policy model that samples solutions and rollouts (local dir, .gguf or smollm2; with a
    server engine, the served model's name)"""
    engine: str = "torch"
    """engine of the policy: torch, torch-bf16, vllm, or an OpenAI-compatible server URL (http://host:port/v1)"""
    samples: int = 4
    """solutions sampled per problem"""
    temperature: float = 1.0
    """sampling temperature for solutions and rollouts"""
    completer: str | None = None
    """model that completes prefixes in the Math-Shepherd and OmegaPRM rollouts (Math-Shepherd's
    "completer", Wang et al. 2024 §3.2), on the policy's engine; default: the policy itself. A
    stronger completer gives labels closer to step correctness, since a weak one often fails from
    a correct prefix and recovers after a wrong one"""
    max_tokens: int = 256
    """tokens per solution or rollout, at most"""
    methods: list[str] = field(default_factory=lambda: ["math_shepherd", "omega_prm", "truth"])
    """process labellers to run: math_shepherd, omega_prm, judge, truth"""
    k: int = 8
    """rollouts per prefix (Math-Shepherd's N, OmegaPRM's k)"""
    omega: dict = field(default_factory=dict)
    """OmegaPRM settings overriding its defaults: alpha, beta, length_scale, c_puct, search_limit"""
    judge_model: str = "smollm2"
    """model used as the LLM judge when `judge` is among the methods"""
    judge_engine: str = "torch"
    """engine of the judge: torch, torch-bf16, vllm, or a server URL"""
    rationalize: bool = True
    """STaR rationalisation for problems with no correct sample"""
    hint_template: str = "{prompt}\n(The answer is {answer}.)\n"
    """prompt with the gold answer as a hint, for rationalisation"""
    max_pairs: int = 4
    """preference pairs per problem, at most"""
    chunk: int = 16
    """problems per resumable chunk"""
    batch_size: int | None = None
    """rows decoded together (default: as many as the KV cache of the longest sequence fits in 1 GiB, 64 to
    512)"""
    seed: int = 0
    """seed for problem choice and sampling"""


class Annotator:
    def __init__(self, cfg: AnnotateConfig, generator, task, judge: LLMJudge | None = None, completer=None):
        unknown = [m for m in cfg.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown annotation method(s) {unknown}: expected some of {', '.join(METHODS)}")
        if "truth" in cfg.methods and not task.has_step_checker:
            raise ValueError(f"method 'truth' needs an exact step checker, and task {task.name!r} has none")
        if "judge" in cfg.methods and judge is None:
            raise ValueError("method 'judge' needs a judge model")
        self.cfg, self.generator, self.task, self.judge = cfg, generator, task, judge
        self.completer = completer if completer is not None else generator
        self.omega_cfg = OmegaConfig(k=cfg.k, **cfg.omega)

    def chunk(self, problems, c: int) -> list[dict]:
        cfg, task, gen = self.cfg, self.task, self.generator
        prompts = [task.prompt(p) for p in problems]
        params = SamplingParams(n=cfg.samples, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                                seed=derive(cfg.seed, "annotate-samples", c), logprobs=False)
        sampled = gen.generate(prompts, params)
        records = []
        for p, prompt, samples in zip(problems, prompts, sampled):
            for s in samples:
                records.append({"problem_id": p.id, "prompt": prompt, "question": p.question, "answer": p.answer,
                                "completion": s.text, "steps": task.split_steps(s.text),
                                "correct": task.is_correct(p, s.text), "tokens": s.num_tokens,
                                "source": "policy", "labels": {}})
        by_problem = {p.id: p for p in problems}
        policy = [r for r in records if r["steps"]]
        if "truth" in cfg.methods:
            for r in policy:
                check = task.check_steps(by_problem[r["problem_id"]], r["steps"])
                r["labels"]["truth"] = {"soft": [float(x) for x in check.labels], "rollouts": 0, "tokens": 0}
        if "math_shepherd" in cfg.methods:
            sols = [(by_problem[r["problem_id"]], r["steps"], r["correct"]) for r in policy]
            for r, lab in zip(policy, math_shepherd(self.completer, task, sols, cfg.k, cfg.temperature, cfg.max_tokens,
                                                    derive(cfg.seed, "math-shepherd", c))):
                r["labels"]["math_shepherd"] = {"soft": lab.soft, "rollouts": lab.rollouts, "tokens": lab.tokens}
        if "omega_prm" in cfg.methods:
            groups, owners = [], []
            for p in problems:
                mine = [r for r in policy if r["problem_id"] == p.id]
                groups.append((p, [(r["steps"], r["correct"], r["tokens"]) for r in mine]))
                owners.append(mine)
            trees = omega_prm(self.completer, task, groups, self.omega_cfg, cfg.temperature, cfg.max_tokens,
                              derive(cfg.seed, "omega-prm", c))
            for p, mine, sols in zip(problems, owners, trees):
                for sol in sols:
                    lab = {"soft": sol.soft, "rollouts": sol.rollouts, "tokens": sol.tokens}
                    if sol.origin is not None:
                        mine[sol.origin]["labels"]["omega_prm"] = lab
                    elif sol.soft is not None:
                        records.append({"problem_id": p.id, "prompt": task.prompt(p), "question": p.question,
                                        "answer": p.answer, "completion": task.step_delimiter.join(sol.steps),
                                        "steps": sol.steps, "correct": sol.correct, "tokens": 0,
                                        "source": "omega_tree", "labels": {"omega_prm": lab}})
        if "judge" in cfg.methods and policy:
            verdicts = self.judge.first_errors([r["question"] for r in policy], [r["steps"] for r in policy])
            for r, v in zip(policy, verdicts):
                r["labels"]["judge"] = {"first_error": v}
        if cfg.rationalize:
            records += self._rationalize(problems, records, c)
        return records

    def _rationalize(self, problems, records, c: int) -> list[dict]:
        cfg, task = self.cfg, self.task
        solved = {r["problem_id"] for r in records if r["correct"]}
        todo = [p for p in problems if p.id not in solved]
        if not todo:
            return []
        hinted = [cfg.hint_template.format(prompt=task.prompt(p), answer=p.answer) for p in todo]
        params = SamplingParams(n=cfg.samples, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                                seed=derive(cfg.seed, "rationalize", c), logprobs=False)
        out = []
        for p, samples in zip(todo, self.generator.generate(hinted, params)):
            for s in samples:
                if task.is_correct(p, s.text):
                    out.append({"problem_id": p.id, "prompt": task.prompt(p), "question": p.question,
                                "answer": p.answer, "completion": s.text, "steps": task.split_steps(s.text),
                                "correct": True, "tokens": s.num_tokens, "source": "rationalized", "labels": {}})
                    break
        return out


def check_omega(omega: dict) -> None:
    """--omega key=value: OmegaPRM's own options, each of its type (converted in place), checked
    before any work: a bad one would otherwise fail deep in the first chunk's tree search."""
    import typing
    from dataclasses import fields

    from ponder.config import ConfigError, _coerce

    hints = typing.get_type_hints(OmegaConfig)
    names = [f.name for f in fields(OmegaConfig) if f.name != "k"]
    for key, value in omega.items():
        if key == "k":
            raise ConfigError("--omega k=...: OmegaPRM's rollouts per estimate are --k (shared with Math-Shepherd)")
        if key not in names:
            raise ConfigError(f"--omega {key}={value}: OmegaPRM has no option {key!r}; expected one of "
                              f"{', '.join(names)}")
        omega[key] = _coerce(value, hints[key], f"--omega {key}")
        if omega[key] < 0:
            raise ConfigError(f"--omega {key}: expected a number >= 0, got {omega[key]}")


def open_annotator(cfg: AnnotateConfig, generator=None, judge_generator=None, completer=None) -> Annotator:
    """An annotator with the engines `cfg` names (those given here are used as they are): in this
    process, or in each Ray worker."""
    from ponder.generation.factory import make_engine
    from ponder.tasks import get_task

    def engine(name, model):
        return make_engine(name, model, batch_size=cfg.batch_size, device=cfg.device)

    generator = generator if generator is not None else engine(cfg.engine, cfg.policy)
    judge = None
    if "judge" in cfg.methods:
        judge = LLMJudge(judge_generator if judge_generator is not None else engine(cfg.judge_engine, cfg.judge_model))
    if completer is None and cfg.completer:
        completer = engine(cfg.engine, cfg.completer)
    return Annotator(cfg, generator, get_task(cfg.task, **cfg.task_args), judge, completer)


def annotate(cfg: AnnotateConfig, problems: list, run_dir: str | Path, annotator: Annotator | None = None,
             workers: int = 1, ray_address: str | None = None, progress: bool = True) -> dict:
    """Annotate `problems` into `run_dir` in chunks of `cfg.chunk` (records.jsonl: a killed run
    resumes after its last finished chunk), then write the derived files and summary.json; the
    summary. With `workers` > 1 the chunks go to Ray workers, each opening its own annotator
    (`open_annotator`) and `annotator` is not used."""
    import json
    import time
    from functools import partial

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ponder.annotate.records import append_chunk, read_complete_chunks
    from ponder.runs import write_json, write_jsonl
    from ponder.parallel import in_order, map_shards

    run_dir = Path(run_dir)
    path = run_dir / "records.jsonl"
    records, start = read_complete_chunks(path)
    chunks = [problems[i:i + cfg.chunk] for i in range(0, len(problems), cfg.chunk)]
    if start:
        done = sum(len(c) for c in chunks[:start])
        Console(stderr=True).print(f"resuming {run_dir}: {done} of {len(problems)} problems already annotated")
    columns = [TextColumn("[bold]annotate"), BarColumn(), TextColumn("{task.completed}/{task.total} problems"),
               TimeElapsedColumn()]
    todo = [(c, chunks[c]) for c in range(start, len(chunks))]
    with Progress(*columns, disable=not progress) as bar:
        job = bar.add_task("annotate", total=len(problems), completed=sum(len(c) for c in chunks[:start]))
        results = map_shards(_annotate_chunk, todo, setup=partial(open_annotator, cfg), workers=workers,
                             ray_address=ray_address, state=annotator if workers <= 1 else None)
        # Chunks are appended in order (what resume reads); one that finishes early waits.
        for done in in_order(results, start):
            new, wall = done.value
            append_chunk(path, done.index, new)
            # Timings live beside the records, which stay byte-identical across reruns.
            with open(run_dir / "chunk_times.jsonl", "a") as f:
                f.write(json.dumps({"chunk": done.index, "wall_s": wall}) + "\n")
            records += [{"chunk": done.index, **r} for r in (new or [{"marker": True}])]
            bar.update(job, advance=len(chunks[done.index]))
    # The run's wall time is the sum over its chunks, whichever invocation computed them.
    wall_s = sum(_chunk_times(run_dir / "chunk_times.jsonl", len(chunks)).values())
    records = [r for r in records if not r.get("marker")]
    files = derived_files(records, cfg)
    for name, rows in files.items():
        write_jsonl(run_dir / f"{name}.jsonl", rows)
    policy = [r for r in records if r["source"] == "policy"]
    summary = {
        "problems": len(problems),
        "samples": len(policy),
        "sample_accuracy": sum(r["correct"] for r in policy) / max(len(policy), 1),
        "rationalized": sum(r["source"] == "rationalized" for r in records),
        "files": {name: len(rows) for name, rows in files.items()},
        "methods": label_quality(records, cfg.methods),
        "wall_s": round(wall_s, 2),
        "resumed_after_chunks": start,
        "run_dir": str(run_dir),
    }
    write_json(run_dir / "summary.json", summary)
    return summary


def _annotate_chunk(annotator: Annotator, c: int, problems) -> tuple[list[dict], float]:
    import time

    t0 = time.time()
    records = annotator.chunk(problems, c)
    return records, round(time.time() - t0, 3)


def _chunk_times(path: Path, n_chunks: int) -> dict[int, float]:
    """Wall seconds per finished chunk (the last time measured wins; a torn line is skipped)."""
    import json

    times = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                times[int(row["chunk"])] = float(row["wall_s"])
            except (ValueError, KeyError, TypeError):
                continue
    return {c: t for c, t in times.items() if c < n_chunks}
