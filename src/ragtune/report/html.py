"""``report.html``: one self-contained page — inline CSS, plots as PNG data URIs, no scripts.

Nothing is fetched when the page opens (no CDN, no web fonts), so it renders
the same offline, from an attachment, or on an air-gapped machine.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

from ragtune.report.classification import classification_html, classification_verdict_html
from ragtune.report.facts import (
    HEADLINE,
    KEY_METRIC,
    SPEED_COLUMNS,
    Difference,
    dataset_facts,
    fmt_seconds,
    full_dim,
    headline_differences,
    metrics_rows,
    ragas_coverage,
    speed_table,
    stage_rows,
    summary_rows,
    total_seconds,
    verdicts,
)
from ragtune.report.plots import Plot, plots

__all__ = ["plots", "render_html"]

_CSS = """
:root{--ink:#1d2330;--muted:#5b6577;--line:#e3e7ee;--soft:#f6f8fb;--blue:#2458c6;--pos:#137333;--neg:#b3261e;--zero:#6b7385}
*{box-sizing:border-box}
body{margin:0;font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);background:#fff}
.wrap{max-width:1140px;margin:0 auto;padding:0 28px}
header.top{background:linear-gradient(180deg,#f3f6fb,#fff);border-bottom:1px solid var(--line);padding:26px 0 0}
.eyebrow{text-transform:uppercase;letter-spacing:.08em;font-size:12px;color:var(--muted);font-weight:600}
h1{font-size:28px;margin:.15em 0 .1em;line-height:1.2}
.meta{color:var(--muted);font-size:14px}
nav{display:flex;gap:22px;margin-top:16px;font-size:14px}
nav a{color:var(--muted);text-decoration:none;padding:8px 0;border-bottom:2px solid transparent}
nav a:hover{color:var(--blue);border-bottom-color:var(--blue)}
section{margin:34px 0}
h2{font-size:19px;margin:0 0 .7em;padding-bottom:.3em;border-bottom:1px solid var(--line)}
h3{font-size:16px;margin:1.2em 0 .5em}
.verdict{display:flex;gap:28px;align-items:center;border:1px solid var(--line);border-left:6px solid var(--zero);border-radius:10px;padding:20px 24px;background:var(--soft)}
.verdict.v-pos{border-left-color:var(--pos)} .verdict.v-neg{border-left-color:var(--neg)}
.verdict .num{font-size:44px;font-weight:700;line-height:1;font-variant-numeric:tabular-nums;white-space:nowrap}
.verdict.v-pos .num{color:var(--pos)} .verdict.v-neg .num{color:var(--neg)} .verdict.v-zero .num{color:var(--zero)}
.verdict .what{font-size:13px;color:var(--muted);margin-top:6px;white-space:nowrap}
.verdict p{margin:0 0 .4em;font-size:16px} .verdict p.second{font-size:14px;color:var(--muted);margin:0}
.badge{display:inline-block;font-size:12px;font-weight:600;padding:2px 9px;border-radius:99px;margin-bottom:6px}
.badge.pos{background:#e6f4ea;color:var(--pos)} .badge.neg{background:#fce8e6;color:var(--neg)} .badge.zero{background:#eceff3;color:var(--zero)}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:14px;margin-top:18px}
.tile{border:1px solid var(--line);border-radius:10px;padding:12px 16px}
.tile .k{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
.tile .v{font-size:22px;font-weight:650;font-variant-numeric:tabular-nums;margin-top:2px}
.tile .s{font-size:12px;color:var(--muted)}
table{border-collapse:collapse;width:100%;font-size:14px;font-variant-numeric:tabular-nums}
th,td{padding:7px 10px;border-bottom:1px solid var(--line);text-align:right;vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:12.5px;text-transform:uppercase;letter-spacing:.03em;background:var(--soft)}
th:first-child,td:first-child{text-align:left}
td.text,th.text{text-align:left}
tbody tr:hover{background:#fafbfd}
tr.key td{font-weight:650}
.pos{color:var(--pos)} .neg{color:var(--neg)} .zero{color:var(--zero)}
.ci{color:var(--muted);font-size:12.5px}
figure{margin:0 0 26px;border:1px solid var(--line);border-radius:10px;padding:14px 16px;background:#fff}
figure img{display:block;width:100%;height:auto}
figcaption{font-size:13.5px;color:var(--muted);margin-top:8px} figcaption b{color:var(--ink)}
.q{border:1px solid var(--line);border-radius:10px;padding:14px 16px;margin:0 0 14px}
.q .head{display:flex;justify-content:space-between;gap:16px;align-items:baseline}
.q .query{font-weight:650;font-size:15.5px}
.q .delta{font-weight:700;font-variant-numeric:tabular-nums;white-space:nowrap}
.q .ranks{font-size:13px;color:var(--muted);margin:2px 0 10px}
.cols{display:grid;grid-template-columns:repeat(3,1fr);gap:12px}
.hit{background:var(--soft);border-radius:8px;padding:9px 11px;font-size:13px;line-height:1.45}
.hit .lab{display:block;font-size:11.5px;font-weight:650;text-transform:uppercase;letter-spacing:.05em;color:var(--muted);margin-bottom:3px}
.hit.ok{background:#eef7f0} .hit.ok .lab{color:var(--pos)}
.bar{height:8px;border-radius:4px;background:var(--blue);opacity:.75;min-width:2px}
td.barcell{width:22%}
td.details{text-align:left;font-size:13px;color:var(--muted)} td.details div{margin:1px 0}
dl{display:grid;grid-template-columns:max-content 1fr;gap:6px 22px;margin:0;font-size:14px}
dt{color:var(--muted)} dd{margin:0;word-break:break-word}
details{margin:10px 0} summary{cursor:pointer;color:var(--blue);font-weight:600;margin-bottom:10px}
.note{font-size:13px;color:var(--muted)} .notes{margin-top:10px}
.empty{color:var(--muted);font-style:italic}
footer{border-top:1px solid var(--line);margin-top:40px;padding:16px 0 30px;font-size:12.5px;color:var(--muted)}
@media (max-width:760px){.verdict{flex-direction:column;align-items:flex-start}.cols{grid-template-columns:1fr}}
"""

e = html.escape


def render_html(report: Mapping[str, Any]) -> str:
    """The whole page as one string (UTF-8, no external resources)."""
    figures = plots(report)
    sections = [
        _verdict(report) + _tiles(report),
        _summary(report),
        classification_html(report),
        _plots(figures),
        _examples(report),
        _ragas(report),
        _speed(report),
        _stages(report),
        _details(report),
        _dataset(report),
    ]
    nav = [("summary", "Summary"), ("classification", "Classification"), ("plots", "Plots"), ("queries", "Queries"), ("ragas", "RAG quality"), ("speed", "Speed"),
           ("stages", "Stages"), ("details", "All numbers"), ("dataset", "Dataset")]
    body = "\n".join(s for s in sections if s)
    links = "".join(f"<a href='#{k}'>{t}</a>" for k, t in nav if f"id='{k}'" in body)
    ds = report.get("dataset") or {}
    meta = " · ".join(
        x for x in (
            f"{ds['queries']:,} queries" if isinstance(ds.get("queries"), int) else "",
            f"{ds['corpus']:,} documents" if isinstance(ds.get("corpus"), int) else "",
            f"created {report['created']}" if report.get("created") else "",
        ) if x
    )
    return "\n".join([
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>ragtune report — {e(str(ds.get('name', '')))}</title><style>{_CSS}</style></head><body>",
        f"<header class='top'><div class='wrap'><div class='eyebrow'>ragtune {e(report.get('task', 'retrieval'))} report</div>",
        f"<h1>{e(str(ds.get('name') or 'Evaluation'))}</h1><div class='meta'>{e(meta)}</div>",
        f"<nav>{links}</nav></div></header><main class='wrap'>",
        body,
        (
            f"</main><footer><div class='wrap'>ragtune {e(str(report.get('ragtune_version', '')))} · "
            + ("classification scores come from a logistic-regression probe on frozen embeddings · intervals are "
               "bootstrap over test texts." if report.get("task") == "classification" else
               "quality figures come from exact (brute-force) search; <i>+long</i> labels search long chunks "
               "by their best window · intervals are paired bootstrap over queries.")
            + "</div></footer></body></html>"
        ),
    ])


def _num(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(f) else f"{f:.3f}"


def _verdict(report: Mapping[str, Any]) -> str:
    diffs = headline_differences(report)
    texts = verdicts(report)
    if not diffs and report.get("task") == "classification":
        return classification_verdict_html(report)
    if not diffs:
        return f"<section class='verdict v-zero' id='verdict'><div><span class='badge zero'>no comparison</span><p>{e(texts[0])}</p></div></section>"
    d = diffs[0]
    badge = {"pos": "better than noise", "neg": "worse, beyond noise", "zero": "within noise"}[d.sign]
    second = "".join(f"<p class='second'>{e(t)}</p>" for t in texts[1:])
    return (
        f"<section class='verdict v-{d.sign}' id='verdict'>"
        f"<div><div class='num'>{d.mean_diff:+.3f}</div>"
        f"<div class='what'>nDCG@10, {e(d.tuned)} − {e(d.base)} @ {e(d.dim)} dims</div>"
        f"<div class='what'>{e(d.ci_text)}</div></div>"
        f"<div><span class='badge {d.sign}'>{badge}</span><p>{e(texts[0])}</p>{second}</div></section>"
    )


def _tiles(report: Mapping[str, Any]) -> str:
    metrics = report.get("metrics") or {}
    tiles = []
    for label in [x for x in ("base", "tuned") if x in metrics] or list(metrics)[:2]:
        row = metrics[label][full_dim(metrics[label])]
        tiles.append((f"{label} nDCG@10", _num(row.get(KEY_METRIC)), f"hit@5 {_num(row.get('hit@5'))} · MRR@10 {_num(row.get('mrr@10'))}"))
    ds = report.get("dataset") or {}
    if isinstance(ds.get("queries"), int):
        tiles.append(("evaluated on", f"{ds['queries']:,}", f"queries over {ds.get('corpus', '?'):,} documents" if isinstance(ds.get("corpus"), int) else "queries"))
    total = total_seconds(report)
    if total is not None:
        n = len([s for s in stage_rows(report) if s.seconds is not None])
        tiles.append(("run time", fmt_seconds(total), f"{n} stage{'s' if n != 1 else ''}"))
    train = report.get("training") or {}
    if isinstance(train.get("steps"), int):
        tiles.append(("training", f"{train['steps']:,} steps", f"{train.get('train_pairs', '?'):,} pairs" if isinstance(train.get("train_pairs"), int) else ""))
    if not tiles:
        return ""
    cells = "".join(f"<div class='tile'><div class='k'>{e(k)}</div><div class='v'>{e(v)}</div><div class='s'>{e(s)}</div></div>" for k, v, s in tiles)
    return f"<div class='tiles'>{cells}</div>"


def _diff_cell(d: Difference | None) -> str:
    if d is None:
        return "<td></td>"
    return (
        f"<td><span class='{d.sign}'>{d.mean_diff:+.3f}</span> "
        f"<span class='ci'>[{d.ci_low:+.3f}, {d.ci_high:+.3f}]</span></td>"
    )


def _summary(report: Mapping[str, Any]) -> str:
    labels, rows = summary_rows(report)
    if not labels and report.get("task") == "classification":
        return ""
    if not labels:
        return "<section id='summary'><h2>Summary</h2><p class='empty'>No metrics recorded.</p></section>"
    keys = list(dict.fromkeys(d.key for r in rows for d in r.diffs))
    dims = {lbl: full_dim((report.get("metrics") or {})[lbl]) for lbl in labels}
    head = "".join(f"<th>{e(lbl)}<br><span class='ci'>{e(dims[lbl])} dims</span></th>" for lbl in labels)
    head += "".join(f"<th>{e(k.replace('-', ' − '))}<br><span class='ci'>diff [95% CI]</span></th>" for k in keys)
    body = []
    for r in rows:
        by_key = {d.key: d for d in r.diffs}
        cls = " class='key'" if r.metric == KEY_METRIC else ""
        body.append(
            f"<tr{cls}><td>{e(r.metric)}</td>" + "".join(f"<td>{_num(r.values[lbl])}</td>" for lbl in labels)
            + "".join(_diff_cell(by_key.get(k)) for k in keys) + "</tr>"
        )
    note = "" if keys else "<p class='note'>Only one model (or no base/tuned pair) was evaluated, so no differences are shown.</p>"
    return (
        "<section id='summary'><h2>Summary</h2>"
        f"<table><thead><tr><th>metric</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{note}</section>"
    )


def _plots(figures: list[Plot]) -> str:
    if not figures:
        return ""
    figs = "".join(
        f"<figure id='plot-{e(p.key)}'><img alt='{e(p.title)}' src='{p.uri}'>"
        f"<figcaption><b>{e(p.title)}.</b> {e(p.caption)}</figcaption></figure>"
        for p in figures
    )
    return f"<section id='plots'><h2>Plots</h2>{figs}</section>"


def _rank(r: Any) -> str:
    return str(r) if r else "&gt;10"


def _examples(report: Mapping[str, Any]) -> str:
    ex = report.get("examples") or {}
    if not ex:
        return ""
    intro = (
        f"<section id='queries'><h2>Queries that moved most</h2><p class='note'>Per-query {e(str(ex.get('metric')))} "
        f"at {e(str(ex.get('dim')))} dims. For each query: the chunk that holds the answer, and what each model "
        "ranked first (green when that is the answer).</p>"
    )
    parts = [intro]
    for title, key in (("Gained", "gained"), ("Lost", "lost")):
        items = ex.get(key) or []
        parts.append(f"<h3>{title} most</h3>")
        if not items:
            parts.append(f"<p class='empty'>No query {'gained' if key == 'gained' else 'lost'}.</p>")
        for it in items:
            cls = "pos" if it["delta"] > 0 else "neg"
            rel = (it.get("relevant") or [""])[0]
            parts.append(
                f"<div class='q'><div class='head'><div class='query'>{e(it['query'])}</div>"
                f"<div class='delta {cls}'>Δ {it['delta']:+.3f}</div></div>"
                f"<div class='ranks'>rank of the answer: base {_rank(it.get('base_rank'))} → tuned {_rank(it.get('tuned_rank'))}</div>"
                f"<div class='cols'><div class='hit'><span class='lab'>answer chunk</span>{e(rel)}</div>{_tops(it)}</div></div>"
            )
    parts.append("</section>")
    return "".join(parts)


def _tops(it: Mapping[str, Any]) -> str:
    """What each model ranked first; one wide box when both chose the same chunk."""
    def box(label: str, text: str, ok: bool, wide: bool = False) -> str:
        style = " style='grid-column:span 2'" if wide else ""
        return f"<div class='hit{' ok' if ok else ''}'{style}><span class='lab'>{label}</span>{e(text)}</div>"

    base, tuned = it.get("base_top", ""), it.get("tuned_top", "")
    if base == tuned:
        return box("both models ranked first", base, it.get("base_rank") == 1, wide=True)
    return box("base ranked first", base, it.get("base_rank") == 1) + box("tuned ranked first", tuned, it.get("tuned_rank") == 1)


def _ragas(report: Mapping[str, Any]) -> str:
    scores = report.get("ragas") or {}
    if not scores:
        return ""
    names = list(dict.fromkeys(m for by_metric in scores.values() for m in by_metric))
    head = "".join(f"<th>{e(m)}</th>" for m in names)
    rows = "".join(
        f"<tr><td>{e(label)}</td>" + "".join(f"<td>{_num(by_metric.get(m))}</td>" for m in names) + "</tr>"
        for label, by_metric in scores.items()
    )
    return (
        "<section id='ragas'><h2>RAG quality (ragas)</h2>"
        f"<table><thead><tr><th>model</th>{head}</tr></thead><tbody>{rows}</tbody></table>"
        f"{_ragas_note(names, ragas_coverage(report))}</section>"
    )


def _speed(report: Mapping[str, Any]) -> str:
    caption, rows = speed_table(report)
    if not rows:
        return ""
    head = "".join(f"<th>{e(c)}</th>" for c in SPEED_COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (
        "<section id='speed'><h2>Speed of each form</h2>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<div class='notes'><div class='note'>{e(caption)}</div></div></section>"
    )


_RAGAS_NOTES = (
    ("id_context_precision", "id_context_precision@k: share of the top-k retrieved chunks that are relevant (no LLM)."),
    ("id_context_recall", "id_context_recall@k: share of the relevant chunks found in the top k (no LLM)."),
    ("faithfulness", "faithfulness: share of the answer's claims that the retrieved chunks support (LLM-judged)."),
    ("answer_relevancy", "answer_relevancy: how well the answer addresses the question (LLM + embeddings)."),
    ("llm_context_precision", "llm_context_precision: whether the chunks ranked high were useful for the answer (LLM-judged)."),
)


def _ragas_note(names: list[str], coverage: list[str]) -> str:
    """Explain only the metrics present; LLM-judged ones come from a sample of queries."""
    notes = [text for prefix, text in _RAGAS_NOTES if any(n.startswith(prefix) for n in names)]
    if any(n.startswith(("faithfulness", "answer_relevancy", "llm_")) for n in names):
        notes.append("LLM-judged scores use a sample of queries; the LLM answers from each model's retrieved chunks.")
    notes += coverage
    return "<div class='notes'>" + "".join(f"<div class='note'>{e(t)}</div>" for t in notes) + "</div>"


def _stages(report: Mapping[str, Any]) -> str:
    rows = stage_rows(report)
    if not rows:
        return ""
    longest = max((r.seconds or 0) for r in rows) or 1
    body = "".join(
        f"<tr><td>{e(r.name)}</td><td>{fmt_seconds(r.seconds)}</td>"
        f"<td>{'' if r.share is None else f'{r.share:.0%}'}</td>"
        f"<td class='barcell'><div class='bar' style='width:{100 * (r.seconds or 0) / longest:.1f}%'></div></td>"
        f"<td class='details'>{''.join(f'<div>{e(x)}</div>' for x in r.details)}</td></tr>"
        for r in rows
    )
    total = total_seconds(report)
    foot = f"<tr><td><b>total</b></td><td><b>{fmt_seconds(total)}</b></td><td></td><td></td><td></td></tr>" if total else ""
    return (
        "<section id='stages'><h2>Time and cost per stage</h2>"
        "<table><thead><tr><th>stage</th><th>time</th><th>share</th><th></th><th class='text'>what it did</th></tr></thead>"
        f"<tbody>{body}{foot}</tbody></table></section>"
    )


def _details(report: Mapping[str, Any]) -> str:
    """Every model × dimension and every tested difference, folded away: the top of the page has the gist."""
    rows = metrics_rows(report)
    if not rows:
        return ""
    head = "".join(f"<th>{e(m)}</th>" for m in HEADLINE)
    body = "".join(
        f"<tr><td>{e(label)}</td><td>{e(dim)}</td>" + "".join(f"<td>{_num(v)}</td>" for v in vals) + "</tr>"
        for label, dim, vals in rows
    )
    parts = [
        "<section id='details'><h2>All numbers</h2><details><summary>Every model and dimension, every tested difference</summary>",
        "<h3>Metrics per model and dimension (exact search)</h3>",
        f"<table><thead><tr><th>model</th><th>dim</th>{head}</tr></thead><tbody>{body}</tbody></table>",
    ]
    for key, comp in (report.get("comparison") or {}).items():
        parts.append(
            f"<h3>Difference {e(key.replace('-', ' − '))} (paired bootstrap)</h3><table><thead><tr><th>dim</th>"
            "<th class='text'>metric</th><th>diff</th><th>95% CI</th><th>p</th><th>queries</th></tr></thead><tbody>"
        )
        for dim in sorted(comp, key=int, reverse=True):
            for m, c in comp[dim].items():
                cls = "pos" if c["ci_low"] > 0 else "neg" if c["ci_high"] < 0 else "zero"
                parts.append(
                    f"<tr><td>{e(dim)}</td><td class='text'>{e(m)}</td><td class='{cls}'>{c['mean_diff']:+.4f}</td>"
                    f"<td>[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]</td><td>{c['p_value']:.3f}</td><td>{c['n_queries']}</td></tr>"
                )
        parts.append("</tbody></table>")
    parts.append("</details></section>")
    return "".join(parts)


def _dataset(report: Mapping[str, Any]) -> str:
    facts = dataset_facts(report)
    if not facts:
        return ""
    items = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in facts)
    return f"<section id='dataset'><h2>Dataset and models</h2><dl>{items}</dl></section>"
