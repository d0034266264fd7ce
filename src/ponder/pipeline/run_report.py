"""A report for any run: `ponder report RUN` writes RUN/report.html (self-contained, plots
embedded) and RUN/report.md from what the run left on disk: its training curves
(metrics.jsonl), its summary.json, a scaling sweep's accuracy against compute (scale.json),
and its config.yaml. The demo writes its own, richer report (report.py)."""
from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

from ponder.config import ConfigError
from ponder.runs import atomic_write

CURVES = ("loss", "reward", "accuracy", "token_acc", "kl", "approx_kl", "entropy", "response_length", "lr")
"""training metrics plotted when present, in this order (plus every eval/ metric)"""
MAX_PANELS = 8
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
    keys += sorted({k for r in rows for k in r if k.startswith("eval/")})
    out = {}
    for k in keys[:MAX_PANELS]:
        pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float)) and math.isfinite(r[k])]
        if pts:
            out[k] = ([p[0] for p in pts], [p[1] for p in pts])
    return out


def _plot_curves(curves: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    n = len(curves)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, (name, (x, y)) in zip(axes.flat, curves.items()):
        ax.plot(x, y, "o-" if len(x) < 20 else "-", color="tab:orange" if name.startswith("eval/") else "tab:blue",
                markersize=3)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _scalars(summary: dict, prefix: str = "") -> list[tuple[str, object]]:
    """Flattened (key, value) of summary.json's numbers and short strings, nested one level."""
    out = []
    for k, v in summary.items():
        if isinstance(v, dict) and not prefix:
            out += _scalars(v, f"{k}.")
        elif isinstance(v, (int, float, str)) and not isinstance(v, bool) and len(str(v)) < 120:
            out.append((prefix + k, v))
    return out


def write_run_report(run_dir: str | Path) -> Path:
    """Write run_dir/report.html and report.md; the path of the HTML page."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"no run directory {run_dir}")
    metrics_path, summary_path = run_dir / "metrics.jsonl", run_dir / "summary.json"
    scale_path, config_path = run_dir / "scale.json", run_dir / "config.yaml"
    existing = run_dir / "report.html"
    if existing.exists() and MARK not in existing.read_text(errors="replace"):
        raise ConfigError(f"{existing} was written by another command (the demo writes its own report); "
                          "it is not overwritten. Report on one of its stages instead, e.g. --runs-dir "
                          f"{run_dir} --run rl")
    if not any(p.exists() for p in (metrics_path, summary_path, scale_path)):
        raise ConfigError(f"{run_dir} holds no metrics.jsonl, summary.json or scale.json: not a ponder run "
                          "(or one that has not logged anything yet)")
    plots: list[tuple[str, Path]] = []
    notes: list[str] = []
    if metrics_path.exists():
        curves = series(read_metrics(metrics_path))
        if curves and _plot_curves(curves, run_dir / "curves.png"):
            plots.append(("training and evaluation curves (metrics.jsonl)", run_dir / "curves.png"))
        elif curves:
            notes.append("matplotlib is not installed (pip install 'ponder[plot]'): no plots")
    scale = json.loads(scale_path.read_text()) if scale_path.exists() else None
    if scale and scale.get("rows"):
        try:
            from ponder.pipeline.plots import plot_scaling

            plot_scaling(scale["rows"], run_dir / "scale.png")
            plots.append(("accuracy against generated tokens per problem (scale.json)", run_dir / "scale.png"))
        except ImportError:
            notes.append("matplotlib is not installed (pip install 'ponder[plot]'): no plots")
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    scalars = _scalars(summary)
    scale_rows = [[r.get("strategy"), r.get("budget"), r.get("accuracy"), r.get("generated_tokens")]
                  for r in (scale or {}).get("rows", [])]
    config = config_path.read_text() if config_path.exists() else ""

    esc = html.escape
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)  # noqa: E731
    parts = [f"<h1>ponder run: {esc(run_dir.name)}</h1>", f"<p><code>{esc(str(run_dir.resolve()))}</code></p>"]
    parts += [f"<p>{esc(n)}</p>" for n in notes]
    for caption, path in plots:
        data = base64.b64encode(path.read_bytes()).decode()
        parts.append(f'<figure><img class="plot" alt="{esc(caption)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{esc(caption)}</figcaption></figure>")
    if scale_rows:
        parts.append("<h2>Scaling sweep</h2><table><tr><th>strategy</th><th>N</th><th>accuracy</th>"
                     "<th>generated tokens / problem</th></tr>" + "".join(
                         "<tr>" + "".join(f"<td>{esc(fmt(v))}</td>" for v in r) + "</tr>" for r in scale_rows)
                     + "</table>")
    if scalars:
        parts.append("<h2>Summary</h2><table>" + "".join(
            f"<tr><td>{esc(k)}</td><td>{esc(fmt(v))}</td></tr>" for k, v in scalars) + "</table>")
    if config:
        parts.append(f"<h2>Config</h2><pre>{esc(config)}</pre>")
    # The page reports how many of its plots decoded and rendered, for headless checks.
    script = ("window.addEventListener('load',()=>{const imgs=[...document.querySelectorAll('img.plot')];"
              "const ok=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;"
              "document.body.dataset.plotsRendered=ok+'/'+imgs.length;});")
    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px}"
             "img.plot{max-width:100%}pre{background:#f6f6f6;padding:1em}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'>{MARK}<title>ponder run {esc(run_dir.name)}</title>"
            f"<style>{style}</style><script>{script}</script></head><body>{''.join(parts)}</body></html>")
    atomic_write(run_dir / "report.html", page)
    md = [f"# ponder run: {run_dir.name}", ""] + [f"{n}" for n in notes]
    md += [f"![{caption}]({path.name})" for caption, path in plots] + [""]
    if scale_rows:
        md += ["## Scaling sweep", "", "| strategy | N | accuracy | generated tokens / problem |", "|---|---|---|---|"]
        md += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in scale_rows] + [""]
    if scalars:
        md += ["## Summary", "", "| key | value |", "|---|---|"] + [f"| {k} | {fmt(v)} |" for k, v in scalars] + [""]
    if config:
        md += ["## Config", "", "```yaml", config.rstrip(), "```", ""]
    atomic_write(run_dir / "report.md", "\n".join(md))
    return run_dir / "report.html"
