"""``report.md``: the numbers a person reads first, as Markdown tables."""

from __future__ import annotations

from typing import Any

HEADLINE = ("hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10", "recall@10")


def verdict(report: dict[str, Any]) -> str:
    """One sentence: did tuning help, by how much, and is it more than noise."""
    for key in ("tuned-base", "tuned+long-base+long"):
        comp = report.get("comparison", {}).get(key)
        if not comp:
            continue
        dim = max(comp, key=int)
        c = comp[dim].get("ndcg@10")
        if not c:
            continue
        sign = "improved" if c["mean_diff"] > 0 else "lowered"
        sure = (
            "the 95% interval excludes zero"
            if c["ci_low"] > 0 or c["ci_high"] < 0
            else "the 95% interval includes zero: not distinguishable from noise"
        )
        return (
            f"Tuning {sign} nDCG@10 by {c['mean_diff']:+.3f} at {dim} dims "
            f"(95% CI {c['ci_low']:+.3f} to {c['ci_high']:+.3f}, p={c['p_value']:.3f}, "
            f"{c['n_queries']} queries); {sure}."
        )
    return "No base/tuned pair was evaluated."


def metrics_rows(report: dict[str, Any]) -> list[tuple[str, str, list[float]]]:
    rows = []
    for label, by_dim in report.get("metrics", {}).items():
        for dim in sorted(by_dim, key=int, reverse=True):
            rows.append((label, dim, [by_dim[dim].get(m, float("nan")) for m in HEADLINE]))
    return rows


def render_markdown(report: dict[str, Any]) -> str:
    ds = report.get("dataset", {})
    lines = [
        "# ragtune retrieval report",
        "",
        f"Dataset: **{ds.get('name')}** ({ds.get('kind')}) — {ds.get('queries')} queries over "
        f"{ds.get('corpus')} documents.  ",
        "Models: " + ", ".join(f"`{k}` = {v}" for k, v in report.get("models", {}).items()),
        "",
        f"**{verdict(report)}**",
        "",
        "## Metrics (exact search)",
        "",
        "| model | dim | " + " | ".join(HEADLINE) + " |",
        "|---|---:|" + "---:|" * len(HEADLINE),
    ]
    for label, dim, vals in metrics_rows(report):
        lines.append(f"| {label} | {dim} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    for key, comp in report.get("comparison", {}).items():
        lines += ["", f"## Difference {key} (paired bootstrap, 95% CI)", "", "| dim | metric | diff | CI | p |", "|---:|---|---:|---|---:|"]
        for dim in sorted(comp, key=int, reverse=True):
            for m, c in comp[dim].items():
                lines.append(
                    f"| {dim} | {m} | {c['mean_diff']:+.4f} | [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] | {c['p_value']:.3f} |"
                )
    ex = report.get("examples") or {}
    for title, key in (("Queries that gained most", "gained"), ("Queries that lost most", "lost")):
        items = ex.get(key) or []
        if not items:
            continue
        lines += ["", f"## {title} ({ex.get('metric')} at {ex.get('dim')} dims)", ""]
        for it in items:
            lines.append(
                f"- **{it['query']}** — Δ {it['delta']:+.3f}; rank of the answer: base {it['base_rank'] or '>10'}, "
                f"tuned {it['tuned_rank'] or '>10'}  \n  tuned top hit: _{it['tuned_top']}_"
            )
    timings = report.get("timings") or {}
    if timings:
        lines += ["", "## Time per stage", "", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    return "\n".join(lines) + "\n"
