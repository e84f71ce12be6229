"""The report's figures, drawn with matplotlib and returned as PNG data URIs.

Embedding PNGs (rather than linking files or loading a charting library)
keeps ``report.html`` one self-contained file that opens offline and can be
mailed or attached to a ticket as is.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ragtune.report.facts import COMPARISONS, HEADLINE, full_dim

#: Colour per model; ``+long`` variants share their model's colour and are dashed/hatched.
_COLOURS = {"base": "#d9822b", "tuned": "#2458c6"}
_OTHER = ("#2a9d8f", "#8e44ad", "#c0392b", "#7f8c8d")
_POS, _NEG, _ZERO = "#1e8e3e", "#c5221f", "#9aa3b2"
_INK, _GRID = "#1d2330", "#e3e7ee"


@dataclass(frozen=True)
class Plot:
    """A rendered figure: short title, one-line caption saying how to read it, PNG data URI."""

    key: str
    title: str
    caption: str
    uri: str


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 9,
            "axes.edgecolor": "#b8c0cc",
            "axes.labelcolor": _INK,
            "axes.titlesize": 10,
            "axes.titleweight": "bold",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.color": _GRID,
            "grid.linewidth": 0.8,
            "xtick.color": "#4a5568",
            "ytick.color": "#4a5568",
            "legend.frameon": False,
        }
    )
    return plt


def _png(plt: Any, fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _style(label: str, labels: list[str]) -> dict[str, Any]:
    """Line/bar style of a label: colour by model, dashed and hatched for ``+long``."""
    root = label.removesuffix("+long")
    others = [lbl for lbl in dict.fromkeys(x.removesuffix("+long") for x in labels) if lbl not in _COLOURS]
    colour = _COLOURS.get(root) or _OTHER[others.index(root) % len(_OTHER)]
    long = label.endswith("+long")
    return {"color": colour, "linestyle": "--" if long else "-", "hatch": "///" if long else "", "long": long}


def plots(report: Mapping[str, Any]) -> list[Plot]:
    """Every figure the report's data allows, most telling first; none for an empty report."""
    if not report.get("metrics"):
        return []
    plt = _plt()
    out = [p for p in (_bars(plt, report), _differences(plt, report), _per_query(plt, report), _by_dim(plt, report)) if p]
    return out


def _bars(plt: Any, report: Mapping[str, Any]) -> Plot | None:
    metrics = report["metrics"]
    labels = list(metrics)
    names = [m for m in HEADLINE if any(m in metrics[lbl][full_dim(metrics[lbl])] for lbl in labels)]
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(8.6, 3.3))
    width = min(0.8 / len(labels), 0.45)
    x = np.arange(len(names))
    for i, lbl in enumerate(labels):
        st = _style(lbl, labels)
        row = metrics[lbl][full_dim(metrics[lbl])]
        vals = [row.get(m, np.nan) for m in names]
        bars = ax.bar(
            x + (i - (len(labels) - 1) / 2) * width, vals, width * 0.92, label=lbl,
            color=st["color"] if not st["long"] else "white", edgecolor=st["color"], hatch=st["hatch"], linewidth=1.2,
        )
        if len(labels) <= 2:  # more labels would crowd the values; the summary table has them all
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1.5, color="#4a5568")
    ax.set_xticks(x, names)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("score")
    ax.grid(axis="x", visible=False)
    ax.legend(ncol=len(labels), loc="upper left", bbox_to_anchor=(0, 1.14), fontsize=8)
    pair = any(t in labels and b in labels for _, t, b in COMPARISONS)
    caption = "Every headline metric at each model's full dimension"
    caption += "; hatched bars use long-chunk (best-window) search." if any(lbl.endswith("+long") for lbl in labels) else "."
    return Plot("bars", "Before / after" if pair else "Metrics at full dimension", caption, _png(plt, fig))


def _differences(plt: Any, report: Mapping[str, Any]) -> Plot | None:
    comparison = report.get("comparison") or {}
    keys = [k for k, _, _ in COMPARISONS if comparison.get(k)] + [
        k for k in comparison if k not in {c[0] for c in COMPARISONS} and comparison[k]
    ]
    if not keys:
        return None
    names = list(dict.fromkeys(m for k in keys for by_m in comparison[k].values() for m in by_m))
    dims = sorted({d for k in keys for d in comparison[k]}, key=int, reverse=True)
    fig, axes = plt.subplots(1, len(names), figsize=(8.6, 0.8 + 0.42 * len(dims) * max(1, len(keys) * 0.75)),
                             sharey=True, squeeze=False)
    offsets = np.linspace(0.18, -0.18, len(keys)) if len(keys) > 1 else [0.0]  # first comparison on top
    y_of = {d: len(dims) - 1 - i for i, d in enumerate(dims)}
    lim = 0.05
    for ax, m in zip(axes[0], names):
        for key, off, marker in zip(keys, offsets, ("o", "D", "s", "^")):
            for d, by_m in comparison[key].items():
                c = by_m.get(m)
                if not c:
                    continue
                colour = _POS if c["ci_low"] > 0 else _NEG if c["ci_high"] < 0 else _ZERO
                y = y_of[d] + off
                ax.plot([c["ci_low"], c["ci_high"]], [y, y], color=colour, linewidth=2.2, solid_capstyle="round")
                ax.plot(c["mean_diff"], y, marker, color=colour, markersize=5.5,
                        markerfacecolor=colour if "+long" not in key else "white", markeredgewidth=1.2)
                lim = max(lim, abs(c["ci_low"]), abs(c["ci_high"]))
        ax.axvline(0, color=_INK, linewidth=0.9)
        ax.set_title(m)
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("tuned − base")
    for ax in axes[0]:
        ax.set_xlim(-lim * 1.15, lim * 1.15)
    axes[0][0].set_yticks(range(len(dims)), [f"{d} dims" for d in reversed(dims)])
    axes[0][0].set_ylim(-0.6, len(dims) - 0.4)
    if len(keys) > 1:
        handles = [
            plt.Line2D([], [], color=_INK, marker=mk, linestyle="-", markerfacecolor=_INK if "+long" not in k else "white",
                       label=k.replace("-", " − "))
            for k, mk in zip(keys, ("o", "D", "s", "^"))
        ]
        fig.legend(handles=handles, loc="lower center", ncol=len(keys), bbox_to_anchor=(0.5, -0.02), fontsize=8)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
    else:
        fig.tight_layout()
    return Plot(
        "differences",
        "Tuned minus base, with 95% intervals",
        "Mean per-query difference at each vector size. Green: the interval lies above zero (a real gain); "
        "red: below zero (a real loss); grey: it crosses zero (not distinguishable from noise).",
        _png(plt, fig),
    )


def _per_query(plt: Any, report: Mapping[str, Any]) -> Plot | None:
    pq = report.get("per_query") or {}
    labels = pq.get("labels") or {}
    pair = next(((t, b) for _, t, b in COMPARISONS if t in labels and b in labels), None)
    if pair is None:
        return None
    tuned, base = (np.asarray(labels[x]["values"], dtype=float) for x in pair)
    diff = tuned - base
    metric = pq.get("metric", "ndcg@10")
    gained, lost = int((diff > 1e-9).sum()), int((diff < -1e-9).sum())
    same = len(diff) - gained - lost
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(8.6, 3.0), gridspec_kw={"width_ratios": [1.7, 1]})
    # bins of 0.1; a non-zero change never lands in the 0 bar, which holds only unchanged queries
    moved = diff[np.abs(diff) > 1e-9]
    idx = np.sign(moved) * np.maximum(1, np.round(np.abs(np.clip(moved, -1, 1)) / 0.1))
    centres = np.arange(-10, 11)
    counts = np.array([same if c == 0 else int((idx == c).sum()) for c in centres])
    colours = [_POS if c > 0 else _NEG if c < 0 else _ZERO for c in centres]
    ax.bar(centres / 10, counts, width=0.085, color=colours)
    ax.set_xlim(-1.05, 1.05)
    ax.set_xlabel(f"per-query change in {metric} ({pair[0]} − {pair[1]})")
    ax.set_ylabel("queries")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(axis="x", visible=False)
    ax.set_title(f"{gained} gained · {lost} lost · {same} unchanged", fontsize=9, fontweight="normal", color="#4a5568")
    # where queries ended up: base score vs tuned score, size = how many share the point
    pts, n = np.unique(np.round(np.c_[base, tuned], 2), axis=0, return_counts=True)
    colour = [_POS if t > b else _NEG if t < b else _ZERO for b, t in pts]
    ax2.scatter(pts[:, 0], pts[:, 1], s=12 + 60 * np.sqrt(n / n.max()), c=colour, alpha=0.75, edgecolors="white", linewidths=0.5)
    ax2.plot([0, 1], [0, 1], color=_INK, linewidth=0.8)
    ax2.set_xlim(-0.05, 1.05)
    ax2.set_ylim(-0.05, 1.05)
    ax2.set_aspect("equal")
    ax2.set_xlabel(f"{pair[1]} {metric}")
    ax2.set_ylabel(f"{pair[0]} {metric}")
    fig.tight_layout()
    return Plot(
        "per_query",
        "Per-query change",
        f"How the mean difference is made up: {metric} of each query before and after (above the diagonal = gained).",
        _png(plt, fig),
    )


def _by_dim(plt: Any, report: Mapping[str, Any]) -> Plot | None:
    metrics = report["metrics"]
    if all(len(by_dim) < 2 for by_dim in metrics.values()):
        return None
    labels = list(metrics)
    names = [m for m in ("ndcg@10", "mrr@10", "hit@5") if any(m in v for by in metrics.values() for v in by.values())]
    fig, axes = plt.subplots(1, len(names), figsize=(8.6, 2.9), sharey=False, squeeze=False)
    dims_all = sorted({int(d) for by in metrics.values() for d in by})
    for ax, m in zip(axes[0], names):
        for lbl in labels:
            st = _style(lbl, labels)
            dims = sorted(metrics[lbl], key=int)
            ax.plot([int(d) for d in dims], [metrics[lbl][d].get(m, np.nan) for d in dims], marker="o", markersize=4,
                    color=st["color"], linestyle=st["linestyle"], label=lbl,
                    markerfacecolor="white" if st["long"] else st["color"])
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims_all, [str(d) for d in dims_all])
        ax.minorticks_off()
        ax.set_title(m)
        ax.set_xlabel("dimensions kept")
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="lower center", ncol=len(labels),
               bbox_to_anchor=(0.5, -0.02), fontsize=8)
    fig.tight_layout(rect=(0, 0.09, 1, 1))
    return Plot(
        "by_dim",
        "Quality vs vector size",
        "Matryoshka truncation: the same vectors cut to fewer dimensions (cheaper to store and search).",
        _png(plt, fig),
    )
