"""What the report says, derived once from the record and shared by the Markdown and HTML pages.

Both renderers format the same facts (verdicts, summary rows, stage costs), so
the two files can never disagree about a number or about whether a change is
more than noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ragtune.evaluation.evaluator import full_dim

#: Metrics shown in tables and bar charts, in reading order. ``cli`` indexes rows by position.
HEADLINE = ("hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10", "recall@10")
#: The metric the verdict is about.
KEY_METRIC = "ndcg@10"
#: (comparison key, tuned label, base label), most important first. The report's headline
#: (ragtune's default retriever against the best retriever without ragtune) comes before them.
COMPARISONS = (
    ("tuned+hybrid-base+hybrid", "tuned+hybrid", "base+hybrid"),
    ("tuned-base", "tuned", "base"),
    ("tuned+long-base+long", "tuned+long", "base+long"),
)
#: what each label is, in words, for the verdicts
LABEL_WORDS = {
    "bm25": "BM25 alone",
    "base+hybrid": "the base model fused with BM25",
    "tuned+hybrid": "the tuned model fused with BM25 (ragtune's default retriever)",
    "base+long": "the base model by best window",
    "base": "the base model",
}
#: Pipeline stages in run order; ``timings`` keys are ``{stage}_s``.
STAGES = ("chunks", "pairs", "train", "served", "served_train", "index", "evaluate")
#: Report key holding a stage's record, where it differs from the stage name.
_STAGE_RECORD = {"train": "training", "served_train": "served_training"}


@dataclass(frozen=True)
class Difference:
    """``tuned - base`` for one metric at one dimension, with its bootstrap interval."""

    key: str
    tuned: str
    base: str
    dim: str
    metric: str
    mean_diff: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    n_queries: int

    @property
    def excludes_zero(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0

    @property
    def sign(self) -> str:
        """``pos``, ``neg`` or ``zero`` — whether the interval is wholly above, below, or across zero."""
        return "pos" if self.ci_low > 0 else "neg" if self.ci_high < 0 else "zero"

    @property
    def ci_text(self) -> str:
        return f"{self.confidence:.0%} CI {self.ci_low:+.3f} to {self.ci_high:+.3f}"


def difference(report: Mapping[str, Any], key: str, dim: str | None = None, metric: str = KEY_METRIC) -> Difference | None:
    """The recorded comparison ``key`` for ``metric`` at ``dim`` (default: full dimension), if any."""
    comp = (report.get("comparison") or {}).get(key)
    if not comp:
        return None
    dim = dim or full_dim(comp)
    c = comp.get(dim, {}).get(metric)
    if not c:
        return None
    head = report.get("headline") or {}
    if key == head.get("key"):
        tuned, base = head["default"], head["against"]
    else:
        tuned, base = next(((t, b) for k, t, b in COMPARISONS if k == key), (key, ""))
    return Difference(
        key=key,
        tuned=tuned,
        base=base,
        dim=dim,
        metric=metric,
        mean_diff=float(c["mean_diff"]),
        ci_low=float(c["ci_low"]),
        ci_high=float(c["ci_high"]),
        confidence=float(c.get("confidence", 0.95)),
        p_value=float(c["p_value"]),
        n_queries=int(c["n_queries"]),
    )


def comparison_keys(report: Mapping[str, Any]) -> list[str]:
    """The report's comparisons in reading order: the headline first, then :data:`COMPARISONS`."""
    head = (report.get("headline") or {}).get("key")
    keys = [head] if head else []
    return keys + [k for k, _, _ in COMPARISONS if k != head]


def headline_differences(report: Mapping[str, Any]) -> list[Difference]:
    """The key-metric difference at full dimension for each comparison present (the headline first)."""
    out = []
    for key in comparison_keys(report):
        d = difference(report, key)
        if d is not None:
            out.append(d)
    return out


def describe_headline(d: Difference) -> str:
    """The report's first sentence: ragtune's default retriever against the best one without ragtune."""
    against = LABEL_WORDS.get(d.base, d.base)
    conf = f"{d.confidence:.0%}"
    numbers = f"nDCG@10 {d.mean_diff:+.3f} ({d.ci_text}, p={d.p_value:.3f}, {d.n_queries} queries)"
    if d.sign == "pos":
        return (f"ragtune's default retriever (tuned model + BM25, hybrid) beats the best retriever you had "
                f"without ragtune on this set, {against}: {numbers}; the {conf} interval excludes zero.")
    if d.sign == "neg":
        return (f"ragtune's default retriever (tuned model + BM25, hybrid) is worse than {against} on this set: "
                f"{numbers}. Use {against} here, or tune on more or better pairs.")
    return (f"ragtune's default retriever (tuned model + BM25, hybrid) is not better than {against} on this set: "
            f"{numbers}; the {conf} interval includes zero.")


def describe(d: Difference) -> str:
    """One sentence about one difference: direction, size, interval, and whether it beats noise."""
    if d.mean_diff > 0:
        change = f"improved nDCG@10 by {d.mean_diff:+.3f}"
    elif d.mean_diff < 0:
        change = f"lowered nDCG@10 by {d.mean_diff:+.3f}"
    else:
        change = "did not change nDCG@10 (+0.000)"
    where = (" with long-chunk (best-window) search" if "+long" in d.key
             else " with BM25 fused in on both sides (hybrid)" if "+hybrid" in d.key else "")
    conf = f"{d.confidence:.0%}"
    sure = (
        f"the {conf} interval excludes zero"
        if d.excludes_zero
        else f"the {conf} interval includes zero: not distinguishable from noise"
    )
    return (
        f"Tuning {change} at {d.dim} dims{where} "
        f"({d.ci_text}, p={d.p_value:.3f}, {d.n_queries} queries); {sure}."
    )


def verdicts(report: Mapping[str, Any]) -> list[str]:
    """A sentence per comparison present; without any, one sentence saying what was evaluated."""
    diffs = headline_differences(report)
    if diffs:
        head = (report.get("headline") or {}).get("key")
        return [describe_headline(d) if d.key == head else describe(d) for d in diffs]
    metrics = report.get("metrics") or {}
    if not metrics:
        from ragtune.report.classification import classification_verdicts

        return classification_verdicts(report) or ["No evaluation results are recorded in this report."]
    parts = []
    for label, by_dim in metrics.items():
        dim = full_dim(by_dim)
        value = by_dim[dim].get(KEY_METRIC)
        parts.append(f"{label} nDCG@10 = {value:.3f} at {dim} dims" if value is not None else label)
    return [f"Only {', '.join(parts)}; no base/tuned pair was evaluated, so there is no difference to test."]


def verdict(report: Mapping[str, Any]) -> str:
    """The first verdict: did tuning help, by how much, and is it more than noise."""
    return verdicts(report)[0]


def metrics_rows(report: Mapping[str, Any]) -> list[tuple[str, str, list[float]]]:
    """(label, dim, values in :data:`HEADLINE` order) for every label and dimension, widest first."""
    rows = []
    for label, by_dim in (report.get("metrics") or {}).items():
        for dim in sorted(by_dim, key=int, reverse=True):
            rows.append((label, dim, [by_dim[dim].get(m, float("nan")) for m in HEADLINE]))
    return rows


@dataclass
class SummaryRow:
    """One metric at full dimension: its value per label and the tested differences."""

    metric: str
    values: dict[str, float]
    diffs: list[Difference] = field(default_factory=list)


def summary_rows(report: Mapping[str, Any]) -> tuple[list[str], list[SummaryRow]]:
    """Labels (columns) and one row per metric at each label's full dimension."""
    metrics = report.get("metrics") or {}
    labels = list(metrics)
    present = {m for by_dim in metrics.values() for m in by_dim[full_dim(by_dim)]}
    names = [m for m in HEADLINE if m in present] + sorted(present - set(HEADLINE))
    rows = []
    for m in names:
        values = {lbl: metrics[lbl][full_dim(metrics[lbl])].get(m, float("nan")) for lbl in labels}
        diffs = [d for key in comparison_keys(report) if (d := difference(report, key, metric=m)) is not None]
        rows.append(SummaryRow(m, values, diffs))
    return labels, rows


@dataclass
class Stage:
    """One pipeline stage: wall time, share of the total, and what it did (plain phrases)."""

    name: str
    seconds: float | None
    share: float | None
    details: list[str]


def stage_rows(report: Mapping[str, Any]) -> list[Stage]:
    """Stages in run order with their cost; stages with neither a time nor a record are left out."""
    timings = report.get("timings") or {}
    names = list(STAGES) + [k[:-2] for k in timings if k.endswith("_s") and k[:-2] not in STAGES]
    rows = []
    for name in names:
        record = report.get(_STAGE_RECORD.get(name, name))
        record = record if isinstance(record, Mapping) else {}
        seconds = timings.get(f"{name}_s", record.get("seconds"))
        details = _stage_details(name, record, report)
        if seconds is None and not details:
            continue
        rows.append(Stage(name, None if seconds is None else float(seconds), None, details))
    total = sum(r.seconds for r in rows if r.seconds is not None)
    for r in rows:
        if r.seconds is not None and total > 0:
            r.share = r.seconds / total
    return rows


def _n(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) else str(x)


def _stage_details(name: str, rec: Mapping[str, Any], report: Mapping[str, Any]) -> list[str]:
    """Plain phrases about what a stage did, from its ``run.json`` record; empty when unknown."""
    out: list[str] = []
    if name == "chunks" and rec:
        if "files" in rec:
            out.append(f"{_n(rec['files'])} files, {_n(rec.get('documents', '?'))} documents → {_n(rec.get('chunks', '?'))} chunks")
        skipped = rec.get("skipped") or {}
        if skipped:
            out.append("skipped: " + ", ".join(f"{k} {_n(v)}" for k, v in skipped.items()))
    elif name == "pairs" and rec:
        if "generated" in rec:
            src = f" from {_n(rec['chunks'])} chunks" if "chunks" in rec else ""
            win = f" ({_n(rec['windows'])} windows)" if "windows" in rec else ""
            out.append(f"{_n(rec['generated'])} pairs generated{src}{win}, {_n(rec.get('kept', '?'))} kept")
        dropped = {k: v for k, v in (rec.get("dropped") or {}).items() if v}
        if dropped:
            out.append("dropped: " + ", ".join(f"{k} {_n(v)}" for k, v in dropped.items()))
        if "train" in rec and "val" in rec:
            out.append(f"split: {_n(rec['train'])} train / {_n(rec['val'])} held out")
        kinds = rec.get("by_kind") or {}
        if kinds:
            out.append("by kind: " + ", ".join(f"{k.split(':')[-1]} {_n(v)}" for k, v in kinds.items()))
    elif name == "served" and rec:
        out.extend(served_facts(report))
    elif name in ("train", "served_train") and rec:
        if "steps" in rec:
            line = f"{_n(rec['steps'])} steps over {_n(rec.get('train_pairs', '?'))} pairs"
            loop = rec.get("train_loop_s")
            if loop and rec["steps"]:
                line += f" ({loop / rec['steps']:.2f} s/step)"
            out.append(line)
        tp, total = rec.get("trainable_params"), rec.get("total_params")
        if tp is not None:
            share = f" ({tp / total:.1%})" if total else ""
            out.append(f"trainable parameters: {_n(tp)} of {_n(total)}{share}")
        bits = [f"precision {rec['precision']}" if rec.get("precision") else "",
                f"max_seq_length {rec['max_seq_length']}" if rec.get("max_seq_length") else "",
                "Matryoshka dims " + ", ".join(map(str, rec["dims"])) if rec.get("dims") else ""]
        if any(bits):
            out.append("; ".join(b for b in bits if b))
        if rec.get("resumed_from"):
            out.append(f"resumed from {rec['resumed_from']}")
    elif name == "index" and rec:
        if "points" in rec:
            out.append(f"{_n(rec['points'])} points of dim {rec.get('dim', '?')} into '{rec.get('collection', '?')}'")
        if rec.get("location"):
            out.append(f"at {rec['location']}")
    elif name == "evaluate":
        for label, s in (report.get("eval_seconds") or {}).items():
            if isinstance(s, Mapping) and "encode_corpus_s" in s:
                out.append(
                    f"{label}: encode {_n(s.get('corpus_units', '?'))} corpus units {s['encode_corpus_s']:.1f} s, "
                    f"queries {s.get('encode_queries_s', 0):.1f} s, search {s.get('search_s', 0):.1f} s"
                )
        out += [hosted_cost(label, h) for label, h in (report.get("hosted") or {}).items() if isinstance(h, Mapping)]
    return out


def hosted_cost(label: str, h: Mapping[str, Any]) -> str:
    """What a hosted baseline cost: texts fetched and from cache, tokens, dollars at the list price."""
    price = h.get("usd_per_1m_tokens")
    est = " (estimated)" if h.get("tokens_source") == "estimate" else ""
    cost = (
        f"${h.get('cost_usd') or 0:.4f} this run, ${h.get('cost_usd_uncached') or 0:.4f} without the cache "
        f"(${price} per 1M tokens, list price of {h.get('price_date')})"
        if price is not None else f"no list price known for {h.get('model')}"
    )
    return (
        f"{label} ({h.get('model') or h.get('spec')} at {h.get('endpoint')}): {_n(h.get('fetched', 0))} texts fetched "
        f"in {_n(h.get('requests', 0))} requests ({h.get('fetch_s', 0):.1f} s), {_n(h.get('from_cache', 0))} from cache; "
        f"{_n(h.get('tokens', 0))} tokens{est}; {cost}"
    )


def dataset_facts(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, value) pairs describing the evaluation set and the models compared."""
    ds = report.get("dataset") or {}
    out = []
    if ds.get("name"):
        out.append(("name", str(ds["name"])))
    if ds.get("kind"):
        kinds = {
            "pairs": "held-out generated pairs, searched over every chunk of the run",
            "llamaindex": "LlamaIndex EmbeddingQAFinetuneDataset, searched over its own corpus",
            "beir": "BEIR folder, searched over its own corpus",
        }
        out.append(("kind", kinds.get(ds["kind"], str(ds["kind"]))))
    if ds.get("source") and ds.get("source") != ds.get("name"):
        out.append(("source", str(ds["source"])))
    if "queries" in ds:
        out.append(("queries", _n(ds["queries"])))
    if "corpus" in ds:
        out.append(("corpus", f"{_n(ds['corpus'])} documents"))
    for k, v in (ds.get("info") or {}).items():
        out.append((str(k), str(v)))
    for label, model in (report.get("models") or {}).items():
        out.append((f"{label} model", str(model)))
    return out


def total_seconds(report: Mapping[str, Any]) -> float | None:
    """Sum of the recorded stage times, or None when none were recorded."""
    secs = [r.seconds for r in stage_rows(report) if r.seconds is not None]
    return sum(secs) if secs else None


def fmt_seconds(s: float | None) -> str:
    """Seconds as a person reads them: ``0.4 s``, ``42 s``, ``10 min 26 s``, ``1 h 02 min``."""
    if s is None:
        return "—"
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{s:.0f} s"
    m, sec = divmod(round(s), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


SPEED_COLUMNS = (
    "form", "docs/s", "× torch", "query p50 ms", "size MB",
    "nDCG@10 plain", "Δ plain", "nDCG@10 best window", "Δ best window",
)


def speed_table(report: Mapping[str, Any]) -> tuple[str, list[list[str]]]:
    """The speed section as (caption, rows of :data:`SPEED_COLUMNS` cells); no rows when nothing was exported."""
    speed = report.get("speed") or {}
    rows = []
    for r in speed.get("forms") or []:
        rows.append([
            f"{r['form']} ({r['file']})",
            f"{r['docs_per_s']:,.1f}",
            f"{r['x_torch_docs_per_s']:.2f}×" if r.get("x_torch_docs_per_s") is not None else "",
            f"{r['query_p50_ms']:.2f}" if r.get("query_p50_ms") is not None else "",
            f"{r['size_mb']:.1f}",
            f"{r['plain']['ndcg@10']:.3f}",
            f"{r['ndcg_delta_plain']:+.3f}" if r.get("ndcg_delta_plain") is not None else "",
            f"{r['windows']['ndcg@10']:.3f}",
            f"{r['ndcg_delta_windows']:+.3f}" if r.get("ndcg_delta_windows") is not None else "",
        ])
    texts = (speed.get("forms") or [{}])[0].get("texts_encoded")
    caption = (
        f"Each form of the tuned model on {speed.get('dataset', 'the evaluation set')}, measured one after another "
        f"on this machine ({speed.get('cpu') or 'CPU unknown'}): docs/s encodes the corpus's "
        f"{texts or ''} windows, query latency is one query a call, quality is exact search. "
        "Pick the fastest form whose quality you accept: `--backend onnx|openvino` (int8 file by default) "
        "or the static student's folder."
    )
    return caption, rows


def ragas_coverage(report: Mapping[str, Any]) -> list[str]:
    """One sentence per LLM-judged ragas metric whose judge could not score every sample.

    ``report["ragas_scored"]`` is ``label -> metric -> {"scored", "tried"}``; a small judge
    (``--llm local``) often answers something ragas cannot read, and the report says so
    instead of showing a mean over fewer samples than it seems.
    """
    out = []
    for label, by_metric in (report.get("ragas_scored") or {}).items():
        for metric, c in by_metric.items():
            scored, tried = int(c.get("scored", 0)), int(c.get("tried", 0))
            if scored < tried:
                left = "left out" if scored == 0 else f"mean of {scored}"
                out.append(f"{label} {metric}: the judge scored {scored} of {tried} samples ({left}).")
    return out


def served_facts(report: Mapping[str, Any]) -> list[str]:
    """What the run learned from served queries (``ragtune run --queries``), in plain phrases."""
    rec = report.get("served")
    if not isinstance(rec, Mapping) or "pairs" not in rec:
        return []
    by = ", ".join(f"{k} {_n(v)}" for k, v in (rec.get("labelled_by") or {}).items()) or "none"
    out = [
        f"learned from {_n(rec.get('distinct_queries', 0))} served questions ({_n(rec.get('logged_searches', 0))} "
        f"searches logged): {_n(rec['pairs'])} training pairs, labelled by {by}",
    ]
    trained = report.get("served_training")
    if isinstance(trained, Mapping) and "steps" in trained:
        out.append(f"the tuned model trained further on them: {_n(trained['steps'])} steps")
    left = {k: rec.get(k) for k in ("uncertain", "too_short", "unknown_chunk_ids") if rec.get(k)}
    if left:
        out.append("left out: " + ", ".join(f"{k.replace('_', ' ')} {_n(v)}" for k, v in left.items()))
    return out
