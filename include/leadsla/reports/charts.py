"""Charts as PNG bytes (matplotlib, Agg), deterministic: no timestamps or software tags in the
file, fixed size and DPI, so a past period renders byte for byte the same. Never shows a window.
"""

from __future__ import annotations

import io

import pandas as pd


def _figure(width: float = 7.0, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "leadsla"
    return plt, plt.subplots(figsize=(width, height), dpi=100)


def _png(plt, fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def bar(
    labels: list[str],
    values: list[float],
    title: str,
    ylabel: str,
    percent: bool = False,
    line: float | None = None,
) -> bytes:
    plt, (fig, ax) = _figure()
    vals = [0 if pd.isna(v) else v * (100 if percent else 1) for v in values]
    ax.bar([str(x) for x in labels], vals, color="#3b6ea8")
    if line is not None:
        ax.axhline(line * (100 if percent else 1), color="#c0392b", linestyle="--", linewidth=1)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    return _png(plt, fig)


def trend(labels: list[str], values: list[float], title: str, target: float | None = None) -> bytes:
    plt, (fig, ax) = _figure()
    ax.plot(
        [str(x) for x in labels],
        [None if pd.isna(v) else v * 100 for v in values],
        marker="o",
        color="#3b6ea8",
    )
    if target is not None:
        ax.axhline(target * 100, color="#c0392b", linestyle="--", linewidth=1)
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.set_ylabel("% met")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    return _png(plt, fig)


DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def hour_of_week_heatmap(counts: list[list[int]], title: str) -> bytes:
    """A 7 x 24 grid (rows Monday..Sunday, columns hours 0-23) of counts, each non-empty cell
    labelled with its count: readable at an e-mail's width, where a 168-bar chart is not."""
    import numpy as np

    grid = np.asarray(counts, dtype=float).reshape(7, 24)
    plt, (fig, ax) = _figure(8.6, 3.4)
    top = max(float(grid.max()), 1.0)
    image = ax.imshow(grid, cmap="Reds", vmin=0, vmax=top, aspect="auto")
    ax.set_xticks(range(24), [f"{h:02d}" for h in range(24)], fontsize=8)
    ax.set_yticks(range(7), list(DAYS), fontsize=9)
    ax.set_xticks(np.arange(-0.5, 24, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, 7, 1), minor=True)
    ax.grid(which="minor", color="#ffffff", linewidth=1)
    ax.tick_params(which="minor", length=0)
    for day, hour in zip(*np.nonzero(grid), strict=True):
        n = grid[day, hour]
        ax.text(
            hour,
            day,
            f"{n:.0f}",
            ha="center",
            va="center",
            fontsize=7,
            color="#ffffff" if n > top * 0.6 else "#222222",
        )
    ax.set_xlabel("hour the clock started (leadership's time)")
    ax.set_title(title)
    from matplotlib.ticker import MaxNLocator

    fig.colorbar(image, ax=ax, fraction=0.025, pad=0.01, ticks=MaxNLocator(integer=True))
    return _png(plt, fig)
