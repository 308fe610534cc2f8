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
