"""IR metrics through ranx, plus paired bootstrap intervals for tuned-minus-base.

Metric names in reports: ``hit@k`` (LlamaIndex's "hit rate"; ranx ``hit_rate``),
``mrr@10``, ``ndcg@10``, ``recall@10``, ``map@100``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

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

    Queries are resampled with replacement (paired: both models' values move
    together); the interval and p-value are :func:`bootstrap_difference`'s.
    """
    diff = np.asarray(tuned, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = len(diff)
    idx = rng.integers(0, n, size=(n_resamples, n))
    means = diff[idx].mean(axis=1)
    return bootstrap_difference(
        means, float(diff.mean()), confidence, identical=bool(np.all(diff == 0)), count=("n_queries", n)
    )


def interval(resampled: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The central ``confidence`` interval of a bootstrap distribution (percentile method)."""
    alpha = (1 - confidence) / 2
    return float(np.quantile(resampled, alpha)), float(np.quantile(resampled, 1 - alpha))


def bootstrap_difference(
    resampled: np.ndarray, observed: float, confidence: float, identical: bool, count: tuple[str, int]
) -> dict[str, float]:
    """A paired difference's record from its bootstrap distribution: interval and two-sided p-value.

    The p-value is read off the same distribution (twice the share of resampled
    differences on the far side of zero), so "the interval excludes zero" and
    "p < 1 - confidence" always agree; ``identical`` (the two sides never
    differ) gives 1.

    Args:
        resampled: the difference under each bootstrap resample.
        observed: the difference on the data as given.
        confidence: interval coverage.
        identical: True when the paired values are the same everywhere.
        count: ``(name, n)`` of the units resampled, e.g. ``("n_queries", 881)``.

    Returns:
        ``{mean_diff, ci_low, ci_high, confidence, p_value, <count name>, test}``.
    """
    resampled = np.asarray(resampled, dtype=np.float64)
    low, high = interval(resampled, confidence)
    p = 1.0 if identical else float(min(1.0, 2 * min((resampled <= 0).mean(), (resampled >= 0).mean())))
    return {
        "mean_diff": float(observed),
        "ci_low": low,
        "ci_high": high,
        "confidence": confidence,
        "p_value": p,
        count[0]: int(count[1]),
        "test": "paired bootstrap",
    }
