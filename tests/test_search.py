"""Search strategies on scripted worlds where the right choice is known.

`Scripted` is a Generator whose continuations are fixed: a tree maps the solution so far to
its possible next steps, drawn in turn (the k-th sample ever drawn after a partial solution
is option k mod len, however the samples are spread over prompts), and whole-solution
calls cycle through a list. Its tokens are characters (`ord`), as the engine contract's
token-id continuations need; it counts them as the torch engine does (a prompt's prefill is
shared by its n samples), so compute can be checked exactly.
`StepTable` is a scorer that scores a step by its text and counts the characters it reads.
"""
from __future__ import annotations

import pytest

from ponder.generation.base import Generator, Sample, SamplingParams, Usage
from ponder.rewards.base import Scorer, ScorerUsage
from ponder.search import SearchParams, SearchContext, search
from ponder.search.steps import Node, StepPolicy
from ponder.tasks.base import Problem, Task

ROOT = "Q: 2+3*4?\n"


class Toy(Task):
    name = "toy"

    def prompt(self, problem):
        return ROOT

    def is_correct(self, problem, text):
        return self.extract_answer(text) == problem.answer


PROBLEM = Problem("p0", "2+3*4", "14")


class Scripted(Generator):
    def __init__(self, tree: dict[str, list[str]] | None = None, solutions: list[str] | None = None,
                 think: list[str] | None = None):
        self.tree, self.solutions, self.think = tree or {}, solutions or [], think or []
        self.usage = Usage()
        self.prompts: list[str] = []
        self.drawn: dict[str, int] = {}  # samples drawn so far per partial solution

    def prompt_ids(self, prompts):
        return [[ord(c) for c in p] for p in prompts]

    tokenize = prompt_ids

    def generate(self, prompts, params: SamplingParams, seeds=None):
        out = []
        for i, prompt in enumerate(prompts):
            prompt = prompt if isinstance(prompt, str) else "".join(map(chr, prompt))
            assert prompt.startswith(ROOT) or "previous attempt" in prompt, prompt
            self.prompts.append(prompt)
            self.usage.prefill_tokens += len(prompt)
            out.append([self._one(prompt, j, params) for j in range(params.n)])
        self.usage.calls += 1
        self.usage.generated_tokens += sum(s.num_tokens for row in out for s in row)
        return out

    def _one(self, prompt: str, j: int, params: SamplingParams) -> Sample:
        if params.stop == ["</think>"]:
            text = self.think[min(prompt.count("Wait"), len(self.think) - 1)]
            cut = text[: params.max_tokens]
            done = "</think>" in cut
            text = cut.split("</think>")[0] if done else cut
            return Sample(text, _ids(cut), None, "stop" if done else "length", len(cut), "</think>" if done else None)
        if params.stop:
            prefix = prompt[len(ROOT):]
            options, k = self.tree[prefix], self.drawn.get(prefix, 0)
            self.drawn[prefix] = k + 1
            text = options[k % len(options) if params.temperature > 0 else 0]
            stop = "\n" if text.endswith("\n") else None
            return Sample(text, _ids(text), None, "stop", len(text), stop)
        if "previous attempt" in prompt:
            text = "revised\nAnswer: 14"
        else:
            text = self.solutions[j % len(self.solutions) if params.temperature > 0 else 0]
        return Sample(text, _ids(text), None, "stop", len(text))


def _ids(text: str) -> list[int]:
    return [ord(c) for c in text]


class StepTable(Scorer):
    """Scores a step by its text (default 0.5); outcome = last step's score."""

    def __init__(self, table: dict[str, float]):
        self.table, self.usage = table, ScorerUsage()

    def score_steps(self, prompts, steps):
        self.usage.calls += 1
        self.usage.tokens += sum(len(p) + sum(len(s) for s in st) for p, st in zip(prompts, steps))
        return [[self.table.get(s.strip(), 0.5) for s in st] for st in steps]


def run(strategy, gen, scorer=None, **cfg):
    ctx = SearchContext(gen, Toy(), scorer)
    return search(strategy, ctx, PROBLEM, SearchParams(**cfg))


# ----- whole-solution strategies -----

SOLUTIONS = ["2+12\nAnswer: 14", "5*4\nAnswer: 20", "5*4\nAnswer: 20", "2+3*4=14\nAnswer: 14", "9\nAnswer: 9"]


def test_greedy_takes_the_temperature_zero_sample_and_counts_it():
    gen = Scripted(solutions=SOLUTIONS)
    r = run("greedy", gen)
    assert r.answer == "14" and len(r.candidates) == 1
    assert (r.compute.generated_tokens, r.compute.prefill_tokens) == (len(SOLUTIONS[0]), len(ROOT))


def test_majority_votes_and_scores_vote_shares():
    r = run("majority", Scripted(solutions=SOLUTIONS), n=3)  # 14, 20, 20
    assert r.answer == "20"
    assert [c.score for c in r.candidates] == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    r = run("majority", Scripted(solutions=SOLUTIONS), n=5)  # 14, 20, 20, 14, 9: tie goes to the first seen
    assert r.answer == "14"
    assert r.compute.prefill_tokens == len(ROOT)  # five samples, one prefill


def test_best_of_n_naive_weighted_and_aggregation():
    # Step scores: "2+12" 0.9 then answer 0.2; "5*4" 0.6 then 0.7; "2+3*4=14" 0.3 then 0.8.
    scorer = StepTable({"2+12": 0.9, "Answer: 14": 0.2, "5*4": 0.6, "Answer: 20": 0.7, "2+3*4=14": 0.3})
    gen = Scripted(solutions=SOLUTIONS[:4])
    last = run("best_of_n", gen, StepTable(scorer.table), n=4, aggregation="last")
    assert last.answer == "20"  # last-step scores 0.2, 0.7, 0.7, 0.2
    mean = run("best_of_n", gen, StepTable(scorer.table), n=4, aggregation="mean")
    assert mean.answer == "20"  # means 0.55, 0.65, 0.65, 0.25
    min_ = run("best_of_n", gen, StepTable(scorer.table), n=4, aggregation="min")
    assert min_.answer == "20" and min_.candidates[0].score == pytest.approx(0.2)
    # Weighted: answer 14 gets 0.9*0.2 + 0.3*0.2 = 0.24 under prod, 20 gets 2*0.42 = 0.84.
    prod = run("best_of_n", gen, StepTable(scorer.table), n=4, aggregation="prod", weighted=True)
    assert prod.answer == "20"
    # Naive picks the single best; the weighted vote can overrule it with many good ones.
    table = {"2+12": 1.0, "Answer: 14": 1.0, "5*4": 0.8, "Answer: 20": 0.8}
    assert run("best_of_n", gen, StepTable(table), n=3, aggregation="min").answer == "14"
    assert run("best_of_n", gen, StepTable(table), n=3, aggregation="min", weighted=True).answer == "20"


def test_best_of_n_needs_a_scorer():
    with pytest.raises(ValueError, match="needs a scorer"):
        run("best_of_n", Scripted(solutions=SOLUTIONS), n=2)


# ----- step-level strategies -----

# Two first steps; the well-scored one leads to the right answer. The sampled order puts
# the wrong step first, so greedy (option 0) and a vote over the first samples are wrong.
TREE = {
    "": ["5*4\n", "2+12\n"],
    "5*4\n": ["20\n"],
    "5*4\n20\n": ["Answer: 20"],
    "2+12\n": ["14\n", "15\n"],
    "2+12\n14\n": ["Answer: 14"],
    "2+12\n15\n": ["Answer: 15"],
}
SCORES = {"5*4": 0.1, "20": 0.1, "Answer: 20": 0.1, "2+12": 0.9, "14": 0.9, "15": 0.2, "Answer: 14": 0.95,
          "Answer: 15": 0.1}


@pytest.mark.parametrize("strategy", ["beam", "dvts", "mcts", "lookahead"])
def test_tree_strategies_follow_the_scorer_to_the_right_answer(strategy):
    r = run(strategy, Scripted(tree=TREE), StepTable(SCORES), n=4, beam_width=2)
    assert r.answer == "14"
    chosen = next(c for c in r.candidates if c.text == r.text)
    assert chosen.text == "2+12\n14\nAnswer: 14" and chosen.step_scores == [0.9, 0.9, 0.95]


def test_beam_keeps_n_over_m_and_counts_prefill_once_per_node():
    gen, scorer = Scripted(tree=TREE), StepTable(SCORES)
    r = run("beam", gen, scorer, n=4, beam_width=2)
    # depth 0: the prompt, n=4; depth 1: the 2 best of 4 ("2+12" twice) with n=2 each;
    # depth 2: the 2 best open beams ("14" twice; "15" dropped) with n=2 each -> all finished.
    assert gen.prompts == [ROOT, ROOT + "2+12\n", ROOT + "2+12\n", ROOT + "2+12\n14\n", ROOT + "2+12\n14\n"]
    assert r.compute.prefill_tokens == sum(len(p) for p in gen.prompts) == gen.usage.prefill_tokens
    assert r.compute.generated_tokens == gen.usage.generated_tokens == (2 * 4 + 2 * 5) + 4 * 3 + 4 * 10
    assert r.compute.scorer_tokens == scorer.usage.tokens > 0 and r.compute.generate_calls == 3

    gen2 = Scripted(tree=TREE)
    r2 = run("beam", gen2, StepTable(SCORES), n=4, beam_width=2, share_prefix=False)
    assert r2.answer == r.answer and r2.compute.generated_tokens == r.compute.generated_tokens
    # Without sharing every sample prefills its own prompt.
    assert r2.compute.prefill_tokens == 4 * len(ROOT) + 4 * len(ROOT + "2+12\n") + 4 * len(ROOT + "2+12\n14\n")
    assert r2.compute.prefill_per_generated() > r.compute.prefill_per_generated()


@pytest.mark.parametrize("strategy", ["beam", "dvts"])
def test_beam_width_must_divide_n(strategy):
    with pytest.raises(ValueError, match=r"beam_width=3 must divide n=4.*try beam_width in \[1, 2, 4\]"):
        run(strategy, Scripted(tree=TREE), StepTable(SCORES), n=4, beam_width=3)


def test_dvts_runs_n_over_m_independent_subtrees():
    gen = Scripted(tree=TREE)
    r = run("dvts", gen, StepTable(SCORES), n=4, beam_width=2)
    assert len(r.candidates) == 4  # N/M = 2 subtrees, each returning its M final siblings
    assert gen.prompts[0] == ROOT  # the first steps of both subtrees share one prefill


def test_dvts_votes_over_all_n_final_siblings():
    # Both subtrees walk "2+12" -> "14"; their last expansions draw the answers in turn:
    # subtree 0 gets 14, 14 and subtree 1 gets 14, 9. "Answer: 9" scores 0.99, "Answer: 14" 0.5.
    tree = {**TREE, "2+12\n14\n": ["Answer: 14", "Answer: 14", "Answer: 14", "Answer: 9"]}
    scores = {**SCORES, "Answer: 14": 0.5, "Answer: 9": 0.99}
    naive = run("dvts", Scripted(tree=tree), StepTable(scores), n=4, beam_width=2)
    assert sorted(c.answer for c in naive.candidates) == ["14", "14", "14", "9"]
    assert naive.answer == "9"  # the single best score
    # The weighted vote over all N: 14 collects 3 * 0.5 = 1.5 > 0.99. Over the N/M kept
    # leaves alone (14 at 0.5, 9 at 0.99) it would pick 9.
    weighted = run("dvts", Scripted(tree=tree), StepTable(scores), n=4, beam_width=2, weighted=True)
    assert weighted.answer == "14"


def test_lookahead_sees_past_a_tempting_step():
    tree = {"": ["a\n", "b\n"], "a\n": ["x\n"], "a\nx\n": ["Answer: 1"], "b\n": ["y\n"], "b\ny\n": ["Answer: 14"]}
    scores = {"a": 0.9, "x": 0.1, "Answer: 1": 0.1, "b": 0.6, "y": 0.9, "Answer: 14": 0.9}
    # Beam with one beam kept takes "a" (0.9 > 0.6) and is stuck with answer 1; candidates
    # that finished are compared at the end, so keep the budget small: n=2, M=2.
    assert run("beam", Scripted(tree=tree), StepTable(scores), n=2, beam_width=2).answer == "1"
    r = run("lookahead", Scripted(tree=tree), StepTable(scores), n=2, beam_width=2, lookahead=1)
    assert r.answer == "14"
    # The greedy rollouts are generated tokens too.
    plain = run("beam", Scripted(tree=tree), StepTable(scores), n=2, beam_width=2)
    assert r.compute.generated_tokens > plain.compute.generated_tokens


def test_mcts_backs_up_values_and_revisits_the_best_branch():
    gen = Scripted(tree=TREE)
    r = run("mcts", gen, StepTable(SCORES), n=3, beam_width=2)
    answers = sorted(c.answer for c in r.candidates)
    assert r.answer == "14" and "14" in answers
    assert r.compute.generated_tokens == gen.usage.generated_tokens


def test_mcts_puct_visits_and_value_sums_by_hand():
    """Four simulations, M = 2, c_puct = 2, uniform prior 1/2, so the exploration term is
    sqrt(N(s)) / (1 + N(s, a)); values = last-step scores. The sampled order puts the
    better-scored child second everywhere: root -> b (0.4), a (0.5); a -> a9 (0.1), a14 (0.4);
    b -> b8 (0.3), b7 (0.6).
    1. root expands to b, a; the walk takes the best-scored, a, which expands to a9, a14 and
       ends at a14: root, a, a14 get (1 visit, 0.4).
    2. root (N = 1): b, unvisited, has Q = its score: 0.4 + 1 / 1 = 1.4; a = 0.4 + 1 / 2 = 0.9
       -> b, which expands to b8, b7 and ends at the best-scored b7 (0.6).
    3. root (N = 2): b = 0.6 + sqrt(2) / 2 = 1.31; a = 0.4 + sqrt(2) / 2 = 1.11 -> b; under b
       (N = 1): b8 = 0.3 + 1 = 1.3, b7 = 0.6 + 1 / 2 = 1.1 -> b8, finished: backs up 0.3.
    4. root (N = 3): b has Q = the mean 0.9 / 2: 0.45 + sqrt(3) / 3 = 1.03; a = 0.4 +
       sqrt(3) / 2 = 1.27 -> a; under a (N = 1): a9 = 0.1 + 1 = 1.1, a14 = 0.4 + 1 / 2 = 0.9
       -> a9, finished: backs up 0.1.
    Each of these bugs changes the visits: Q = value sum (b = 0.9 + 0.58 at 4), unvisited
    Q = 0 (b7 over b8 at 3), walking into the first child instead of the best-scored (b at 1),
    and so does picking the worst child."""
    from ponder.search.mcts import run_mcts

    tree = {"": ["b\n", "a\n"], "a\n": ["Answer: 9", "Answer: 14"], "b\n": ["Answer: 8", "Answer: 7"]}
    scores = {"a": 0.5, "b": 0.4, "Answer: 14": 0.4, "Answer: 9": 0.1, "Answer: 7": 0.6, "Answer: 8": 0.3}
    cfg = SearchParams(n=4, beam_width=2, c_puct=2.0)
    policy = StepPolicy(SearchContext(Scripted(tree=tree), Toy(), StepTable(scores)), PROBLEM, cfg)
    root, finished = run_mcts(policy, cfg)
    assert [len(root.children)] + [len(c.children) for c in root.children] == [2, 2, 2]
    b, a = root.children
    (a9, a14), (b8, b7) = a.children, b.children
    assert [n.text for n in (a9, a14, b8, b7)] == ["a\nAnswer: 9", "a\nAnswer: 14", "b\nAnswer: 8", "b\nAnswer: 7"]
    stats = lambda node: (node.visits, round(node.value_sum, 9))  # noqa: E731
    assert stats(root) == (4, 1.4)
    assert (stats(a), stats(a14), stats(a9)) == ((2, 0.5), (1, 0.4), (1, 0.1))
    assert (stats(b), stats(b7), stats(b8)) == ((2, 0.9), (1, 0.6), (1, 0.3))
    assert [n.text for n in finished] == ["a\nAnswer: 14", "b\nAnswer: 7", "b\nAnswer: 8", "a\nAnswer: 9"]


# ----- budget forcing and self-refine -----

def test_budget_forcing_appends_wait_and_caps_thinking():
    think = ["<think>3*4=12", "2+12=14", "so 14"]
    gen = Scripted(think=[t + "</think>" for t in think], solutions=["Answer: 14"])
    r = run("budget_forcing", gen, n=2, temperature=0.0)
    assert r.text == "<think>3*4=12Wait2+12=14Waitso 14</think>Answer: 14" and r.answer == "14"
    assert r.compute.generated_tokens == gen.usage.generated_tokens == sum(map(len, think)) + 3 * 8 + len("Answer: 14")
    capped = run("budget_forcing", Scripted(think=[t + "</think>" for t in think], solutions=["Answer: 14"]),
                 n=2, think_tokens=5, temperature=0.0)
    assert capped.text == "<thin</think>Answer: 14"  # cut at 5 tokens, closed by force


def test_self_refine_returns_the_last_revision():
    gen = Scripted(solutions=["5*4\nAnswer: 20"])
    r = run("self_refine", gen, n=2)
    assert [c.answer for c in r.candidates] == ["20", "14"] and r.answer == "14"
    assert any("previous attempt" in p and "Answer: 20" in p for p in gen.prompts)


def test_unknown_strategy_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown search strategy 'beems'.*beam"):
        run("beems", Scripted())


def test_every_module_that_registers_a_strategy_is_imported_by_the_package():
    """A strategy module missing from STRATEGY_MODULES would be absent from the registry
    unless someone happened to import it; the package lists them all."""
    import re
    from pathlib import Path

    import ponder.search as search_pkg
    from ponder.search import STRATEGIES, STRATEGY_MODULES
    from ponder.search.base import register_strategy

    folder = Path(search_pkg.__file__).parent
    registering = {}
    for path in folder.glob("*.py"):
        names = re.findall(r'@register_strategy\("([^"]+)"\)', path.read_text())
        if names:
            registering[path.stem] = names
    assert sorted(registering) == sorted(STRATEGY_MODULES)
    for module, names in registering.items():
        for name in names:
            assert STRATEGIES[name].__module__ == f"ponder.search.{module}"
    with pytest.raises(ValueError, match="'beam' registered twice"):
        register_strategy("beam")(lambda ctx, problem, cfg: ([], None))


# ----- continuation on a real engine -----

def test_step_by_step_continuation_reproduces_whole_generation():
    """Greedy steps generated one at a time from `root + partial` (the prompt's ids plus the
    ids generated so far) give the same text and token count as one greedy generation."""
    from ponder.generation import make_engine
    from ponder.models import build_char_tokenizer, build_tiny_model

    class Colon(Toy):
        step_delimiter = ":"  # random weights write ':' over and over (seed 0), never a newline

        def prompt(self, problem):
            return "Q: 2+3*4? A:"

    tok = build_char_tokenizer()
    gen = make_engine("torch", build_tiny_model(tok, "1m", seed=0).eval(), tokenizer=tok, column_major=False)
    task = Colon()
    [[whole]] = gen.generate([task.prompt(PROBLEM)], SamplingParams(temperature=0, max_tokens=24))
    assert whole.text.count(":") >= 4  # the premise: several steps
    policy = StepPolicy(SearchContext(gen, task, None), PROBLEM, SearchParams(max_steps=30, max_tokens=24, max_step_tokens=16))
    [node] = policy.rollout([Node()], 30)
    assert node.text == whole.text and node.tokens == whole.num_tokens == 24
    assert node.steps == whole.text.count(":") + (not whole.text.endswith(":"))


def test_votes_group_equal_numbers_and_break_ties_by_first_seen():
    from ponder.search import Candidate
    from ponder.search.vote import answer_key, choose, weighted_vote

    assert answer_key("12.0") == answer_key("12") and answer_key(" ") is None
    cands = [Candidate("a", "7", 0.9), Candidate("b", "12", 0.6), Candidate("c", "12.0", 0.5), Candidate("d", None, 1.0)]
    assert choose(cands, weighted=False) == 3  # the best single score, even without an answer
    assert choose(cands, weighted=True) == 1  # 12 collects 1.1 > 0.9; its best-scored candidate
    assert weighted_vote(cands[:2], [0.5, 0.5]) == 0  # a tie goes to the answer seen first


def test_one_weighted_vote_for_search_and_reward_model_evaluation():
    from ponder.eval.rm import SampleSet, weighted_best_of_n
    from ponder.search.vote import weighted_winner

    keys, weights = ["gold:14", "20", "20", None, "gold:14"], [0.9, 0.6, 0.5, 1.0, 0.2]
    assert weighted_winner(keys[:3], weights[:3]) == "20"  # 1.1 > 0.9
    assert weighted_winner(keys, weights) == "gold:14"  # 1.1 = 1.1: the answer seen first
    assert weighted_winner([None], [1.0]) is None
    data = SampleSet([PROBLEM], [ROOT], [[""] * 5], [[[]] * 5], [[True, False, False, False, True]], None, [keys])
    assert weighted_best_of_n(data, [weights], [3, 5]) == {3: 0.0, 5: 1.0}
