"""``report.md``: the numbers a person reads first, as Markdown tables (no plots)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ragtune.report.classification import classification_markdown
from ragtune.report.facts import (
    HEADLINE,
    SPEED_COLUMNS,
    dataset_facts,
    fmt_seconds,
    metrics_rows,
    ragas_coverage,
    speed_table,
    stage_rows,
    summary_rows,
    verdict,
    verdicts,
)

__all__ = ["HEADLINE", "metrics_rows", "render_markdown", "verdict", "verdicts"]


def _cell(text: Any) -> str:
    """Table-safe text: pipes and newlines would break a Markdown row."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _num(v: float) -> str:
    return "—" if math.isnan(v) else f"{v:.3f}"


def render_markdown(report: Mapping[str, Any]) -> str:
    """The whole Markdown report: verdict, summary, per-dimension tables, examples, stages, dataset."""
    ds = report.get("dataset") or {}
    cls = report.get("task") == "classification"
    lines = [
        f"# ragtune {'classification' if cls else 'retrieval'} report",
        "",
        (
            f"Dataset: **{ds.get('name')}** ({ds.get('kind')}) — "
            + (f"{(report.get('classification') or {}).get('test')} held-out texts.  " if cls else
               f"{ds.get('queries')} queries over {ds.get('corpus')} documents.  ")
        ),
        "Models: " + ", ".join(f"`{k}` = {v}" for k, v in (report.get("models") or {}).items()),
        "",
    ]
    lines += [f"**{v}**  " for v in verdicts(report)]
    lines += _summary(report) + _all_dims(report) + _comparisons(report) + classification_markdown(report)
    lines += _ragas(report) + _speed(report) + _examples(report) + _stages(report) + _dataset(report)
    lines += ["", f"_ragtune {report.get('ragtune_version', '?')}, created {report.get('created', '?')}._"]
    return "\n".join(lines) + "\n"


def _summary(report: Mapping[str, Any]) -> list[str]:
    labels, rows = summary_rows(report)
    if not labels:
        return []
    diff_keys = list(dict.fromkeys(d.key for r in rows for d in r.diffs))
    head = ["metric", *labels, *(f"{k} (95% CI)" for k in diff_keys)]
    out = ["", "## Summary (full dimension, exact search)", "", "| " + " | ".join(head) + " |",
           "|---|" + "---:|" * (len(head) - 1)]
    for r in rows:
        cells = [r.metric, *(_num(r.values[lbl]) for lbl in labels)]
        by_key = {d.key: d for d in r.diffs}
        for k in diff_keys:
            d = by_key.get(k)
            cells.append(f"{d.mean_diff:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]" if d else "")
        out.append("| " + " | ".join(cells) + " |")
    return out


def _all_dims(report: Mapping[str, Any]) -> list[str]:
    rows = metrics_rows(report)
    if not rows:
        return []
    out = ["", "## Metrics per dimension (exact search)", "", "| model | dim | " + " | ".join(HEADLINE) + " |",
           "|---|---:|" + "---:|" * len(HEADLINE)]
    for label, dim, vals in rows:
        out.append(f"| {label} | {dim} | " + " | ".join(_num(v) for v in vals) + " |")
    return out


def _comparisons(report: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for key, comp in (report.get("comparison") or {}).items():
        out += ["", f"## Difference {key} (paired bootstrap, 95% CI)", "", "| dim | metric | diff | CI | p |",
                "|---:|---|---:|---|---:|"]
        for dim in sorted(comp, key=int, reverse=True):
            for m, c in comp[dim].items():
                out.append(
                    f"| {dim} | {m} | {c['mean_diff']:+.4f} | [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] | {c['p_value']:.3f} |"
                )
    return out


def _ragas(report: Mapping[str, Any]) -> list[str]:
    scores = report.get("ragas") or {}
    if not scores:
        return []
    names = list(dict.fromkeys(m for by_metric in scores.values() for m in by_metric))
    out = ["", "## RAG quality (ragas)", "", "| model | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label, by_metric in scores.items():
        out.append(f"| {label} | " + " | ".join(_num(float(by_metric.get(m, float("nan")))) for m in names) + " |")
    note = (
        "_id_context_* compare retrieved chunk ids with the relevant ones (every query, no LLM); "
        "faithfulness, answer_relevancy and llm_context_precision are judged by an LLM on a sample of queries._"
    )
    out += ["", note, *(f"_{line}_" for line in ragas_coverage(report))]
    return out


def _speed(report: Mapping[str, Any]) -> list[str]:
    caption, rows = speed_table(report)
    if not rows:
        return []
    out = ["", "## Speed of each form", "", "| " + " | ".join(SPEED_COLUMNS) + " |", "|---|" + "---:|" * (len(SPEED_COLUMNS) - 1)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*out, "", f"_{caption}_"]


def _examples(report: Mapping[str, Any]) -> list[str]:
    ex = report.get("examples") or {}
    out: list[str] = []
    for title, key in (("Queries that gained most", "gained"), ("Queries that lost most", "lost")):
        items = ex.get(key) or []
        if not items:
            continue
        out += ["", f"## {title} ({ex.get('metric')} at {ex.get('dim')} dims)", ""]
        for it in items:
            out.append(
                f"- **{_cell(it['query'])}** — Δ {it['delta']:+.3f}; rank of the answer: base {it['base_rank'] or '>10'}, "
                f"tuned {it['tuned_rank'] or '>10'}  \n  tuned top hit: _{_cell(it['tuned_top'])}_  \n"
                f"  base top hit: _{_cell(it['base_top'])}_"
            )
    return out


def _stages(report: Mapping[str, Any]) -> list[str]:
    rows = stage_rows(report)
    if not rows:
        return []
    out = ["", "## Time and cost per stage", "", "| stage | time | share | what it did |", "|---|---:|---:|---|"]
    for r in rows:
        share = f"{r.share:.0%}" if r.share is not None else ""
        out.append(f"| {r.name} | {fmt_seconds(r.seconds)} | {share} | {_cell('; '.join(r.details))} |")
    return out


def _dataset(report: Mapping[str, Any]) -> list[str]:
    facts = dataset_facts(report)
    if not facts:
        return []
    return ["", "## Dataset and models", ""] + [f"- {k}: {_cell(v)}" for k, v in facts]
