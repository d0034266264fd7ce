"""A report for any run: `ponder report RUN` writes a self-contained HTML page (plots embedded)
and a Markdown twin from what the run left on disk. What the page shows depends on what is there:

    training runs (sft, train-rm, dpo, rl)   metrics.jsonl: loss, reward and accuracy curves grouped
                                             in panels; the evaluations as a table (with where the
                                             run started, initial_eval.json)
    expert iteration (iterate)               rounds.jsonl: accuracy and kept samples per round
    scaling sweeps (scale)                   scale.json: accuracy against compute, the compute-optimal choice
    every run directory                      summary.json's numbers, config.yaml
    result files (eval, search, eval-rm)     the JSON `--output` wrote: its summary and records, or
                                             best-of-N against N per reward model

A run directory gets RUN/report.html and RUN/report.md; a result file FILE.json gets FILE.html and
FILE.md beside it. A page this module did not write (the demo's own report) is never overwritten.
"""
from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

from ponder.config import ConfigError
from ponder.runs import atomic_write

CURVES = ("loss", "reward", "accuracy", "token_acc", "label_acc", "pair_accuracy", "margin", "reward_chosen",
          "reward_rejected", "kl", "approx_kl", "rollout_kl", "entropy", "response_length", "grad_norm", "lr")
"""training metrics plotted when present, in this order (plus the reward parts and every eval/ metric)"""
PANELS = (("loss", ("loss",)), ("reward", ("reward", "reward/")), ("accuracy", ("accuracy",)),
          ("token accuracy", ("token_acc",)), ("label accuracy", ("label_acc",)),
          ("DPO implicit rewards", ("reward_chosen", "reward_rejected")), ("DPO margin", ("margin",)),
          ("pair accuracy", ("pair_accuracy",)), ("KL", ("kl", "approx_kl", "rollout_kl")), ("entropy", ("entropy",)),
          ("response length", ("response_length",)), ("gradient norm", ("grad_norm",)), ("learning rate", ("lr",)))
"""(panel title, the metrics drawn in it; a name ending in / takes every metric under it)"""
MAX_PANELS = 12
MAX_RECORDS = 50
"""per-problem records shown in a table, at most (the file holds them all)"""
MARK = '<meta name="generator" content="ponder report">'
"""marks a page this module wrote, which a rerun may overwrite"""


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl; a torn last line (a killed run) is skipped."""
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "step" in row:
            rows.append(row)
    return rows


def series(rows: list[dict]) -> dict[str, tuple[list, list]]:
    """metric -> (steps, values): the curves worth plotting, training metrics then evaluations."""
    keys = [k for k in CURVES if any(k in r for r in rows)]
    keys += sorted({k for r in rows for k in r if k.startswith("reward/")})
    keys += sorted({k for r in rows for k in r if k.startswith("eval/")})
    out = {}
    for k in keys:
        pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float)) and math.isfinite(r[k])]
        if pts:
            out[k] = ([p[0] for p in pts], [p[1] for p in pts])
    return out


def panels(curves: dict[str, tuple[list, list]]) -> list[tuple[str, dict]]:
    """The curves grouped into panels (PANELS, then one per evaluation metric), MAX_PANELS at most."""
    out, used = [], set()
    for title, names in PANELS:
        lines = {k: v for k, v in curves.items()
                 if k not in used and any(k == n or (n.endswith("/") and k.startswith(n)) for n in names)}
        if lines:
            out.append((title, lines))
            used |= set(lines)
    out += [(k, {k: v}) for k, v in curves.items() if k.startswith("eval/")]
    return out[:MAX_PANELS]


class Page:
    """A report as a list of parts, rendered to HTML and to Markdown alike."""

    def __init__(self, title: str, where: Path):
        self.title, self.where, self.parts = title, where, []

    def heading(self, text: str):
        self.parts.append(("h2", text))

    def text(self, text: str):
        self.parts.append(("p", text))

    def table(self, header: list[str], rows: list[list], more: str = ""):
        if rows:
            self.parts.append(("table", header, rows, more))

    def plot(self, caption: str, path: Path):
        self.parts.append(("img", caption, path))

    def pre(self, text: str, lang: str = ""):
        self.parts.append(("pre", text, lang))

    def html(self) -> str:
        esc = html.escape
        out = [f"<h1>{esc(self.title)}</h1>", f"<p><code>{esc(str(self.where.resolve()))}</code></p>"]
        for kind, *rest in self.parts:
            if kind == "h2":
                out.append(f"<h2>{esc(rest[0])}</h2>")
            elif kind == "p":
                out.append(f"<p>{esc(rest[0])}</p>")
            elif kind == "img":
                data = base64.b64encode(rest[1].read_bytes()).decode()
                out.append(f'<figure><img class="plot" alt="{esc(rest[0])}" src="data:image/png;base64,{data}">'
                           f"<figcaption>{esc(rest[0])}</figcaption></figure>")
            elif kind == "table":
                header, rows, more = rest
                out.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>" + "".join(
                    "<tr>" + "".join(f"<td>{esc(fmt(v))}</td>" for v in r) + "</tr>" for r in rows) + "</table>")
                if more:
                    out.append(f"<p>{esc(more)}</p>")
            elif kind == "pre":
                out.append(f"<pre>{esc(rest[0])}</pre>")
        # The page reports how many of its plots decoded and rendered, for headless checks.
        script = ("window.addEventListener('load',()=>{const imgs=[...document.querySelectorAll('img.plot')];"
                  "const ok=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;"
                  "document.body.dataset.plotsRendered=ok+'/'+imgs.length;});")
        style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
                 "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px}"
                 "img.plot{max-width:100%}pre{background:#f6f6f6;padding:1em;white-space:pre-wrap}")
        return (f"<!doctype html><html><head><meta charset='utf-8'>{MARK}<title>{esc(self.title)}</title>"
                f"<style>{style}</style><script>{script}</script></head><body>{''.join(out)}</body></html>")

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, *rest in self.parts:
            if kind == "h2":
                out += [f"## {rest[0]}", ""]
            elif kind == "p":
                out += [rest[0], ""]
            elif kind == "img":
                out += [f"![{rest[0]}]({rest[1].name})", ""]
            elif kind == "table":
                header, rows, more = rest
                cell = lambda v: fmt(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
                out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows] + [""]
                out += [more, ""] if more else []
            elif kind == "pre":
                out += [f"```{rest[1]}", rest[0].rstrip(), "```", ""]
        return "\n".join(out)


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _plot(page: Page, caption: str, path: Path, draw) -> None:
    """Draw a plot with matplotlib (the optional `ponder[plot]` extra) and add it to the page."""
    try:
        draw(path)
    except ImportError:
        page.text("matplotlib is not installed (pip install 'ponder[plot]'): no plots")
        return
    page.plot(caption, path)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a readable JSON file ({e})") from None


# --------------------------------------------------------------------- run directories
def training_kind(rows: list[dict]) -> str:
    keys = {k for r in rows for k in r}
    for key, kind in (("reward", "RL"), ("pair_accuracy", "DPO"), ("label_acc", "reward-model training"),
                      ("token_acc", "SFT")):
        if key in keys:
            return kind
    return "training"


def _training(page: Page, run_dir: Path, rows: list[dict]) -> None:
    from ponder.pipeline.plots import plot_panels

    grouped = panels(series(rows))
    if grouped:
        _plot(page, "training and evaluation curves (metrics.jsonl)", run_dir / "curves.png",
              lambda path: plot_panels(grouped, path))
    evals = [r for r in rows if any(k.startswith("eval/") for k in r)]
    initial = run_dir / "initial_eval.json"
    if initial.exists() and not any(r["step"] == 0 for r in evals):  # DPO keeps it apart from metrics.jsonl
        evals.insert(0, {"step": 0, **{f"eval/{k}": v for k, v in _read_json(initial).items()}})
    names = sorted({k for r in evals for k in r if k.startswith("eval/")})
    if evals:
        page.heading("Evaluations")
        page.table(["step", *names], [[r["step"], *[r.get(k) for k in names]] for r in evals])
        if evals[0]["step"] == 0:
            page.text("step 0: the model before training")


def _rounds(page: Page, run_dir: Path, rounds: list[dict]) -> None:
    def draw(path):
        from ponder.pipeline.plots import plot_panels

        xs = [r["round"] for r in rounds]
        plot_panels([("held-out greedy accuracy", {"accuracy": (xs, [r.get("accuracy") for r in rounds])})], path,
                    xlabel="round")

    _plot(page, "held-out greedy accuracy per round (rounds.jsonl)", run_dir / "rounds.png", draw)
    page.heading("Rounds")
    page.table(["round", "kept", "sampled", "kept fraction", "held-out greedy accuracy"],
               [[r.get("round"), r.get("kept"), r.get("sampled"), r.get("kept_fraction"), r.get("accuracy")]
                for r in rounds])


def _scale(page: Page, run_dir: Path, scale: dict) -> None:
    from ponder.pipeline.plots import plot_scaling

    rows = scale.get("rows") or []
    if rows:
        _plot(page, "accuracy against generated tokens per problem (scale.json)", run_dir / "scale.png",
              lambda path: plot_scaling(rows, path))
    page.heading("Scaling sweep")
    page.table(["strategy", "N", "accuracy", "generated tokens / problem", "prefill tokens / problem",
                "scorer tokens / problem"],
               [[r.get("strategy"), r.get("budget"), r.get("accuracy"), r.get("generated_tokens"),
                 r.get("prefill_tokens"), r.get("scorer_tokens")] for r in rows])
    best = scale.get("compute_optimal") or {}
    if best.get("budgets"):
        page.heading("Compute-optimal strategy per difficulty")
        page.table(["N", "token budget / problem", "accuracy", "generated tokens / problem"],
                   [[n, b.get("token_budget"), b.get("accuracy"), b.get("generated_tokens")]
                    for n, b in best["budgets"].items()])
        if best.get("difficulty"):
            page.text(f"difficulty: {best['difficulty']}")


def _scalars(summary: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Flattened (key, value) of summary.json's numbers and short strings, nested one level."""
    out = []
    for k, v in summary.items():
        if isinstance(v, dict) and not prefix:
            out += _scalars(v, f"{k}.")
        elif isinstance(v, (int, float, str)) and not isinstance(v, bool) and len(str(v)) < 120:
            out.append((prefix + k, v))
    return out


def _run_page(run_dir: Path) -> Page:
    metrics_path, summary_path = run_dir / "metrics.jsonl", run_dir / "summary.json"
    scale_path, rounds_path, config_path = run_dir / "scale.json", run_dir / "rounds.jsonl", run_dir / "config.yaml"
    if not any(p.exists() for p in (metrics_path, summary_path, scale_path, rounds_path)):
        raise ConfigError(f"{run_dir} holds no metrics.jsonl, summary.json, scale.json or rounds.jsonl: not a ponder "
                          "run (or one that has not logged anything yet)")
    rows = read_metrics(metrics_path) if metrics_path.exists() else []
    if scale_path.exists():
        kind = "scaling sweep"
    elif rounds_path.exists():
        kind = "expert iteration"
    else:
        kind = f"{training_kind(rows)} run" if rows else "run"
    page = Page(f"ponder {kind}: {run_dir.name}", run_dir)
    if rows:
        _training(page, run_dir, rows)
    if rounds_path.exists():
        _rounds(page, run_dir, [json.loads(line) for line in rounds_path.read_text().splitlines() if line.strip()])
    if scale_path.exists():
        _scale(page, run_dir, _read_json(scale_path))
    scalars = _scalars(_read_json(summary_path)) if summary_path.exists() else []
    if scalars:
        page.heading("Summary")
        page.table(["key", "value"], [list(kv) for kv in scalars])
    if config_path.exists():
        page.heading("Config")
        page.pre(config_path.read_text(), "yaml")
    return page


# --------------------------------------------------------------------- result files
def result_kind(result) -> str | None:
    """eval, search or eval-rm for the JSON a command's `--output` wrote; None for other JSON."""
    if not isinstance(result, dict):
        return None
    if isinstance(result.get("models"), dict) and "majority" in result:
        return "eval-rm"
    records = result.get("records")
    if isinstance(result.get("summary"), dict) and isinstance(records, list):
        first = records[0] if records and isinstance(records[0], dict) else {}
        return "search" if "compute" in first or "strategy" in result["summary"] else "eval"
    return None


def _clip(text, n: int = 60):
    if not isinstance(text, str):
        return text
    text = text.replace("\n", "\\n")
    return text if len(text) <= n else text[:n - 1] + "…"


def _result_page(path: Path, result: dict, kind: str) -> Page:
    page = Page(f"ponder {kind}: {path.name}", path)
    if kind == "eval-rm":
        ns = list(result["majority"])
        selectors = {f"{name} (best-of-N)": (res.get("best_of_n", {}), (res.get("processbench") or {}).get("f1"))
                     for name, res in result["models"].items()}
        selectors["majority vote"] = (result["majority"], None)
        selectors["oracle (pass@N)"] = (result["oracle"], None)

        def draw(out):
            from ponder.pipeline.plots import plot_panels

            plot_panels([("accuracy of the chosen solution", {
                name: ([int(n) for n in ns], [accs.get(n) for n in ns]) for name, (accs, _) in selectors.items()})],
                out, xlabel="N (solutions per problem)")

        _plot(page, "accuracy against N for each selector", path.with_suffix(".png"), draw)
        page.heading(f"{result.get('problems')} problems x {result.get('samples')} samples "
                     f"(sample accuracy {fmt(result.get('sample_accuracy'))})")
        page.table(["selector", "ProcessBench F1", *[f"@{n}" for n in ns]],
                   [[name, f1, *[accs.get(n) for n in ns]] for name, (accs, f1) in selectors.items()])
        return page
    page.heading("Summary")
    page.table(["metric", "value"], [list(kv) for kv in _scalars(result["summary"])])
    records = result["records"]
    shown = records[:MAX_RECORDS]
    more = f"the first {len(shown)} of {len(records)} problems; {path.name} holds them all" \
        if len(records) > len(shown) else ""
    page.heading("Problems")
    if kind == "eval":
        page.table(["problem", "answer", "greedy", "correct", "tokens", "samples correct", "majority", "correct"],
                   [[r.get("id"), r.get("answer"), _clip(r.get("greedy")), r.get("greedy_correct"),
                     r.get("greedy_tokens"), r.get("num_correct"), r.get("majority"), r.get("majority_correct")]
                    for r in shown], more)
    else:
        page.table(["problem", "gold", "answer", "correct", "generated tokens", "candidates", "text"],
                   [[r.get("id"), r.get("gold"), r.get("answer"), r.get("correct"),
                     (r.get("compute") or {}).get("generated_tokens"), len(r.get("candidates") or []),
                     _clip(r.get("text"))] for r in shown], more)
    return page


# --------------------------------------------------------------------- writing
def write_run_report(target: str | Path) -> Path:
    """Write the report of a run directory (RUN/report.html and report.md) or of a result file
    (FILE.html and FILE.md beside FILE.json); the path of the HTML page."""
    target = Path(target)
    if target.is_file():
        result = _read_json(target)
        kind = result_kind(result)
        if kind is None:
            raise ConfigError(f"{target}: not a result file of ponder eval, search or eval-rm (--output), nor a run "
                              "directory")
        out = target.with_suffix(".html")
        _check_not_foreign(out)
        page = _result_page(target, result, kind)
    elif target.is_dir():
        out = target / "report.html"
        _check_not_foreign(out, hint=f" Report on one of its stages instead, e.g. ponder report {target / 'rl'}")
        page = _run_page(target)
    else:
        raise ConfigError(f"no run directory or result file {target}")
    atomic_write(out, page.html())
    atomic_write(out.with_suffix(".md"), page.markdown())
    return out


def _check_not_foreign(page: Path, hint: str = "") -> None:
    if page.exists() and MARK not in page.read_text(errors="replace"):
        raise ConfigError(f"{page} was written by another command (the demo writes its own report); it is not "
                          f"overwritten.{hint}")
