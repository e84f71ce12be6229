"""A query-only adapter: a trained linear map applied to query vectors alone.

The document encoder is left exactly as it was, so an existing Qdrant index of
document vectors stays valid — nothing is re-embedded. Training is cheap: the
base model encodes every query and positive once (frozen), then a ``d × d``
map initialised at the identity is fitted with InfoNCE against *all* positives
(a full softmax, not just in-batch negatives), a Matryoshka sum over the
truncated dimensions, and a pull towards the identity that keeps it close to
the base model. It is saved as a sentence-transformers ``Router`` (query route:
``Dense`` + ``Normalize``; document route: ``Normalize``), so
``SentenceTransformer(path).encode_query`` applies it and ``encode_document``
does not.

When it is the better choice: a large corpus is already indexed and
re-embedding it costs more than the quality a full fine-tune adds; the report
compares both when both are run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ragtune._io import atomic_path, write_json
from ragtune.encoders.encoder import Encoder
from ragtune.encoders.loading import embedding_width, load_model, model_label
from ragtune.errors import ConfigError
from ragtune.pairs.schema import Pair
from ragtune.train.card import CARD_FILE
from ragtune.train.config import AdapterSettings


def train_query_adapter(
    pairs: Sequence[Pair],
    out_dir: str | Path,
    base: str | None,
    dims: Sequence[int] | None = None,
    settings: AdapterSettings | None = None,
    seed: int = 13,
    max_steps: int = -1,
) -> dict[str, Any]:
    """Fit the adapter on ``pairs`` and save ``base`` + adapter as a model folder.

    Args:
        pairs: the training pairs (``split="val"`` ones are left out).
        out_dir: the model folder to write.
        base: the base model (folder, hub id or ``default``).
        dims: Matryoshka dimensions the loss sums over (default: the full width).
        settings: the adapter's knobs (:class:`~ragtune.train.config.AdapterSettings`).
        seed: for the initial order of the pairs.
        max_steps: stop after this many optimiser steps (-1: ``settings.epochs`` passes), as
            ``--max-steps`` stops a full fine-tune.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Router

    settings = settings or AdapterSettings()
    train_pairs = [p for p in pairs if p.split != "val"]
    if len(train_pairs) < 2:
        raise ConfigError(f"the query adapter needs at least 2 training pairs, got {len(train_pairs)}")
    t0 = time.perf_counter()
    model = load_model(base)
    width = embedding_width(model)
    dims = sorted({d for d in (dims or [width]) if d <= width}, reverse=True)
    enc = Encoder(model)
    doc_texts = sorted({p.positive for p in train_pairs})
    doc_index = {t: i for i, t in enumerate(doc_texts)}
    docs = torch.from_numpy(enc.encode_documents(doc_texts))
    queries = torch.from_numpy(enc.encode_queries([p.query for p in train_pairs]))
    targets = torch.tensor([doc_index[p.positive] for p in train_pairs])
    encode_s = time.perf_counter() - t0

    torch.manual_seed(seed)
    linear = torch.nn.Linear(width, width)
    with torch.no_grad():
        linear.weight.copy_(torch.eye(width))
        linear.bias.zero_()
    eye = torch.eye(width)
    opt = torch.optim.Adam(linear.parameters(), lr=settings.learning_rate)
    n = len(train_pairs)
    t1 = time.perf_counter()
    steps = 0
    for _ in range(settings.epochs):
        if steps == max_steps:
            break
        order = torch.randperm(n)
        for i in range(0, n, settings.batch_size):
            if steps == max_steps:
                break
            idx = order[i : i + settings.batch_size]
            mapped = linear(queries[idx])
            loss = 0.0
            for d in dims:
                q = torch.nn.functional.normalize(mapped[:, :d], dim=-1)
                k = torch.nn.functional.normalize(docs[:, :d], dim=-1)
                loss = loss + torch.nn.functional.cross_entropy(settings.scale * q @ k.T, targets[idx])
            loss = loss / len(dims) + settings.identity_weight * ((linear.weight - eye) ** 2).sum() / width
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
    fit_s = time.perf_counter() - t1

    dense = Dense(width, width, bias=True, activation_function=torch.nn.Identity())
    with torch.no_grad():
        dense.linear.weight.copy_(linear.weight)
        dense.linear.bias.copy_(linear.bias)
    modules = [m for m in model]
    if not any(type(m).__name__ == "Normalize" for m in modules):
        modules.append(Normalize())
    router = Router.for_query_document(query_modules=[dense, Normalize()], document_modules=[Normalize()])
    tuned = SentenceTransformer(modules=[*modules, router])
    out_dir = Path(out_dir)
    result = {
        "kind": "query-adapter",
        "steps": steps,
        "train_pairs": len(train_pairs),
        "dims": dims,
        "encode_s": round(encode_s, 2),
        "fit_s": round(fit_s, 2),
        "seconds": round(time.perf_counter() - t0, 2),
        "trainable_params": width * width + width,
        "total_params": int(sum(p.numel() for p in model.parameters())) + width * width + width,
        "weight_shift": float(((linear.weight.detach() - eye) ** 2).sum().sqrt()),
    }
    with atomic_path(out_dir) as tmp:
        tuned.save(str(tmp))
        write_json(
            tmp / CARD_FILE,
            {"base_model": model_label(base), "train": {"method": "query-adapter", **asdict(settings), "max_steps": max_steps},
             "result": result},
        )
    return result

