"""Loss construction: one name per sentence-transformers loss, optionally Matryoshka-wrapped.

- ``mnrl``: MultipleNegativesRankingLoss — InfoNCE with in-batch negatives (and
  mined negatives, when pairs carry them). The default: strongest on pairs.
  With ``batching="passage"`` (the default) it runs as
  :class:`~ragtune.train.passage_batches.PassageGroupedMNRLoss`: the same
  objective over passage-grouped batches, each distinct passage embedded once.
- ``mnrl-symmetric``: also scores passage → query.
- ``cached-mnrl``: GradCache version of MNRL: large effective batches in small memory.
- ``triplet``: TripletLoss over (query, positive, mined negative).
- ``cosine``: CosineSimilarityLoss over labelled (query, text, score) rows.
- ``contrastive``: OnlineContrastiveLoss over labelled (query, text, 0/1) rows.
"""

from __future__ import annotations

from typing import Any

from ragtune.errors import ConfigError

#: losses that need a negative column in the training data
NEEDS_NEGATIVES = {"triplet"}
#: losses that take labelled rows (positives label 1, negatives label 0)
LABELLED = {"cosine", "contrastive"}


def build_loss(
    name: str,
    model: Any,
    dims: list[int] | None,
    mini_batch_size: int = 16,
    passage_grouped: bool = False,
    weights: list[float] | None = None,
) -> Any:
    """The training loss for ``name``, wrapped in MatryoshkaLoss when ``dims`` is given."""
    from sentence_transformers import losses

    if name in ("mnrl", "mnrl-symmetric") and passage_grouped:
        from ragtune.train.passage_batches import PassageGroupedMNRLoss

        base = PassageGroupedMNRLoss(model, symmetric=name == "mnrl-symmetric")
    elif name == "mnrl":
        base = losses.MultipleNegativesRankingLoss(model)
    elif name == "mnrl-symmetric":
        base = losses.MultipleNegativesSymmetricRankingLoss(model)
    elif name == "cached-mnrl":
        base = losses.CachedMultipleNegativesRankingLoss(model, mini_batch_size=mini_batch_size)
    elif name == "triplet":
        base = losses.TripletLoss(model, distance_metric=losses.TripletDistanceMetric.COSINE, triplet_margin=0.1)
    elif name == "cosine":
        base = losses.CosineSimilarityLoss(model)
    elif name == "contrastive":
        base = losses.OnlineContrastiveLoss(model)
    else:
        raise ConfigError(f"loss={name!r}: unknown")
    if dims and len(dims) > 1:
        return losses.MatryoshkaLoss(model, base, matryoshka_dims=dims, matryoshka_weights=weights)
    return base
