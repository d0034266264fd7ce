"""Test-time compute chosen per problem: the `auto` strategy's policy, built from a `ponder
scale` run (Snell et al. 2024, "Scaling LLM Test-Time Compute Optimally can be More Effective
than Scaling Model Parameters", §3.2 and §3.3).

A scale run measured every setting (strategy, N) on its problems, with each problem's
correctness and tokens. The policy turns those records into a rule for a new problem whose
answer nobody knows:

1. **Predict its difficulty without the answer** (Snell et al.'s *predicted* difficulty, §3.2):
   draw a few probe samples and take their mean score. Which score follows the scale run's own
   difficulty probe, so the bins are fit with exactly the predictor serving uses:
   - `prm`: the PRM's mean score of best_of_n's probe samples (`ponder scale --difficulty score`
     with a PRM scorer); serving needs that PRM.
   - `agreement`: the mean vote share of majority's probe samples (`--difficulty pass_rate`,
     the default, whose probe is majority's). A candidate's vote share is the fraction of the
     samples that gave its answer, so the mean is the chance that two samples (drawn with
     replacement) agree: self-consistency's own confidence (Wang et al. 2022 found agreement
     tracks accuracy), needing no scorer and no gold answer. The scale records keep it as the
     probe's `mean_score`, so the edges come from the same number.
   A probe scored by the verifier is refused: its mean score is the pass rate, which needs
   the gold answer serving does not have.
2. **Bin it** with edges fit on the scale run's probe values (the quantile bins of
   `compute_optimal.difficulty_bins`, bin 0 the easiest; an edge is the midpoint between two
   neighbouring bins' values, so every scale problem falls back into its own bin).
3. **Choose within the budget**: in that bin, the most accurate setting whose mean tokens
   there fit what is left of the budget after the probe (fewer tokens on a tie). Tokens are
   the run's `compute`: generated tokens, or total = generated + prefill + scorer.

Settings are chosen on all of the scale run's problems; `benchmarks/auto_strategy.py`
measures the choice on problems it was not made on. The probe is charged to the request:
unlike Snell et al., who leave the cost of predicting difficulty out, the budget here covers
it. Pure functions and a small dataclass; `auto_search` runs one problem end to end (the
`ponder serve` extension's `"strategy": "auto"` calls it).
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ponder.search.base import Compute, SearchContext, SearchParams, SearchResult, search
from ponder.search.compute_optimal import difficulty_bins
from ponder.search.scale import CHOOSERS, DIFFICULTY, TOKENS, TREE, probe_seed, probe_strategy, total_tokens
from ponder.tasks.base import Problem

AUTO = "auto"
AGREEMENT, PRM = "agreement", "prm"


@dataclass(frozen=True)
class Setting:
    """One (strategy, N) as measured on the scale problems of one bin."""

    strategy: str
    n: int
    accuracy: float
    tokens: float
    """mean tokens per problem (the policy's `compute`)"""
    problems: int


@dataclass
class AutoPolicy:
    """The per-bin choices of a scale run, and how a request is probed and binned."""

    compute: str
    """'generated' or 'total': what the budget and every token figure count"""
    predictor: str
    """'agreement' (majority's probe) or 'prm' (best_of_n's probe scored by the PRM)"""
    probe_n: int
    """probe samples per problem"""
    probe_tokens: float
    """the probe's mean tokens on the scale problems"""
    edges: list[float]
    """thresholds of predicted difficulty, descending: a value below k of them is in bin labels[k]"""
    labels: list[int]
    """the bins that hold scale problems, easiest first"""
    settings: dict[int, list[Setting]]
    """bin -> the settings measured there"""
    params: SearchParams
    """the scale run's search parameters (temperature, max_tokens, beam_width, ...)"""
    scorer: str = "none"
    """the scale run's scorer: the PRM's name or path when settings or the probe need it"""
    needs_prm: bool = False
    task: str | None = None
    task_args: dict = field(default_factory=dict)
    source: str = ""
    dropped: list[str] = field(default_factory=list)
    """settings of the run the policy leaves out, each with why"""

    def bin_of(self, difficulty: float) -> int:
        return assign_bin(difficulty, self.edges, self.labels)

    def bin_range(self, label: int) -> tuple[float | None, float | None]:
        """(lower edge, upper edge) of a bin's predicted difficulty; None where it is open."""
        k = self.labels.index(label)
        return (self.edges[k] if k < len(self.edges) else None, self.edges[k - 1] if k > 0 else None)

    def choose(self, label: int, tokens_left: float) -> Setting | None:
        return choose(self.settings[label], tokens_left)

    def cheapest(self, label: int) -> Setting:
        return min(self.settings[label], key=lambda s: (s.tokens, s.strategy, s.n))

    def min_budget(self) -> float:
        """The smallest budget with which, on average, every bin has a setting that fits: the
        probe's mean tokens plus the dearest of the bins' cheapest settings."""
        return self.probe_tokens + max(self.cheapest(b).tokens for b in self.labels)

    def params_for(self, setting: Setting, seed: int) -> SearchParams:
        """The search parameters the scale run used for `setting` (scale.sweep_cells)."""
        params = replace(self.params, n=setting.n, seed=seed)
        if setting.strategy in TREE:
            params.beam_width = min(self.params.beam_width, setting.n)
        return params


def bin_edges(difficulty: dict[str, float], bins: int) -> tuple[list[float], list[int]]:
    """(edges, labels) that put each value of `difficulty` (problem -> predicted difficulty,
    higher = easier) back in its `difficulty_bins` bin: labels are the non-empty bins,
    easiest first; edges, descending, the midpoints between neighbouring bins' values."""
    bin_of = difficulty_bins(difficulty, bins)
    lo: dict[int, float] = {}
    hi: dict[int, float] = {}
    for pid, b in bin_of.items():
        lo[b] = min(lo.get(b, difficulty[pid]), difficulty[pid])
        hi[b] = max(hi.get(b, difficulty[pid]), difficulty[pid])
    labels = sorted(lo)
    edges = [(lo[a] + hi[b]) / 2 for a, b in zip(labels, labels[1:])]
    return edges, labels


def assign_bin(value: float, edges: list[float], labels: list[int]) -> int:
    """The bin of a predicted difficulty: labels[number of edges above it]."""
    return labels[sum(value < e for e in edges)]


def bin_settings(records: list[dict], bin_of: dict[str, int], tokens: str = "generated_tokens") -> dict[int, list[Setting]]:
    """bin -> every (strategy, N) measured on the problems of that bin: accuracy and mean
    `tokens` (a record field). The difficulty probe's records are no setting."""
    acc: dict[tuple, list] = defaultdict(lambda: [0, 0.0, 0])
    for r in records:
        if r["strategy"] == DIFFICULTY or r["problem"] not in bin_of:
            continue
        cell = acc[(bin_of[r["problem"]], r["strategy"], r["budget"])]
        cell[0] += bool(r["correct"])
        cell[1] += r[tokens] if tokens in r else total_tokens(r)
        cell[2] += 1
    out: dict[int, list[Setting]] = defaultdict(list)
    for (b, strategy, n), (c, t, k) in sorted(acc.items()):
        out[b].append(Setting(strategy, n, c / k, t / k, k))
    return dict(out)


def choose(settings: list[Setting], tokens_left: float) -> Setting | None:
    """The most accurate setting whose mean tokens fit `tokens_left` (fewer tokens on a tie,
    then the name); None when none fits."""
    fits = [s for s in settings if s.tokens <= tokens_left + 1e-9]
    return min(fits, key=lambda s: (-s.accuracy, s.tokens, s.strategy, s.n)) if fits else None


def best_fixed(records: list[dict], budget: float, tokens: str = "generated_tokens") -> Setting | None:
    """The one setting for every problem that a fixed-strategy user would pick from the same
    records: the most accurate over all their problems whose mean tokens fit `budget`."""
    pooled = bin_settings(records, {r["problem"]: 0 for r in records}, tokens)
    return choose(pooled.get(0, []), budget)


def predicted_difficulty(candidates) -> float:
    """The probe's predicted difficulty: its candidates' mean score (majority: vote shares; a
    scorer: its scores), 0 when none has one - the scale record's `mean_score`, as
    `scale.difficulty_of` reads it."""
    scores = [c.score for c in candidates if c.score is not None]
    return sum(scores) / len(scores) if scores else 0.0


def tokens_of(compute: Compute, how: str) -> int:
    """A search's tokens as the policy counts them ('generated' or 'total')."""
    if how == "generated":
        return compute.generated_tokens
    return compute.generated_tokens + compute.prefill_tokens + compute.scorer_tokens


def scorer_kind(spec: str | None) -> str:
    """'none', 'verifier' (needs gold answers), 'step' (rollout / judge verifiers) or 'prm'."""
    if spec in (None, "", "none"):
        return "none"
    if spec == "verifier":
        return "verifier"
    if str(spec).split(":", 1)[0] in ("rollout", "judge"):
        return "step"
    return "prm"


def build_policy(scale: dict, config: dict, source: str = "", prm: bool = False, max_n: int | None = None,
                 max_generated: int | None = None) -> AutoPolicy:
    """The policy of a scale run: `scale` is its scale.json, `config` its config (config.yaml).
    `prm`: whether the caller can score with the run's PRM. Settings the caller cannot run are
    left out and listed in `dropped`: those scored by the verifier (gold answers), by a step
    verifier, or by a PRM the caller lacks, and those above `max_n` samples or `max_generated`
    generated tokens (N x max_tokens). ValueError (saying what to rerun) when the run cannot
    make a policy."""
    records = scale.get("records")
    if not isinstance(records, list) or not records:
        raise ValueError(f"{source}: no sweep records; expected the scale.json of a `ponder scale` run")
    compute = scale.get("compute", config.get("compute", "generated"))
    if compute not in TOKENS:
        raise ValueError(f"{source}: compute must be one of {', '.join(TOKENS)}, got {compute!r}")
    how, spec = config.get("difficulty", "pass_rate"), config.get("scorer", "none")
    kind = scorer_kind(spec)
    probe = [r for r in records if r["strategy"] == DIFFICULTY]
    if not probe:
        raise ValueError(f"{source}: the run has no difficulty probe (it needs 'majority' or 'best_of_n' in "
                         "--strategies); rerun ponder scale with one of them")
    if how == "score" and kind != "prm":
        raise ValueError(f"{source}: the run's difficulty probe was scored by {spec!r}"
                         + (", whose score is the pass rate and needs the gold answer" if kind == "verifier" else "")
                         + "; a served policy predicts difficulty without the answer: rerun ponder scale with "
                           "--difficulty pass_rate (the probe samples' agreement) or --difficulty score with a PRM "
                           "as --scorer")
    predictor = PRM if how == "score" else AGREEMENT
    if predictor == PRM and not prm:
        raise ValueError(f"{source}: the run predicts difficulty with its PRM {spec!r}; start the server with that PRM "
                         "(--scorer)")
    key = TOKENS[compute]
    predicted = {r["problem"]: r.get("mean_score") or 0.0 for r in probe}
    edges, labels = bin_edges(predicted, int(config.get("bins", 3)))
    bin_of = {pid: assign_bin(v, edges, labels) for pid, v in predicted.items()}  # serving's rule
    params = SearchParams(**{f.name: config[f.name] for f in fields(SearchParams) if f.name in config})

    dropped, keep = [], []
    for r in records:
        why = None
        if r["strategy"] in CHOOSERS and kind != "prm":
            why = (f"scored by {spec!r}, which needs each problem's gold answer" if kind == "verifier" else
                   f"scored by {spec!r}, which this policy does not run")
        elif r["strategy"] in CHOOSERS and not prm:
            why = f"scored by the PRM {spec!r}, which the server was not started with (--scorer)"
        elif max_n is not None and r["budget"] > max_n and r["strategy"] != DIFFICULTY:
            why = f"N above the server's {max_n} (--max-search-n)"
        elif (max_generated is not None and r["strategy"] != DIFFICULTY
              and r["budget"] * params.max_tokens > max_generated):
            why = f"N x max_tokens above the server's {max_generated} (--max-request-tokens)"
        if why:
            dropped.append(f"{r['strategy']}@{r['budget']}: {why}")
        else:
            keep.append(r)
    settings = bin_settings(keep, bin_of, key)
    if set(settings) != set(labels):
        raise ValueError(f"{source}: no setting of the run can be served ({'; '.join(dict.fromkeys(dropped))})")
    n_probe = probe[0]["budget"]
    if max_n is not None and n_probe > max_n:
        raise ValueError(f"{source}: the run's difficulty probe draws {n_probe} samples, above the server's {max_n} "
                         "(--max-search-n); rerun ponder scale with a smaller --difficulty-samples")
    probe_tokens = sum(r[key] if key in r else total_tokens(r) for r in probe) / len(probe)
    return AutoPolicy(compute, predictor, n_probe, probe_tokens, edges, labels, settings, params,
                      scorer=spec, needs_prm=predictor == PRM or any(
                          s.strategy in CHOOSERS for ss in settings.values() for s in ss),
                      task=config.get("task"), task_args=dict(config.get("task_args") or {}), source=source,
                      dropped=list(dict.fromkeys(dropped)))


def read_scale_run(path: str | Path) -> tuple[dict, dict, str]:
    """(scale.json, config, source) of a scale run given as its directory or its scale.json
    (the config is the run's config.yaml beside it); ValueError naming the file otherwise."""
    import yaml

    path = Path(path)
    file = path / "scale.json" if path.is_dir() else path
    if not file.exists():
        raise ValueError(f"{path}: expected a `ponder scale` run directory or its scale.json, and "
                         f"{file} does not exist")
    try:
        scale = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{file}: not JSON ({e})") from None
    cfg_file = file.parent / "config.yaml"
    if not cfg_file.exists():
        raise ValueError(f"{file}: the run's config.yaml is not beside it (it says how the settings were searched: "
                         "temperature, max_tokens, scorer, difficulty)")
    try:
        config = yaml.safe_load(cfg_file.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{cfg_file}: unreadable ({e})") from None
    if not isinstance(scale, dict) or not isinstance(config, dict):
        raise ValueError(f"{file}: expected a `ponder scale` run's scale.json and config.yaml")
    return scale, config, str(file)


def load_policy(path: str | Path, **kw) -> AutoPolicy:
    """`build_policy` of the scale run at `path` (its directory or scale.json)."""
    scale, config, source = read_scale_run(path)
    return build_policy(scale, config, source, **kw)


@dataclass
class AutoResult(SearchResult):
    auto: dict | None = None
    """what was chosen and why (see `auto_search`)"""


def auto_search(ctx: SearchContext, problem: Problem, policy: AutoPolicy, budget: float, seed: int) -> AutoResult:
    """Probe, predict the difficulty, bin, choose within `budget` (tokens per problem, the
    policy's `compute`, probe included) and search. The probe draws with `probe_seed(seed)`
    and the chosen setting with `seed`, as the scale run drew its own (so with its seed and
    problem this reproduces its records). When the probe ran long and nothing in the bin fits
    what is left, the bin's cheapest setting runs and `fits` is false. `ctx.scorer`:
    the PRM when the policy needs it. The result's compute is the probe's plus the search's."""
    probe_ctx = replace(ctx, scorer=ctx.scorer if policy.predictor == PRM else None)
    probe = search(probe_strategy("score" if policy.predictor == PRM else "pass_rate"), probe_ctx, problem,
                   replace(policy.params, n=policy.probe_n, seed=probe_seed(seed)))
    difficulty = predicted_difficulty(probe.candidates)
    label = policy.bin_of(difficulty)
    spent = tokens_of(probe.compute, policy.compute)
    chosen = policy.choose(label, budget - spent)
    fits = chosen is not None
    chosen = chosen or policy.cheapest(label)
    run_ctx = replace(ctx, scorer=ctx.scorer if chosen.strategy in CHOOSERS else None)
    result = search(chosen.strategy, run_ctx, problem, policy.params_for(chosen, seed))
    lo, hi = policy.bin_range(label)
    searched = tokens_of(result.compute, policy.compute)
    why = (f"predicted difficulty {difficulty:.3f} ({policy.predictor} of {policy.probe_n} probe samples) is in bin "
           f"{label} of {len(policy.labels)}; "
           + (f"the most accurate setting in that bin on the scale run whose mean tokens fit the {budget - spent:g} "
              f"left after the probe" if fits else
              f"nothing in that bin fits the {budget - spent:g} tokens left after the probe, so its cheapest setting")
           + f": {chosen.strategy}@{chosen.n}, accuracy {chosen.accuracy:.3f} on {chosen.problems} problems at "
             f"{chosen.tokens:.0f} tokens")
    auto = {"strategy": chosen.strategy, "n": chosen.n, "budget": budget, "compute": policy.compute,
            "predictor": policy.predictor, "predicted_difficulty": difficulty, "bin": label,
            "bins": len(policy.labels), "bin_range": [lo, hi],
            "expected_accuracy": chosen.accuracy, "expected_tokens": chosen.tokens, "bin_problems": chosen.problems,
            "probe": {"strategy": probe.strategy, "n": policy.probe_n, "tokens": spent,
                      "generated_tokens": probe.compute.generated_tokens,
                      "prefill_tokens": probe.compute.prefill_tokens, "scorer_tokens": probe.compute.scorer_tokens},
            "search": {"tokens": searched, "generated_tokens": result.compute.generated_tokens,
                       "prefill_tokens": result.compute.prefill_tokens, "scorer_tokens": result.compute.scorer_tokens},
            "tokens": spent + searched, "fits": fits, "why": why}
    return AutoResult(result.strategy, result.answer, result.text, result.candidates, probe.compute + result.compute,
                      auto=auto)
