"""The demo's options (`DemoConfig`), their checks, and `--quick`'s small budgets."""
from __future__ import annotations

from dataclasses import dataclass, field

from ponder.config import ConfigError, require
from ponder.generation.factory import is_url


@dataclass
class DemoConfig:
    task: str = "countdown"
    """built-in task to learn (countdown: many right equations per problem, so sampled solutions
    differ and RL has something to choose between; on arith, with one reference path, it did not)"""
    task_args: dict = field(default_factory=dict)
    """knobs passed to the task (e.g. count, max_number); none given: the demo's own for that task
    (DEMO_TASK_ARGS: 3 numbers up to 30 for countdown; the bare-question prompt, which keeps the
    character-level model's sequences short)"""
    model: str = "tiny:1m"
    """model to start from: tiny:<preset> builds one from scratch, or a local path"""
    n_train: int = 20000
    """training problems (reference solutions) for SFT"""
    sft_steps: int = 1500
    """SFT optimiser steps"""
    batch_size: int = 32
    """SFT batch size"""
    lr: float = 3e-3
    """SFT peak learning rate"""
    warmup_steps: int = 30
    """SFT warm-up steps"""
    eval_n: int = 300
    """held-out test problems"""
    eval_k: int = 8
    """samples per problem for pass@k / maj@k"""
    temperature: float = 0.7
    """sampling temperature for pass@k / maj@k and the scaling sweep"""
    max_tokens: int = 80
    """generated tokens per solution"""
    dev_n: int = 64
    """held-out problems watched during training (disjoint from the eval_n)"""
    annotate_n: int = 96
    """training problems whose sampled solutions are annotated"""
    annotate_samples: int = 4
    """solutions sampled per annotated problem"""
    annotate_k: int = 8
    """rollouts per prefix for Math-Shepherd and OmegaPRM"""
    prm_steps: int = 300
    """PRM optimiser steps"""
    prm_eval_n: int = 60
    """held-out problems for the PRM's F1 and best-of-N"""
    prm_eval_samples: int = 8
    """samples per problem for the PRM evaluation"""
    rl_steps: int = 200
    """GRPO steps (one rollout batch each)"""
    rl_prompts: int = 16
    """prompts per GRPO step"""
    rl_group: int = 8
    """samples per prompt (G)"""
    rl_lr: float = 1e-4
    """GRPO learning rate (constant, no KL)"""
    rl_estimator: str = "process_grpo"
    """grpo: the outcome verifier is the only reward; process_grpo: each step is rewarded by the
    task's exact step checker instead (DeepSeekMath's process supervision; needs a task with one)"""
    scale_n: int = 80
    """held-out problems in the test-time scaling sweep and the equal-compute comparison (at 40,
    the comparison's paired standard error, about 0.08, hid a gain of 0.1)"""
    scale_budgets: list[int] = field(default_factory=lambda: [1, 4, 16])
    """budgets N of the sweep"""
    scale_strategies: list[str] = field(default_factory=lambda: ["greedy", "majority", "best_of_n", "beam"])
    """strategies of the sweep (best_of_n and beam use the PRM)"""
    compare_strategy: str = "beam"
    """the PRM-guided strategy the report compares with majority vote (fixed before the run)"""
    compare_budget: int = 16
    """the budget N of that comparison (both sides spend N samples or beams)"""
    equal_compute_scorer: str = "rollout:k=2"
    """the label-free step verifier of the second fixed comparison: best_of_n guided by it, at
    the largest N of `equal_compute_budgets` whose mean total tokens (generated + prefill +
    scorer) fit those of majority@`compare_budget`, against that majority (the rollout
    verifier: Math-Shepherd's Monte Carlo value of each step at test time, k rollouts a step)"""
    equal_compute_budgets: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 6, 8])
    """the N tried, in order, for that comparison (the sweep stops at the first that overspends)"""
    engine: str = "torch"
    """engine that samples from the trained models (evaluation, annotation, RL rollouts,
    scaling sweep): torch or vllm. A server URL does not fit: the demo trains its own models"""
    seed: int = 0
    """seed for data, initialisation and sampling"""
    workers: int = 1
    """Ray workers for the evaluation, annotation and scaling stages, each with its own engine
    (1: this process; see ponder.parallel). Training stays in this process"""
    ray_address: str | None = None
    """Ray cluster to join (default: $RAY_ADDRESS, else a local Ray started here)"""

    def __post_init__(self):
        if not self.task_args:
            self.task_args = dict(DEMO_TASK_ARGS.get(self.task, {}))

    def check(self) -> None:
        """Refuse what the pipeline cannot run, naming the option (before any work)."""
        if is_url(self.engine):
            raise ConfigError(f"--engine {self.engine}: the demo trains its own models and samples from each in "
                              "turn, which a server serving one model cannot do; use --engine torch or --engine vllm")
        require(self, choices={"engine": ("torch", "vllm"), "rl_estimator": ("grpo", "process_grpo")})
        require(self, positive=("n_train", "sft_steps", "batch_size", "eval_n", "dev_n", "max_tokens", "annotate_n",
                                "annotate_samples", "annotate_k", "prm_steps", "prm_eval_n", "prm_eval_samples",
                                "rl_steps", "rl_prompts", "rl_group", "scale_n", "compare_budget", "lr", "rl_lr"),
                non_negative=("eval_k", "temperature"))
        if self.rl_group < 2:
            raise ConfigError(f"--rl-group {self.rl_group}: GRPO compares each sample with the others of its group, "
                              "so it needs at least 2 samples per prompt")
        if self.compare_budget not in self.scale_budgets or self.compare_strategy not in self.scale_strategies \
                or "majority" not in self.scale_strategies:
            raise ConfigError(f"the fixed comparison {self.compare_strategy}@{self.compare_budget} vs majority@"
                              f"{self.compare_budget} must be in the sweep: scale_strategies {self.scale_strategies}, "
                              f"scale_budgets {self.scale_budgets}")
        if not self.equal_compute_budgets or any(not isinstance(n, int) or n < 1 for n in self.equal_compute_budgets):
            raise ConfigError(f"--equal-compute-budgets {self.equal_compute_budgets}: give positive integers N, e.g. 1,2,4")
        from ponder.search.scorers import STEP_VERIFIERS, parse_spec

        if self.equal_compute_scorer.split(":", 1)[0] != "rollout":
            raise ConfigError(f"--equal-compute-scorer {self.equal_compute_scorer!r}: expected the rollout verifier, "
                              f"rollout[:k=2:...] (options: {', '.join(STEP_VERIFIERS['rollout'])})")
        try:
            parse_spec(self.equal_compute_scorer)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.rl_estimator == "process_grpo":
            from ponder.tasks import get_task

            if not get_task(self.task, **self.task_args).has_step_checker:
                raise ConfigError(f"--rl-estimator process_grpo rewards steps with the task's exact step checker, "
                                  f"and task {self.task!r} has none; use --rl-estimator grpo")


DEMO_TASK_ARGS = {"countdown": {"count": 3, "max_number": 30, "max_target": 100, "instruction": False},
                  "arith": {"instruction": False}}
"""The demo's task knobs when none are given: problems the 866k model learns within the demo's
SFT budget, asked without the instruction sentence."""


QUICK = dict(n_train=3000, sft_steps=150, batch_size=16, eval_n=24, eval_k=4, dev_n=12, annotate_n=8,
             annotate_samples=2, annotate_k=2, prm_steps=10, prm_eval_n=8, prm_eval_samples=4, rl_steps=3,
             rl_prompts=4, rl_group=4, scale_n=6, scale_budgets=[1, 4], compare_budget=4,
             equal_compute_budgets=[1, 2])
