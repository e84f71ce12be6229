"""The loss registry: one entry per loss name, and the loss it builds (optionally Matryoshka-wrapped).

Every loss name in ragtune comes from :data:`REGISTRY` (the config's check, the
dataset columns, the CLI help). Factories import sentence-transformers only
when called, so this module stays cheap to import.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

from ragtune.errors import ConfigError

#: the loss names, for type checkers; :data:`REGISTRY` has the same keys
LossName = Literal["mnrl", "mnrl-symmetric", "cached-mnrl", "triplet", "cosine", "contrastive"]


@dataclass(frozen=True)
class LossSpec:
    """How one loss is built and what training data it takes."""

    #: ``factory(model, mini_batch_size)`` → the sentence-transformers loss
    factory: Callable[[Any, int], Any]
    #: needs a negative column in the training data
    needs_negatives: bool = False
    #: takes labelled rows (positives label 1, negatives label 0)
    labelled: bool = False
    description: str = ""
    #: the same objective over passage-grouped batches (``batching="passage"``),
    #: each distinct passage embedded once; None: the loss has no such form
    grouped_factory: Callable[[Any], Any] | None = None


def _st() -> Any:
    from sentence_transformers import losses

    return losses


def _grouped(symmetric: bool) -> Callable[[Any], Any]:
    def build(model: Any) -> Any:
        from ragtune.train.passage_batches import PassageGroupedMNRLoss

        return PassageGroupedMNRLoss(model, symmetric=symmetric)

    return build


REGISTRY: dict[str, LossSpec] = {
    "mnrl": LossSpec(
        lambda model, _: _st().MultipleNegativesRankingLoss(model),
        description="MultipleNegativesRankingLoss: InfoNCE with in-batch negatives (and mined "
        "negatives, when pairs carry them). The default: strongest on pairs.",
        grouped_factory=_grouped(symmetric=False),
    ),
    "mnrl-symmetric": LossSpec(
        lambda model, _: _st().MultipleNegativesSymmetricRankingLoss(model),
        description="MNRL that also scores passage → query.",
        grouped_factory=_grouped(symmetric=True),
    ),
    "cached-mnrl": LossSpec(
        lambda model, mini_batch_size: _st().CachedMultipleNegativesRankingLoss(
            model, mini_batch_size=mini_batch_size
        ),
        description="GradCache version of MNRL: large effective batches in small memory.",
    ),
    "triplet": LossSpec(
        lambda model, _: _st().TripletLoss(
            model, distance_metric=_st().TripletDistanceMetric.COSINE, triplet_margin=0.1
        ),
        needs_negatives=True,
        description="TripletLoss over (query, positive, mined negative).",
    ),
    "cosine": LossSpec(
        lambda model, _: _st().CosineSimilarityLoss(model),
        labelled=True,
        description="CosineSimilarityLoss over labelled (query, text, score) rows.",
    ),
    "contrastive": LossSpec(
        lambda model, _: _st().OnlineContrastiveLoss(model),
        labelled=True,
        description="OnlineContrastiveLoss over labelled (query, text, 0/1) rows.",
    ),
}

if set(REGISTRY) != set(get_args(LossName)):  # a developer error: say so at import
    raise RuntimeError(f"LossName {get_args(LossName)} and REGISTRY {tuple(REGISTRY)} disagree")

#: losses that need a negative column in the training data
NEEDS_NEGATIVES = frozenset(name for name, spec in REGISTRY.items() if spec.needs_negatives)
#: losses that take labelled rows (positives label 1, negatives label 0)
LABELLED = frozenset(name for name, spec in REGISTRY.items() if spec.labelled)
#: losses with a passage-grouped form (``batching="passage"``)
PASSAGE_GROUPED = frozenset(name for name, spec in REGISTRY.items() if spec.grouped_factory)


def loss_spec(name: str) -> LossSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"loss={name!r}: unknown") from None


def build_loss(
    name: str,
    model: Any,
    dims: list[int] | None,
    mini_batch_size: int = 16,
    passage_grouped: bool = False,
    weights: list[float] | None = None,
) -> Any:
    """The training loss for ``name``, wrapped in MatryoshkaLoss when ``dims`` is given."""
    spec = loss_spec(name)
    if passage_grouped and spec.grouped_factory is not None:
        base = spec.grouped_factory(model)
    else:
        base = spec.factory(model, mini_batch_size)
    if dims and len(dims) > 1:
        return _st().MatryoshkaLoss(model, base, matryoshka_dims=dims, matryoshka_weights=weights)
    return base
