"""Stage 5 — evaluation: datasets, exact search, IR metrics, base-vs-tuned comparison."""

from ragtune.evaluation.datasets import (
    RetrievalDataset,
    from_pairs,
    load_beir,
    load_eval_dataset,
    load_llamaindex,
)
from ragtune.evaluation.evaluator import EvalResult, RetrievalEvaluator, compare, evaluate_models
from ragtune.evaluation.metrics import METRICS, compute_metrics, paired_bootstrap

__all__ = [
    "METRICS",
    "EvalResult",
    "RetrievalDataset",
    "RetrievalEvaluator",
    "compare",
    "compute_metrics",
    "evaluate_models",
    "from_pairs",
    "load_beir",
    "load_eval_dataset",
    "load_llamaindex",
    "paired_bootstrap",
]
