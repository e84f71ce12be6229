"""What training moves: AdamW parameter groups, and lower layers frozen."""

from __future__ import annotations

import logging
import re
from typing import Any

from ragtune.train.config import TrainConfig

log = logging.getLogger(__name__)

_NO_DECAY = ("bias", "LayerNorm", "layer_norm", "layernorm")


def param_groups(model: Any, config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases/norms; embeddings at ``embedding_lr_scale`` × lr."""
    groups: dict[tuple[bool, bool], list[Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_emb = ".embeddings." in f".{name}"
        decay = not any(k in name for k in _NO_DECAY)
        groups.setdefault((is_emb, decay), []).append(p)
    out = []
    for (is_emb, decay), params in groups.items():
        lr = config.effective_learning_rate * (config.embedding_lr_scale if is_emb else 1.0)
        if lr == 0:
            for p in params:
                p.requires_grad_(False)
            continue
        out.append({"params": params, "lr": lr, "weight_decay": config.weight_decay if decay else 0.0})
    return out


def freeze_lower_layers(model: Any, n_layers: int) -> int:
    """Freeze the token embeddings and the lowest ``n_layers`` transformer blocks; returns params frozen."""
    frozen = 0
    pattern = re.compile(r"\.(?:layer|layers|h|block)\.(\d+)\.")
    for name, p in model.named_parameters():
        m = pattern.search(name)
        if ".embeddings." in f".{name}" or (m and int(m.group(1)) < n_layers):
            p.requires_grad_(False)
            frozen += p.numel()
    if frozen == 0:
        log.warning("freeze_layers=%d matched no parameters of this architecture", n_layers)
    return frozen
