"""Stage 5 — evaluation: datasets, exact search, IR metrics, base-vs-tuned comparison; classification probes."""

from ragtune.evaluation.classification import (
    LabelledTexts,
    evaluate_classification,
    load_labelled,
    split_indices,
)
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
    "LabelledTexts",
    "RetrievalDataset",
    "RetrievalEvaluator",
    "compare",
    "compute_metrics",
    "evaluate_classification",
    "evaluate_models",
    "from_pairs",
    "load_beir",
    "load_eval_dataset",
    "load_labelled",
    "load_llamaindex",
    "paired_bootstrap",
    "split_indices",
]
