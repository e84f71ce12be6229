"""Stage 6 — the report: ``report.json`` (the record), ``report.md`` and ``report.html``.

``report.json`` schema (extended by later stages, never reshaped):

- ``metrics``: label (``base``, ``tuned``, ``base+long``, ``tuned+long``) →
  dimension as a string (``"384"``) → metric (``hit@1``, ``hit@5``, ``hit@10``,
  ``mrr@10``, ``ndcg@10``, ``recall@10``, ``map@100``) → float;
- ``comparison``: ``"tuned-base"`` (and ``"tuned+long-base+long"``) → dim →
  metric → ``{mean_diff, ci_low, ci_high, confidence, p_value, n_queries, test}``;
- ``dataset`` (``name``, ``kind``, ``source``, ``queries``, ``corpus``, optional
  ``info``), ``models``, ``examples`` (queries that gained and lost most),
  ``timings`` (seconds per stage, ``{stage}_s``), ``eval_seconds`` (label →
  encode/search seconds), ``created``;
- ``pairs``, ``training``, ``index`` (and optionally ``chunks``): the stages'
  ``run.json`` records, when run through the pipeline;
- ``per_query``: ``{metric, qids, labels: label → {dim, values}}`` — each
  label's per-query ``ndcg@10`` at its full dimension (the distribution plot);
- ``ragas`` (optional): label → metric → float, from
  :func:`ragtune.evaluation.ragas_eval.ragas_metrics`;
- ``hosted`` (optional, with ``--baseline``): label (``baseline``) → ``{spec,
  endpoint, model, texts, fetched, from_cache, requests, tokens, tokens_source,
  fetch_s, usd_per_1m_tokens, price_date, cost_usd, cost_usd_uncached, cache}``
  (:meth:`ragtune.encoders.hosted.HostedEncoder.usage`); that label is scored in plain
  mode only, at its own width, and has no ``+long`` twin.

A classification evaluation writes ``task: "classification"``, ``dataset``, ``models`` and
``classification`` instead of the retrieval keys (:mod:`.classification`).

``report.md`` and ``report.html`` are rendered from this record alone
(:mod:`.facts` derives what both say; :mod:`.plots` draws the figures).
"""

from ragtune.report.build import build_report, write_report
from ragtune.report.classification import build_classification_report

__all__ = ["build_classification_report", "build_report", "write_report"]
