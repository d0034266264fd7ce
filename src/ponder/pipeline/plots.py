"""Plots a person would rather look at than read: accuracy against compute for a scaling sweep
(`ponder scale`'s scale.png, the demo report's scaling figure). matplotlib is the optional
`ponder[plot]` extra, imported when a plot is drawn."""
from __future__ import annotations


COLORS = {"greedy": "black", "majority": "tab:blue", "best_of_n": "tab:orange", "beam": "tab:green",
          "dvts": "tab:purple", "lookahead": "tab:brown", "mcts": "tab:pink", "compute-optimal": "tab:red",
          "pass@N oracle": "grey", "best_of_n, rollout verifier": "tab:olive"}


def plot_scaling(rows: list[dict] | dict[str, list[dict]], path, title: str = "", compute: str = "generated") -> None:
    """Accuracy against mean generated (or, `compute="total"`, generated + prefill + scorer)
    tokens per problem (log x), one line per strategy.
    `rows` may map a policy name to its rows (e.g. {"SFT": ..., "RL": ...}): each policy then
    gets its own line style, colours still naming the strategy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = rows if isinstance(rows, dict) else {"": rows}
    styles = ["-", "--", ":", "-."]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, (policy, policy_rows) in enumerate(series.items()):
        for strategy in sorted({r["strategy"] for r in policy_rows}):
            pts = sorted((r[f"{compute}_tokens"], r["accuracy"]) for r in policy_rows
                         if r["strategy"] == strategy and f"{compute}_tokens" in r)
            label = f"{policy} {strategy}".strip()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], styles[k % len(styles)], marker="o", label=label,
                    color=COLORS.get(strategy))
    ax.set_xscale("log")
    ax.set_xlabel(f"{compute} tokens per problem (log)")
    ax.set_ylabel("accuracy")
    ax.set_title(title or "test-time scaling")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(series) > 1 else 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_panels(panels: list[tuple[str, dict[str, tuple[list, list]]]], path, xlabel: str = "step") -> None:
    """A grid of small line plots, one per (title, {label: (x, y)}) panel, three a row: a run's
    training curves (`ponder report`). A panel of several lines gets a legend; evaluations
    (labels starting with eval/) are drawn in orange."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    n = len(panels)
    cols = min(n, 3)
    fig, axes = plt.subplots(-(-n // cols), cols, figsize=(4 * cols, 3 * -(-n // cols)), squeeze=False)
    for ax, (title, lines) in zip(axes.flat, panels):
        for label, (x, y) in lines.items():
            style = "o-" if len(x) < 20 else "-"
            color = "tab:orange" if label.startswith("eval/") and len(lines) == 1 else None
            ax.plot(x, y, style, color=color, markersize=3, label=label)
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps and rounds are whole
        ax.grid(alpha=0.3)
        if len(lines) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
