"""IR metrics through ranx, plus paired bootstrap intervals for tuned-minus-base.

Metric names in reports: ``hit@k`` (LlamaIndex's "hit rate"; ranx ``hit_rate``),
``mrr@10``, ``ndcg@10``, ``recall@10``, ``map@100``.
"""

from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np

#: report name -> ranx metric name
METRICS = {
    "hit@1": "hit_rate@1",
    "hit@5": "hit_rate@5",
    "hit@10": "hit_rate@10",
    "mrr@10": "mrr@10",
    "ndcg@10": "ndcg@10",
    "recall@10": "recall@10",
    "map@100": "map@100",
}


def compute_metrics(
    relevant: Mapping[str, Mapping[str, int]],
    results: Mapping[str, Sequence[tuple[str, float]]],
    metrics: Sequence[str] = tuple(METRICS),
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Mean and per-query values of ``metrics``; per-query arrays follow ``sorted(relevant)``."""
    from ranx import Qrels, Run, evaluate

    qids = sorted(relevant)
    qrels = Qrels({q: {d: int(g) for d, g in relevant[q].items()} for q in qids})
    run_dict = {}
    for q in qids:
        hits = results.get(q) or []
        # ranx breaks score ties by doc id; nudge by rank so our order is kept exactly
        run_dict[q] = {d: float(s) - 1e-9 * r for r, (d, s) in enumerate(hits)} or {"__none__": 0.0}
    run = Run(run_dict)
    names = [METRICS[m] for m in metrics]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        per_query = evaluate(qrels, run, names, return_mean=False, make_comparable=True)
    if len(names) == 1:
        per_query = {names[0]: per_query}
    per = {m: np.asarray(per_query[METRICS[m]], dtype=np.float64) for m in metrics}
    means = {m: float(v.mean()) for m, v in per.items()}
    return means, per


def paired_bootstrap(
    tuned: np.ndarray, base: np.ndarray, n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> dict[str, float]:
    """Mean difference ``tuned - base`` over the same queries with a bootstrap CI and p-value.

    The p-value is a two-sided paired randomisation (sign-flip) test.
    """
    diff = np.asarray(tuned, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = len(diff)
    idx = rng.integers(0, n, size=(n_resamples, n))
    means = diff[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    signs = rng.choice([-1.0, 1.0], size=(n_resamples, n))
    null = (signs * diff).mean(axis=1)
    observed = diff.mean()
    p = float((np.abs(null) >= abs(observed) - 1e-12).mean())
    return {
        "mean_diff": float(observed),
        "ci_low": float(np.quantile(means, alpha)),
        "ci_high": float(np.quantile(means, 1 - alpha)),
        "confidence": confidence,
        "p_value": p,
        "n_queries": int(n),
    }
