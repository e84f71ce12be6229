"""The report's classification section: the record's ``classification`` key, in Markdown and HTML.

``report.json`` of ``ragtune evaluate --task classification`` carries
``task: "classification"``, ``dataset``, ``models`` and ``classification``
(:func:`ragtune.evaluation.classification.evaluate_classification`'s record:
``metrics`` label → ``accuracy``, ``macro_f1``, ``*_ci``, ``per_class_f1``;
``comparison`` ``"tuned-base"`` → metric → paired bootstrap difference).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ragtune import __version__
from ragtune.evaluation.classification import LabelledTexts

_METRICS = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"))


def build_classification_report(
    data: LabelledTexts, result: Mapping[str, Any], models: Mapping[str, str], extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The report record of a classification evaluation (written by :func:`ragtune.report.write_report`).

    Args:
        data: the labelled texts evaluated.
        result: :func:`~ragtune.evaluation.classification.evaluate_classification`'s record.
        models: label → model name.
        extra: more top-level keys.

    Example:
        >>> report = build_classification_report(data, result, {"base": "all-MiniLM-L6-v2"})  # doctest: +SKIP
        >>> write_report(report, "out")  # doctest: +SKIP
    """
    report: dict[str, Any] = {
        "ragtune_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task": "classification",
        "dataset": {"name": data.name, "kind": f"classification: {data.kind}", "source": data.source,
                    "info": {k: str(v) for k, v in data.info.items()}},
        "models": dict(models),
        "classification": dict(result),
        "eval_seconds": dict(result.get("seconds") or {}),
    }
    report.update(extra or {})
    return report


def classification_verdicts(report: Mapping[str, Any]) -> list[str]:
    """A sentence on ``tuned - base`` accuracy and macro-F1 (or each model's scores); empty without the section."""
    cls = report.get("classification") or {}
    metrics = cls.get("metrics") or {}
    if not metrics:
        return []
    comp = (cls.get("comparison") or {}).get("tuned-base")
    if not comp:
        scores = "; ".join(f"{k} accuracy {v['accuracy']:.3f}, macro-F1 {v['macro_f1']:.3f}" for k, v in metrics.items())
        return [f"Classification probe: {scores} on {cls.get('test')} held-out texts; no base/tuned pair to compare."]
    acc, f1 = comp["accuracy"], comp["macro_f1"]
    conf = f"{acc.get('confidence', 0.95):.0%}"
    sure = ("the interval excludes zero" if acc["ci_low"] > 0 or acc["ci_high"] < 0
            else "the interval includes zero: not distinguishable from noise")
    return [
        f"Tuning changed classification accuracy by {acc['mean_diff']:+.3f} ({conf} CI {acc['ci_low']:+.3f} to "
        f"{acc['ci_high']:+.3f}, p={acc['p_value']:.3f}) and macro-F1 by {f1['mean_diff']:+.3f} "
        f"(CI {f1['ci_low']:+.3f} to {f1['ci_high']:+.3f}) on {acc['n_texts']} held-out texts; {sure}."
    ]


def _protocol(cls: Mapping[str, Any]) -> str:
    p = cls.get("protocol") or {}
    per = p.get("samples_per_label")
    return (
        f"{p.get('probe', 'LogisticRegression')} (max_iter {p.get('max_iter')}), fitted {p.get('n_experiments')} times on "
        f"{'all' if per is None else f'at most {per}'} train texts per label and averaged (MTEB's protocol); "
        f"{cls.get('train')} train / {cls.get('test')} test texts, split {cls.get('split')}; "
        f"intervals: bootstrap over test texts ({p.get('bootstrap_resamples')} resamples, paired for differences)."
    )


def classification_markdown(report: Mapping[str, Any]) -> list[str]:
    """The section as Markdown lines (none without a classification record)."""
    cls = report.get("classification") or {}
    metrics = cls.get("metrics") or {}
    if not metrics:
        return []
    out = ["", "## Classification (logistic-regression probe on frozen embeddings)", "",
           "| model | accuracy | 95% CI | macro-F1 | 95% CI |", "|---|---:|---|---:|---|"]
    for label, m in metrics.items():
        out.append(f"| {label} | {m['accuracy']:.3f} | [{m['accuracy_ci'][0]:.3f}, {m['accuracy_ci'][1]:.3f}] | "
                   f"{m['macro_f1']:.3f} | [{m['macro_f1_ci'][0]:.3f}, {m['macro_f1_ci'][1]:.3f}] |")
    for key, comp in (cls.get("comparison") or {}).items():
        out += ["", f"| {key} | diff | 95% CI | p |", "|---|---:|---|---:|"]
        for name, title in _METRICS:
            c = comp[name]
            out.append(f"| {title} | {c['mean_diff']:+.4f} | [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] | {c['p_value']:.3f} |")
    labels = list(metrics)
    out += ["", "| class | " + " | ".join(f"{lbl} F1" for lbl in labels) + " |", "|---|" + "---:|" * len(labels)]
    for c in cls.get("labels") or []:
        out.append(f"| {c} | " + " | ".join(f"{metrics[lbl]['per_class_f1'].get(c, 0):.3f}" for lbl in labels) + " |")
    return [*out, "", f"_{_protocol(cls)}_"]


def classification_html(report: Mapping[str, Any]) -> str:
    """The section as one ``<section id='classification'>`` (empty without a classification record)."""
    e = html.escape
    cls = report.get("classification") or {}
    metrics = cls.get("metrics") or {}
    if not metrics:
        return ""
    rows = "".join(
        f"<tr><td>{e(label)}</td>" + "".join(
            f"<td>{m[name]:.3f} <span class='ci'>[{m[name + '_ci'][0]:.3f}, {m[name + '_ci'][1]:.3f}]</span></td>"
            for name, _ in _METRICS
        ) + "</tr>"
        for label, m in metrics.items()
    )
    for key, comp in (cls.get("comparison") or {}).items():
        cells = ""
        for name, _ in _METRICS:
            c = comp[name]
            sign = "pos" if c["ci_low"] > 0 else "neg" if c["ci_high"] < 0 else "zero"
            cells += (f"<td><span class='{sign}'>{c['mean_diff']:+.3f}</span> "
                      f"<span class='ci'>[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] p={c['p_value']:.3f}</span></td>")
        rows += f"<tr class='key'><td>{e(key.replace('-', ' − '))}</td>{cells}</tr>"
    labels = list(metrics)
    per_class = "".join(
        f"<tr><td>{e(c)}</td>" + "".join(f"<td>{metrics[lbl]['per_class_f1'].get(c, 0):.3f}</td>" for lbl in labels) + "</tr>"
        for c in cls.get("labels") or []
    )
    head = "".join(f"<th>{e(lbl)} F1</th>" for lbl in labels)
    return (
        "<section id='classification'><h2>Classification</h2>"
        "<table><thead><tr><th>model</th><th>accuracy [95% CI]</th><th>macro-F1 [95% CI]</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        f"<h3>F1 per class</h3><table><thead><tr><th>class</th>{head}</tr></thead><tbody>{per_class}</tbody></table>"
        f"<div class='notes'><div class='note'>{e(_protocol(cls))}</div></div></section>"
    )


def classification_verdict_html(report: Mapping[str, Any]) -> str:
    """The page's verdict box for a classification-only report (empty without the section)."""
    texts = classification_verdicts(report)
    if not texts:
        return ""
    comp = ((report.get("classification") or {}).get("comparison") or {}).get("tuned-base")
    if not comp:
        return f"<section class='verdict v-zero' id='verdict'><div><span class='badge zero'>no comparison</span><p>{html.escape(texts[0])}</p></div></section>"
    acc = comp["accuracy"]
    sign = "pos" if acc["ci_low"] > 0 else "neg" if acc["ci_high"] < 0 else "zero"
    badge = {"pos": "better than noise", "neg": "worse, beyond noise", "zero": "within noise"}[sign]
    return (
        f"<section class='verdict v-{sign}' id='verdict'><div><div class='num'>{acc['mean_diff']:+.3f}</div>"
        f"<div class='what'>accuracy, tuned − base</div>"
        f"<div class='what'>95% CI {acc['ci_low']:+.3f} to {acc['ci_high']:+.3f}</div></div>"
        f"<div><span class='badge {sign}'>{badge}</span><p>{html.escape(texts[0])}</p></div></section>"
    )
