"""`ponder annotate`: sample solutions from a policy, label outcomes with the task verifier
and steps with the chosen process labellers, and write training data in TRL's formats.

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
  summary.json              counts, cost per method, and quality against `truth`
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ponder.annotate.judge import LLMJudge, consensus
from ponder.annotate.math_shepherd import first_error_from_labels, math_shepherd
from ponder.annotate.omega_prm import OmegaConfig, omega_prm
from ponder.generation.base import SamplingParams
from ponder.models.device import DeviceField
from ponder.seeds import derive

METHODS = ("math_shepherd", "omega_prm", "judge", "truth")


@dataclass
class AnnotateConfig(DeviceField):
    run: str = "annotate"
    """run name: outputs go to runs/<run>/ (a rerun resumes where it stopped)"""
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
    batch_size: int = 64
    """rows decoded together"""
    seed: int = 0
    """seed for problem choice and sampling"""
    runs_dir: str = "runs"
    """parent folder of run directories"""
    workers: int = 1
    """Ray workers sharing the chunks, each with its own engine (1: this process; see ponder.scaleout)"""
    ray_address: str | None = None
    """Ray cluster to join (default: $RAY_ADDRESS, else a local Ray started here)"""


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


# ----------------------------------------------------------------------------- outputs
def derived_files(records: list[dict], cfg: AnnotateConfig) -> dict[str, list[dict]]:
    """The training files, from the records (pure function: a resumed run rewrites the same)."""
    files: dict[str, list[dict]] = {"sft": [], "orm": [], "preference": []}
    by_problem: dict[str, list[dict]] = {}
    for r in records:
        if "problem_id" in r:
            by_problem.setdefault(r["problem_id"], []).append(r)
    for pid, rs in by_problem.items():
        seen = set()
        for r in rs:
            if r["correct"] and r["source"] in ("policy", "rationalized") and r["completion"] not in seen:
                seen.add(r["completion"])
                files["sft"].append({"prompt": r["prompt"], "completion": r["completion"]})
        policy = [r for r in rs if r["source"] == "policy"]
        files["orm"] += [{"prompt": r["prompt"], "completion": r["completion"], "label": r["correct"]} for r in policy]
        good = list(dict.fromkeys(r["completion"] for r in policy if r["correct"]))
        bad = list(dict.fromkeys(r["completion"] for r in policy if not r["correct"]))
        pairs = [(g, b) for g in good for b in bad][: cfg.max_pairs]
        files["preference"] += [{"prompt": rs[0]["prompt"], "chosen": g, "rejected": b} for g, b in pairs]
    for method in cfg.methods:
        if method == "judge":
            continue
        rows = []
        for r in records:
            lab = r.get("labels", {}).get(method)
            if lab and lab["soft"] is not None:
                rows.append({"prompt": r["prompt"], "completions": r["steps"], "labels": lab["soft"],
                             "method": method, "source": r["source"], "problem_id": r["problem_id"],
                             "rollouts": lab["rollouts"], "tokens": lab["tokens"]})
        files[f"stepwise_{method}"] = rows
    if "judge" in cfg.methods and "math_shepherd" in cfg.methods:
        rows = []
        for r in records:
            labs = r.get("labels", {})
            if "judge" in labs and "math_shepherd" in labs:
                ms = labs["math_shepherd"]["soft"]
                if consensus(first_error_from_labels(ms), labs["judge"]["first_error"]):
                    rows.append({"prompt": r["prompt"], "completions": r["steps"], "labels": ms,
                                 "method": "consensus", "source": r["source"], "problem_id": r["problem_id"],
                                 "rollouts": labs["math_shepherd"]["rollouts"],
                                 "tokens": labs["math_shepherd"]["tokens"]})
        files["stepwise_consensus"] = rows
    return files


def label_quality(records: list[dict], methods: list[str]) -> dict[str, dict]:
    """Per method, over the policy samples it labelled: first-error accuracy, step-label
    agreement and ProcessBench F1 (the labels read as a verifier: their first 0 step as the
    predicted first error) against `truth` (when present), and rollouts / tokens per labelled
    solution."""
    from ponder.eval.rm import processbench_f1

    policy = [r for r in records if r.get("source") == "policy" and r.get("steps")]
    out = {}
    names = [m for m in methods if m != "truth"] + (["consensus"] if {"judge", "math_shepherd"} <= set(methods) else [])
    for m in names:
        fe_hits = agree = steps = labelled = rollouts = tokens = 0
        predicted, actual = [], []
        total_rollouts = sum(r["labels"].get(m, {}).get("rollouts", 0) or 0 for r in records
                             if m in r.get("labels", {}))
        for r in policy:
            labs = r["labels"]
            if m == "consensus":
                if "math_shepherd" not in labs or "judge" not in labs:
                    continue
                fe = first_error_from_labels(labs["math_shepherd"]["soft"])
                if not consensus(fe, labs["judge"]["first_error"]):
                    continue
                hard = [s > 0 for s in labs["math_shepherd"]["soft"]]
            elif m == "judge":
                fe = labs.get("judge", {}).get("first_error", "invalid")
                if fe == "invalid":
                    continue
                hard = [fe is None or i < fe for i in range(len(r["steps"]))]
            else:
                lab = labs.get(m)
                if not lab or lab["soft"] is None:
                    continue
                fe = first_error_from_labels(lab["soft"])
                hard = [s > 0 for s in lab["soft"]]
                rollouts += lab["rollouts"]
                tokens += lab["tokens"]
            labelled += 1
            if "truth" in labs:
                truth = [s > 0 for s in labs["truth"]["soft"]]
                predicted.append(fe)
                actual.append(first_error_from_labels(labs["truth"]["soft"]))
                fe_hits += fe == actual[-1]
                agree += sum(a == b for a, b in zip(hard, truth))
                steps += len(truth)
        row = {"labelled": labelled, "coverage": labelled / len(policy) if policy else 0.0}
        if any("truth" in r["labels"] for r in policy):
            row["first_error_acc"] = fe_hits / labelled if labelled else 0.0
            row["step_agreement"] = agree / steps if steps else 0.0
            row["processbench_f1"] = processbench_f1(predicted, actual)["f1"]
        if m in ("math_shepherd", "omega_prm"):
            # Cost of labelling the policy's samples (OmegaPRM's tree rollouts that were
            # themselves searched are charged to those rollouts, not to the samples) ...
            row["rollouts_per_solution"] = rollouts / labelled if labelled else 0.0
            row["tokens_per_solution"] = tokens / labelled if labelled else 0.0
            # ... and everything spent over everything labelled, tree rollouts included.
            every = [r for r in records if (r.get("labels", {}).get(m) or {}).get("soft") is not None]
            row["labelled_total"] = len(every)
            row["rollouts_per_labelled"] = total_rollouts / len(every) if every else 0.0
        out[m] = row
    return out
