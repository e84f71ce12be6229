"""Weight-space interpolation of tuned and base weights (WiSE-FT), the mix chosen on validation.

Fine-tuning on a few hundred synthetic pairs moves the encoder towards one
corpus; averaging its weights with the base model's (Wortsman et al., 2022,
"Robust fine-tuning of zero-shot models") keeps most of the in-domain gain and
gives back much of what the base model knew elsewhere. ragtune evaluates a few
mixes ``alpha`` (0 = base, 1 = tuned) on the held-out pairs and keeps the
*smallest* alpha whose validation nDCG@10 is within ``tolerance`` of the best:
as close to the base model as the in-domain quality allows. With no
validation pairs, ``DEFAULT_ALPHA`` (0.5, the even mix WiSE-FT recommends)
is used: on ragtune's T1 benchmark it keeps the in-domain nDCG@10 and gives
back the general-domain score the unmixed model lost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ragtune.pairs.schema import Pair
from ragtune.progress import track

log = logging.getLogger(__name__)

#: the mix used when there are no validation pairs to choose one
DEFAULT_ALPHA = 0.5


@dataclass
class MixChoice:
    """The chosen ``alpha`` and the validation nDCG@10 of every mix tried."""

    alpha: float
    scores: dict[float, float] = field(default_factory=dict)
    val_queries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "chosen_by": "validation",
            "val_ndcg@10": {str(a): s for a, s in self.scores.items()},
            "val_queries": self.val_queries,
        }


def base_state(base: Any) -> dict[str, Any]:
    """The base model's weights on the CPU, detached: the reference every mix is taken against."""
    return {k: v.detach().cpu() for k, v in base.state_dict().items()}


def mix_weights(tuned: Any, reference: dict[str, Any], alpha: float) -> dict[str, Any]:
    """Return the tuned model's state, with every weight it shares with ``reference`` (the base) mixed in place.

    Parameters only the tuned model has (a rotation, a new head) stay as trained.
    The returned dict holds the tuned weights to restore later.
    """
    import torch

    saved: dict[str, Any] = {}
    with torch.no_grad():
        for name, param in tuned.state_dict().items():
            ref = reference.get(name)
            if ref is None or ref.shape != param.shape or not param.is_floating_point():
                continue
            saved[name] = param.detach().clone()
            param.copy_(alpha * param + (1 - alpha) * ref.to(param.device, param.dtype))
    return saved


def restore_weights(model: Any, saved: dict[str, Any]) -> None:
    import torch

    state = model.state_dict()
    with torch.no_grad():
        for name, value in saved.items():
            state[name].copy_(value)


def choose_mix(
    tuned: Any,
    base: Any,
    val_pairs: Sequence[Pair],
    all_pairs: Sequence[Pair],
    alphas: Sequence[float] = (0.5, 0.7, 0.85, 1.0),
    tolerance: float = 0.005,
) -> MixChoice:
    """Try each ``alpha`` on ``tuned`` (restored after each try) and leave it at the chosen mix."""
    from ragtune.train.validation import NDCG_KEY, validation_evaluator

    evaluator = validation_evaluator(val_pairs, all_pairs)
    reference = base_state(base)
    scores: dict[float, float] = {}
    for a in track(sorted(set(alphas)), "Choosing the WiSE-FT mix", unit="mixes"):
        saved = mix_weights(tuned, reference, a)
        scores[a] = round(float(evaluator(tuned)[NDCG_KEY]), 4)
        restore_weights(tuned, saved)
        log.info("interpolation alpha=%.2f: validation nDCG@10 %.4f", a, scores[a])
    best = max(scores.values())
    alpha = min(a for a, s in scores.items() if s >= best - tolerance)
    if alpha < 1.0:
        mix_weights(tuned, reference, alpha)
    return MixChoice(alpha=alpha, scores=scores, val_queries=len(val_pairs))
