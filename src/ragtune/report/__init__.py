"""Stage 6 — the report: ``report.json`` (the record), ``report.md`` and ``report.html``.

``report.json`` schema (extended by later stages, never reshaped):

- ``metrics``: label (``base``, ``tuned``, ``base+long``, ``tuned+long``) →
  dimension as a string (``"384"``) → metric (``hit@1``, ``hit@5``, ``hit@10``,
  ``mrr@10``, ``ndcg@10``, ``recall@10``, ``map@100``) → float;
- ``comparison``: ``"tuned-base"`` (and ``"tuned+long-base+long"``) → dim →
  metric → ``{mean_diff, ci_low, ci_high, confidence, p_value, n_queries}``;
- ``dataset``, ``models``, ``examples`` (queries that gained and lost most),
  ``timings`` (seconds per stage), ``training``, ``pairs``, ``created``.
"""

from ragtune.report.build import build_report, write_report

__all__ = ["build_report", "write_report"]
