"""The validation check used during and after training: held-out queries against every passage.

Early stopping and the WiSE-FT mix both score a model on the pairs' ``val``
split, searched over the distinct passages of *all* pairs (train and val), so
a held-out query competes with every passage the model was trained on. One
sentence-transformers ``InformationRetrievalEvaluator`` serves both, and its
metric keys carry the prefix ``val_``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragtune.pairs.schema import Pair

#: the key of validation nDCG@10 in the evaluator's results
NDCG_KEY = "val_cosine_ndcg@10"
#: fewer held-out pairs than this make too noisy a check to stop or choose a mix on
MIN_VAL_PAIRS = 5


def validation_evaluator(val_pairs: Sequence[Pair], all_pairs: Sequence[Pair]) -> Any:
    """An ``InformationRetrievalEvaluator`` of ``val_pairs`` over the distinct positives of ``all_pairs``."""
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    texts = list(dict.fromkeys(p.positive for p in all_pairs))
    doc_id = {t: f"d{i}" for i, t in enumerate(texts)}
    return InformationRetrievalEvaluator(
        queries={f"q{i}": p.query for i, p in enumerate(val_pairs)},
        corpus={doc_id[t]: t for t in texts},
        relevant_docs={f"q{i}": {doc_id[p.positive]} for i, p in enumerate(val_pairs)},
        name="val",
        ndcg_at_k=[10],
        mrr_at_k=[10],
        accuracy_at_k=[5],
        precision_recall_at_k=[10],
        map_at_k=[10],
        show_progress_bar=False,
        batch_size=64,
    )
