"""The world model of step-level search: how a partial solution grows and how it is scored.

A node is a partial solution: the text and token ids generated so far (no prompt) and the
scorer's score of each of its steps. Growing it means asking the policy for one more step,
i.e. sampling from `root + ids` with the step delimiter as a stop string (kept in the output,
so texts concatenate exactly). The root is the task prompt as model-ready token ids
(`engine.prompt_ids`: chat template applied once), and a node continues from token ids, never
from text: templating `prompt + partial` again would close the user turn after the partial,
and re-tokenising generated text can change its ids on BPE models.

Prefix sharing: the M children of one node are sampled as one prompt with `n=M`, so the
engine prefills the node's text once for all of them (the torch engine copies the prompt's
KV cache rows; vLLM's prefix cache does the same across calls). With `share_prefix=False` each
child is its own prompt and the text is prefilled M times - only useful to measure the
difference.

A step finishes its solution when the model ends the sample (EOS) or the step carries a
final-answer marker (`Answer:`, `\\boxed{`, `</answer>`, `####`); the solution is also
closed, unfinished, at `max_steps` steps or `max_tokens` tokens.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ponder.generation.base import Prompt, Sample, SamplingParams
from ponder.rewards.base import aggregate
from ponder.search.base import Candidate, SearchParams, SearchContext, seed_for
from ponder.tasks.answers import FINAL_MARKER
from ponder.tasks.base import Problem



@dataclass
class Node:
    """A partial (or finished) solution in a search tree."""

    text: str = ""
    """the solution so far, without the prompt"""
    ids: list[int] = field(default_factory=list)
    """its token ids, as the policy generated them"""
    tokens: int = 0
    """generated tokens in `text`"""
    steps: int = 0
    """steps in `text`"""
    done: bool = False
    """finished (EOS or final answer) or closed at a budget"""
    step_scores: list[float] = field(default_factory=list)
    score: float = 0.0
    """aggregate of `step_scores` (the search's value of this node)"""
    # MCTS statistics (unused by beam search).
    visits: int = 0
    value_sum: float = 0.0
    children: list["Node"] = field(default_factory=list)

    def child(self, sample: Sample, cfg: SearchParams) -> "Node":
        text = self.text + sample.text
        ended = sample.finish_reason == "stop" and sample.stop_reason is None  # EOS
        done = (ended or FINAL_MARKER.search(sample.text) is not None
                or self.steps + 1 >= cfg.max_steps or self.tokens + sample.num_tokens >= cfg.max_tokens)
        return Node(text=text, ids=self.ids + sample.token_ids, tokens=self.tokens + sample.num_tokens,
                    steps=self.steps + 1, done=done)


def generate(ctx: SearchContext, prompts: list[Prompt], params: SamplingParams) -> list[list[Sample]]:
    """`ctx.generator.generate` (prompts are model-ready ids or user texts)."""
    return ctx.generator.generate(prompts, params)


def root_ids(ctx: SearchContext, problem: Problem) -> list[int]:
    """The task prompt as model-ready token ids (the chat template applied once, if any)."""
    return ctx.generator.prompt_ids([ctx.task.prompt(problem)])[0]


class StepPolicy:
    """Grows nodes of one problem one step at a time; each call draws fresh seeds."""

    def __init__(self, ctx: SearchContext, problem: Problem, cfg: SearchParams):
        self.ctx, self.problem, self.cfg = ctx, problem, cfg
        self.root = root_ids(ctx, problem)
        self.calls = 0

    def params(self, n: int, temperature: float | None = None, max_tokens: int | None = None) -> SamplingParams:
        self.calls += 1
        delim = self.ctx.task.step_delimiter
        return SamplingParams(
            n=n, temperature=self.cfg.temperature if temperature is None else temperature, top_p=self.cfg.top_p,
            max_tokens=max_tokens or self.cfg.max_step_tokens, stop=[delim], include_stop_str_in_output=True,
            seed=seed_for(self.cfg.seed, self.problem, self.calls), logprobs=False,
        )

    def expand(self, nodes: list[Node], m: int, temperature: float | None = None) -> list[list[Node]]:
        """M children of each node (one step each), sampled in one engine call."""
        if not nodes:
            return []
        # A step may not run past the solution's token budget (the call's largest remaining
        # budget, so a solution may end up to one step over it when nodes differ).
        room = max(self.cfg.max_tokens - node.tokens for node in nodes)
        params = self.params(m, temperature, max_tokens=max(1, min(self.cfg.max_step_tokens, room)))
        texts = [self.root + node.ids for node in nodes]
        if self.cfg.share_prefix or m == 1:
            out = generate(self.ctx, texts, params)
        else:  # each child its own prompt: the node's text is prefilled m times
            params.n = 1
            flat = generate(self.ctx, [t for t in texts for _ in range(m)], params)
            out = [[flat[i * m + j][0] for j in range(m)] for i in range(len(nodes))]
        return [[node.child(s, self.cfg) for s in samples] for node, samples in zip(nodes, out)]

    def rollout(self, nodes: list[Node], steps: int) -> list[Node]:
        """Each node continued greedily (T=0) by up to `steps` steps, or until it finishes."""
        current = list(nodes)
        for _ in range(steps):
            open_ = [i for i, node in enumerate(current) if not node.done]
            if not open_:
                break
            grown = self.expand([current[i] for i in open_], 1, temperature=0.0)
            for i, [child] in zip(open_, grown):
                current[i] = child
        return current

    def score(self, nodes: list[Node]) -> None:
        """Set each node's step scores and aggregate score with the context's scorer."""
        if not nodes:
            return
        scorer = self.ctx.need_scorer("step-level search")
        prompt = self.ctx.task.prompt(self.problem)
        steps = [self.ctx.task.split_steps(node.text) for node in nodes]
        scores = scorer.score_steps([prompt] * len(nodes), steps)
        for node, s in zip(nodes, scores):
            node.step_scores = list(s)
            node.score = aggregate(node.step_scores, self.cfg.aggregation)

    def candidate(self, node: Node) -> Candidate:
        return Candidate(node.text, self.ctx.task.extract_answer(node.text), node.score, node.step_scores)
