"""The demo's report: a terminal table, `report.md`, and a self-contained `report.html`
(plots embedded as PNG data URIs), from `summary.json` and the stage outputs only."""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from rich.table import Table

from ponder.pipeline.cache import console
from ponder.runs import atomic_write


def _f(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) or (isinstance(v, int) and not isinstance(v, bool) and digits == 0):
        return f"{v:.{digits}f}"
    return str(v)


def sections(summary: dict) -> list[tuple[str, list[str], list[list]]]:
    """(title, header, rows) of every table in the report."""
    ev = summary["eval"]
    keys = [k for k in ev["sft"] if k.startswith(("greedy_accuracy", "greedy_valid_accuracy", "pass@", "maj@"))]
    acc = [[k, ev["sft"][k], ev["rl"][k], ev["rl"][k] - ev["sft"][k]] for k in keys]
    acc.append(["mean tokens / solution (greedy)", ev["sft"]["mean_tokens"], ev["rl"]["mean_tokens"],
                ev["rl"]["mean_tokens"] - ev["sft"]["mean_tokens"]])
    out = [(f"Held-out accuracy ({ev['sft']['problems']} problems)", ["metric", "SFT", "RL (GRPO)", "RL − SFT"], acc)]
    scale_rows = []
    for name in ("sft", "rl"):
        for r in sorted(summary["scale"][name], key=lambda r: (r["strategy"], r["budget"])):
            scale_rows.append([name.upper(), r["strategy"], r["budget"], r["accuracy"], r.get("generated_tokens"),
                               r.get("scorer_tokens"), r.get("total_tokens")])
    out.append(("Test-time scaling (held-out subset; best_of_n and beam use the PRM, weighted by answer; strategies "
                "compared at equal total tokens: generated + prefill + PRM)",
                ["policy", "strategy", "N", "accuracy", "generated tokens / problem", "PRM tokens / problem",
                 "total tokens / problem"], scale_rows))
    for name, rows in summary.get("equal_compute", {}).items():
        out.append((f"{name.upper()} policy: best_of_n guided by the rollout verifier, against majority@"
                    f"{summary['config']['compare_budget']}'s total tokens",
                    ["N", "accuracy", "total tokens / problem", "verifier tokens / problem"],
                    [[r["budget"], r["accuracy"], r["total_tokens"], r["scorer_tokens"]] for r in rows]))
    ann = summary["annotation"]
    out.append((f"Process labels of {ann['samples']} SFT samples (accuracy {ann['sample_accuracy']:.3f}) against the "
                "exact step checker",
                ["method", "first-error accuracy", "step agreement", "rollouts / sample", "tokens / sample"],
                [[m, r.get("first_error_acc"), r.get("step_agreement"), r.get("rollouts_per_solution"),
                  r.get("tokens_per_solution")] for m, r in ann["methods"].items()]))
    prm = summary["prm"]
    pb = prm.get("processbench") or {}
    ns = list(prm["best_of_n"])
    out.append((f"PRM trained on OmegaPRM labels ({prm.get('train_examples')} solutions): ProcessBench F1 "
                f"{_f(pb.get('f1'))}" + (f" ± {pb['f1_se']:.3f} (bootstrap SE over problems)" if "f1_se" in pb else "")
                + f" (acc. on erroneous {_f(pb.get('acc_erroneous'))}, on correct "
                f"{_f(pb.get('acc_correct'))})",
                ["selector"] + [f"@{n}" for n in ns],
                [["PRM best-of-N"] + [prm["best_of_n"][n] for n in ns],
                 ["PRM weighted best-of-N"] + [prm["weighted_best_of_n"][n] for n in ns],
                 ["majority vote"] + [prm["majority"][n] for n in ns],
                 ["oracle (pass@N)"] + [prm["oracle"][n] for n in ns]]))
    out.append(("Wall time per stage (seconds)", ["stage", "seconds"],
                [[k, v] for k, v in summary["wall_s"].items() if v is not None]))
    return out


def findings(summary: dict) -> list[str]:
    """The claims fixed before the run, stated with their numbers and standard errors,
    whichever way they came out; a difference within two standard errors is called noise."""
    c = summary["comparisons"]
    d, se = c["rl_minus_sft_greedy"], c["rl_minus_sft_greedy_se"]
    noise = abs(d) <= 2 * se
    verdict = "is within noise of" if noise else ("beats" if d > 0 else "falls short of")
    lines = [f"RL {verdict} SFT on held-out greedy accuracy: {summary['eval']['sft']['greedy_accuracy']:.3f} → "
             f"{summary['eval']['rl']['greedy_accuracy']:.3f} ({d:+.3f} ± {se:.3f} standard error of the paired "
             f"difference over {c['rl_vs_sft']['n']} problems)."]
    v = c.get("rl_vs_sft_valid")
    if v:
        verdict = "is within noise" if not v["beyond_2se"] else ("rises" if v["difference"] > 0 else "falls")
        lines.append(f"Right with every line valid under the exact step checker: "
                     f"{summary['eval']['sft']['greedy_valid_accuracy']:.3f} → "
                     f"{summary['eval']['rl']['greedy_valid_accuracy']:.3f} ({v['difference']:+.3f} ± {v['se']:.3f}; "
                     f"{verdict}): whether the gain is in the reasoning or only in the answers.")
    for name, b in c["search_vs_majority"].items():
        noise = not b["beyond_2se"]
        verdict = "is within noise of" if noise else ("beats" if b["difference"] > 0 else "falls short of")
        lines.append(f"{name.upper()} policy: PRM-guided {b['strategy']}@{b['budget']} ({b['accuracy']:.3f}, "
                     f"{_f(b['tokens'], 0)} tokens) {verdict} majority vote@{b['budget']} ({b['majority_accuracy']:.3f}, "
                     f"{_f(b['majority_tokens'], 0)} tokens): {b['difference']:+.3f} ± {b['se']:.3f} over {b['n']} "
                     "problems (the one comparison fixed before the run).")
    for name, b in c.get("search_vs_majority_equal_compute", {}).items():
        verdict = "is within noise of" if not b["beyond_2se"] else ("beats" if b["difference"] > 0 else "falls short of")
        spend = "within" if b["fits"] else "over (no N fits)"
        lines.append(f"{name.upper()} policy at equal total compute (generated + prefill + scorer tokens): best_of_n@"
                     f"{b['budget']} guided by the label-free {b['scorer']} verifier ({b['accuracy']:.3f}, "
                     f"{b['total_tokens']:.0f} tokens, {spend} majority's) {verdict} majority vote@"
                     f"{b['majority_budget']} ({b['majority_accuracy']:.3f}, {b['majority_total_tokens']:.0f} tokens; "
                     f"votes by the search-time answer key): {b['difference']:+.3f} ± {b['se']:.3f} over {b['n']} "
                     "problems (fixed before the run; N chosen by compute alone).")
    pb = (summary.get("prm") or {}).get("processbench")
    if pb:
        se = f" ± {pb['f1_se']:.3f} (bootstrap standard error over problems)" if pb.get("f1_se") is not None else ""
        lines.append(f"PRM trained on OmegaPRM labels only: ProcessBench F1 {pb['f1']:.3f}{se} against the exact step "
                     f"checker on {pb['erroneous'] + pb['correct']} held-out samples (first error found in "
                     f"{pb['acc_erroneous']:.3f} of the erroneous, {pb['acc_correct']:.3f} of the correct called "
                     "error-free).")
    return lines


def write_report(run_dir: Path, summary: dict, results: dict) -> None:
    run_dir = Path(run_dir)
    plots = make_plots(run_dir, summary, results)
    tables = sections(summary)
    notes = findings(summary)
    for title, header, rows in tables[:1] + tables[-1:]:
        table = Table(title=title)
        for i, h in enumerate(header):
            table.add_column(h, justify="left" if i == 0 else "right")
        for r in rows:
            table.add_row(*[_f(v) for v in r])
        console.print(table)
    for line in notes:
        console.print(f"• {line}")
    cfg = json.dumps(summary["config"], indent=2)
    md = [f"# ponder demo: {summary['task']}", "",
          f"Model `{summary['model']}` ({summary['params']:,} parameters), task args `{summary['task_args']}`. "
          f"Command: `{summary['command']}`.", ""]
    md += [f"- {line}" for line in notes] + [""]
    for title, header, rows in tables:
        md += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        md += ["| " + " | ".join(_f(v) for v in r) + " |" for r in rows] + [""]
    for caption, path in plots:
        md += [f"![{caption}]({path.name})", ""]
    md += ["## Config", "", "```json", cfg, "```", ""]
    atomic_write(run_dir / "report.md", "\n".join(md))
    atomic_write(run_dir / "report.html", render_html(summary, tables, notes, plots, cfg))


def render_html(summary: dict, tables, notes: list[str], plots, cfg: str) -> str:
    esc = html.escape
    parts = [f"<h1>ponder demo: {esc(summary['task'])}</h1>",
             f"<p>Model <code>{esc(summary['model'])}</code> ({summary['params']:,} parameters), task args "
             f"<code>{esc(str(summary['task_args']))}</code>. Command: <code>{esc(summary['command'])}</code>.</p>",
             "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>"]
    for caption, path in plots:
        data = base64.b64encode(path.read_bytes()).decode()
        parts.append(f'<figure><img class="plot" alt="{esc(caption)}" src="data:image/png;base64,{data}">'
                     f"<figcaption>{esc(caption)}</figcaption></figure>")
    for title, header, rows in tables:
        parts.append(f"<h2>{esc(title)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"
                     + "".join("<tr>" + "".join(f"<td>{esc(_f(v))}</td>" for v in r) + "</tr>" for r in rows)
                     + "</table>")
    parts.append(f"<h2>Config</h2><pre>{esc(cfg)}</pre>")
    # The page reports how many of its plots decoded and rendered, for headless checks.
    script = ("window.addEventListener('load',()=>{const imgs=[...document.querySelectorAll('img.plot')];"
              "const ok=imgs.filter(i=>i.complete&&i.naturalWidth>0).length;"
              "document.body.dataset.plotsRendered=ok+'/'+imgs.length;});")
    style = ("body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}figure{display:inline-block;margin:.5em}"
             "img.plot{max-width:460px}pre{background:#f6f6f6;padding:1em}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>ponder demo report</title><style>{style}</style>"
            f"<script>{script}</script></head><body>{''.join(parts)}</body></html>")


def make_plots(run_dir: Path, summary: dict, results: dict) -> list[tuple[str, Path]]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        console.print("[yellow]matplotlib not installed (pip install 'ponder[plot]'): no plots[/yellow]")
        return []
    out = []
    from ponder.pipeline.plots import plot_scaling

    path = run_dir / "scaling.png"
    equal = summary.get("equal_compute", {})
    series = {label: summary["scale"][name] + [{"strategy": "best_of_n, rollout verifier", **r}
                                               for r in equal.get(name, [])]
              for label, name in (("SFT", "sft"), ("RL", "rl"))}
    plot_scaling(series, path, compute="total", title="test-time scaling (solid: SFT policy, dashed: RL policy)")
    out.append(("accuracy against total tokens (generated + prefill + scorer)", path))

    sft = [json.loads(l) for l in Path(results["sft"].metrics).read_text().splitlines() if l.strip()]
    rl = [json.loads(l) for l in Path(results["rl"].metrics).read_text().splitlines() if l.strip()]
    path = run_dir / "training.png"
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot([r["step"] for r in sft if "loss" in r], [r["loss"] for r in sft if "loss" in r], color="tab:blue")
    a1.set_yscale("log")
    a1.set_xlabel("SFT step")
    a1.set_ylabel("completion loss", color="tab:blue")
    b1 = a1.twinx()
    ev = [r for r in sft if "eval/greedy_accuracy" in r]
    b1.plot([r["step"] for r in ev], [r["eval/greedy_accuracy"] for r in ev], "o-", color="tab:orange")
    b1.set_ylabel("dev greedy accuracy", color="tab:orange")
    b1.set_ylim(0, 1)
    a1.set_title("SFT")
    steps = [r for r in rl if "reward" in r]
    a2.plot([r["step"] for r in steps], [r["reward"] for r in steps], color="tab:blue", alpha=0.6, label="batch reward")
    ev = [r for r in rl if "eval/accuracy" in r]
    a2.plot([r["step"] for r in ev], [r["eval/accuracy"] for r in ev], "o-", color="tab:orange",
            label="dev greedy accuracy")
    a2.set_ylim(0, 1)
    a2.set_xlabel("optimiser step")
    a2.set_title("GRPO")
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    out.append(("SFT loss and dev accuracy; GRPO reward and dev accuracy", path))
    return out
