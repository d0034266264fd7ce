"""Which scorer a search runs with: `verifier` (the task's exact checks) or a PRM.

A PRM is a folder or a Hugging Face Hub ID: ponder's own reward models (`reward_config.json`,
loaded by `ponder.rewards.model.load_prm`) or a published one, Math-Shepherd's or
Qwen2.5-Math-PRM's format (`ponder.rewards.published`), each imported only then, so plain
search does not pay for it; a folder that is none of them is reported as such.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from ponder.generation.base import Generator
from ponder.models.hub import hub_snapshot, is_hub_id
from ponder.rewards.base import Scorer, VerifierScorer
from ponder.rewards.model import CONFIG_FILE, load_prm
from ponder.rewards.published import load_published_prm
from ponder.tasks.base import Problem, Task


def load_scorer(spec: str | None, task: Task, problems: list[Problem],
                policy: Callable[[], Generator] | None = None, seed: int = 0) -> Scorer | None:
    """None for no scorer (`None`, "" or "none"); the task verifier for "verifier"; a step
    verifier that needs no labels, "rollout[:k=8:...]" or "judge[:model=DIR:...]" (see
    `STEP_VERIFIERS`; `policy` opens a fresh engine of the policy for them, `seed` seeds the
    rollouts); else the PRM in the folder (or Hub ID) `spec`: ponder's own format when the
    folder has its `reward_config.json`, else a published PRM (Math-Shepherd or
    Qwen2.5-Math-PRM, detected as `ponder.rewards.published` says), which splits outcomes on
    the task's step delimiter."""
    if spec is None or spec in ("", "none"):
        return None
    if str(spec).startswith(("http://", "https://")):  # a PRM served by another process (ponder.rewards.remote)
        from ponder.rewards.remote import HTTPScorer

        return HTTPScorer(str(spec), delimiter=task.step_delimiter)
    if spec == "verifier":
        return VerifierScorer(task, problems)
    if str(spec).split(":", 1)[0] in STEP_VERIFIERS and not Path(spec).exists():
        return step_verifier(spec, task, problems, policy, seed)

    path = Path(spec)
    if not path.exists() and is_hub_id(spec):
        path = hub_snapshot(spec)
    if not path.exists():
        raise FileNotFoundError(f"scorer {spec!r}: expected 'verifier' or a PRM directory (ponder's, Math-Shepherd or "
                                f"Qwen2.5-Math-PRM) or the Hub ID of one, and {path} does not exist")
    if not path.is_dir():
        raise ValueError(f"scorer {spec!r}: a PRM is a directory (ponder's, Math-Shepherd or Qwen2.5-Math-PRM), "
                         "got a file")

    if (path / CONFIG_FILE).exists():
        return load_prm(str(path))

    return load_published_prm(path, delimiter=task.step_delimiter)


STEP_VERIFIERS = {
    "rollout": {"k": int, "temperature": float, "max_tokens": int, "estimate": str, "early_stop": bool},
    "judge": {"model": str, "engine": str, "yes": str, "no": str},
}
"""The label-free step verifiers (ponder.annotate.verifiers) and the options their spec takes,
e.g. `rollout:k=4:estimate=soft` or `judge:model=runs/x/model:yes= yes:no= no`"""


def parse_spec(spec: str) -> tuple[str, dict]:
    """("rollout", {"k": 4}) from "rollout:k=4": the kind and its typed options, with an error
    naming the option and what it takes for anything else."""
    kind, _, rest = spec.partition(":")
    fields, options = STEP_VERIFIERS[kind], {}
    # ':' between options, not ',': commands that take a list of scorers split on commas
    for item in filter(None, rest.split(":")):
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or name not in fields:
            raise ValueError(f"scorer {spec!r}: expected {kind}[:name=value:...] with names among "
                             f"{', '.join(fields)}, got {item!r}")
        want = fields[name]
        try:
            if want is bool:
                if value.strip().lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(value)
                options[name] = value.strip().lower() in ("1", "true", "yes")
            else:
                options[name] = want(value.strip()) if want is not str else value
        except ValueError:
            raise ValueError(f"scorer {spec!r}: {name} takes {want.__name__ if want is not bool else 'true or false'}, "
                             f"got {value!r}") from None
    return kind, options


def step_verifier(spec: str, task: Task, problems: list[Problem], policy: Callable[[], Generator] | None,
                  seed: int) -> Scorer:
    """The rollout verifier or step judge of `spec`, each on an engine of its own (so the
    policy's generation count and the verifier's scorer count stay apart): the policy's, or for
    a judge with `model=`, that model's."""
    from ponder.annotate.verifiers import RolloutVerifier, StepJudge

    kind, options = parse_spec(spec)
    if kind == "judge" and "model" in options:
        from ponder.generation.factory import make_engine

        engine = make_engine(options.pop("engine", "torch"), options.pop("model"))
    else:
        if policy is None:
            raise ValueError(f"scorer {spec!r} runs the policy model, and this command has none to give it"
                             + ("; name a judge model: judge:model=DIR" if kind == "judge" else ""))
        options.pop("engine", None)
        engine = policy()
    if kind == "rollout":
        return RolloutVerifier(engine, task, problems, seed=seed, **options)
    return StepJudge(engine, **options)
