"""``report.html``: one self-contained page (plots embedded as PNG data URIs)."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from ragtune.report.markdown import HEADLINE, metrics_rows, verdict

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1d2330}
h1{margin-bottom:.2em} .verdict{font-size:1.1em;background:#f2f6fc;border-left:4px solid #3367d6;padding:.8em 1em;margin:1em 0}
table{border-collapse:collapse;margin:.5em 0 1.5em} th,td{border-bottom:1px solid #dde2ea;padding:.35em .7em;text-align:right}
th:first-child,td:first-child{text-align:left} .plots{display:flex;flex-wrap:wrap;gap:1em} .plots img{max-width:520px;width:100%;border:1px solid #e3e7ee}
.q{margin:.6em 0;padding:.5em .8em;border:1px solid #e3e7ee;border-radius:6px} .small{color:#5b6577;font-size:.9em}
.pos{color:#137333} .neg{color:#b3261e}
"""


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def plots(report: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, data URI) for: metric vs dimension, and before/after bars."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out = []
    metrics = report.get("metrics", {})
    if not metrics:
        return out
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, m in zip(axes, ("ndcg@10", "hit@5")):
        for label, by_dim in metrics.items():
            dims = sorted(by_dim, key=int)
            ax.plot([int(d) for d in dims], [by_dim[d][m] for d in dims], marker="o", label=label)
        ax.set_xlabel("dimensions")
        ax.set_title(m)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Quality vs vector dimension (Matryoshka truncation)")
    out.append(("Metric vs dimension", _png(fig)))
    plt.close(fig)

    labels = list(metrics)
    full = {lbl: metrics[lbl][max(metrics[lbl], key=int)] for lbl in labels}
    fig, ax = plt.subplots(figsize=(9, 3.4))
    width = 0.8 / max(len(labels), 1)
    for i, lbl in enumerate(labels):
        xs = [j + i * width for j in range(len(HEADLINE))]
        bars = ax.bar(xs, [full[lbl].get(m, 0) for m in HEADLINE], width, label=lbl)
        ax.bar_label(bars, fmt="%.2f", fontsize=6)
    ax.set_xticks([j + width * (len(labels) - 1) / 2 for j in range(len(HEADLINE))], HEADLINE)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("Before / after at full dimension")
    out.append(("Before / after", _png(fig)))
    plt.close(fig)
    return out


def render_html(report: dict[str, Any]) -> str:
    e = html.escape
    ds = report.get("dataset", {})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>ragtune report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>ragtune retrieval report</h1>",
        f"<p class='small'>Dataset <b>{e(str(ds.get('name')))}</b> ({e(str(ds.get('kind')))}): "
        f"{ds.get('queries')} queries over {ds.get('corpus')} documents. Created {e(str(report.get('created')))}.<br>"
        + "; ".join(f"<code>{e(k)}</code> = {e(str(v))}" for k, v in report.get("models", {}).items())
        + "</p>",
        f"<div class='verdict'>{e(verdict(report))}</div>",
        "<h2>Plots</h2><div class='plots'>",
    ]
    for title, uri in plots(report):
        parts.append(f"<figure><img alt='{e(title)}' src='{uri}'><figcaption class='small'>{e(title)}</figcaption></figure>")
    parts.append("</div><h2>Metrics (exact search)</h2><table><tr><th>model</th><th>dim</th>")
    parts += [f"<th>{e(m)}</th>" for m in HEADLINE]
    parts.append("</tr>")
    for label, dim, vals in metrics_rows(report):
        parts.append(f"<tr><td>{e(label)}</td><td>{dim}</td>" + "".join(f"<td>{v:.3f}</td>" for v in vals) + "</tr>")
    parts.append("</table>")
    for key, comp in report.get("comparison", {}).items():
        parts.append(f"<h2>Difference {e(key)}</h2><table><tr><th>dim</th><th>metric</th><th>diff</th><th>95% CI</th><th>p</th></tr>")
        for dim in sorted(comp, key=int, reverse=True):
            for m, c in comp[dim].items():
                cls = "pos" if c["ci_low"] > 0 else "neg" if c["ci_high"] < 0 else ""
                parts.append(
                    f"<tr><td>{dim}</td><td>{e(m)}</td><td class='{cls}'>{c['mean_diff']:+.4f}</td>"
                    f"<td>[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]</td><td>{c['p_value']:.3f}</td></tr>"
                )
        parts.append("</table>")
    ex = report.get("examples") or {}
    for title, key in (("Queries that gained most", "gained"), ("Queries that lost most", "lost")):
        items = ex.get(key) or []
        if not items:
            continue
        parts.append(f"<h2>{title}</h2>")
        for it in items:
            cls = "pos" if it["delta"] > 0 else "neg"
            parts.append(
                f"<div class='q'><b>{e(it['query'])}</b> <span class='{cls}'>Δ {it['delta']:+.3f}</span>"
                f"<div class='small'>answer rank: base {it['base_rank'] or '&gt;10'}, tuned {it['tuned_rank'] or '&gt;10'}</div>"
                f"<div class='small'>tuned top hit: {e(it['tuned_top'])}</div>"
                f"<div class='small'>base top hit: {e(it['base_top'])}</div></div>"
            )
    timings = report.get("timings") or {}
    if timings:
        parts.append("<h2>Time per stage</h2><table><tr><th>stage</th><th>seconds</th></tr>")
        parts += [f"<tr><td>{e(k)}</td><td>{v:.1f}</td></tr>" for k, v in timings.items()]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
