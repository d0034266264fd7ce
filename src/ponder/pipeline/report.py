"""The demo's report: a terminal table, `report.md`, and the SFT curve as a PNG."""
from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from ponder.pipeline.stages import console


def write_report(run_dir: Path, summary: dict, results: dict) -> None:
    ev = summary["eval"]
    rows = [("held-out problems", f"{ev['problems']}"), ("greedy accuracy", f"{ev['greedy_accuracy']:.3f}")]
    rows += [(k, f"{v:.3f}") for k, v in ev.items() if k.startswith(("pass@", "maj@"))]
    rows += [("mean tokens / solution (greedy)", f"{ev['mean_tokens']:.1f}"),
             ("model parameters", f"{summary['params']:,}")]
    rows += [(f"wall time: {k}", f"{v:.1f} s") for k, v in summary["wall_s"].items() if v is not None]
    table = Table(title=f"ponder demo — {summary['task']} ({summary['model']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    md = [f"# ponder demo: {summary['task']}", "", f"Model `{summary['model']}`, task args {summary['task_args']}.", "",
          "| metric | value |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in rows]
    curve = plot_sft_curve(Path(results["sft"]["metrics"]), run_dir / "sft_curve.png")
    if curve is not None:
        md += ["", f"![SFT loss and held-out greedy accuracy]({curve.name})"]
    (run_dir / "report.md").write_text("\n".join(md) + "\n")


def plot_sft_curve(metrics: Path, out: Path) -> Path | None:
    """SFT loss and periodic held-out greedy accuracy against step, as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        console.print("[yellow]matplotlib not installed (pip install 'ponder[plot]'): no curve plot[/yellow]")
        return None
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval/greedy_accuracy" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], color="tab:blue", label="train loss")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("completion loss (nats/token)", color="tab:blue")
    ax.set_yscale("log")
    ax2 = ax.twinx()
    ax2.plot([r["step"] for r in evals], [r["eval/greedy_accuracy"] for r in evals], "o-", color="tab:orange",
             label="held-out greedy accuracy")
    ax2.set_ylabel("held-out greedy accuracy", color="tab:orange")
    ax2.set_ylim(0, 1)
    ax.set_title("SFT of the tiny model")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
