"""Chunk summaries: teach the model that its read of a chunk's start stands for the whole chunk.

An encoder reads ~256 tokens; LlamaIndex's default chunk is 1024. Indexed the
usual way (one vector per chunk, as ``VectorStoreIndex`` does), a chunk is
represented by its first quarter, and a question about its third paragraph
finds it only by luck. Measured on the Uber 10-K set with the base model (881
questions, grouped by the window of the chunk that best matches the question):
hit@5 0.917 when that is the first window, 0.544 / 0.384 / 0.291 for the
second / third / fourth; more than half of the questions are about a later
window, and contrastive tuning on pairs barely moves those.

The *summary target* of a chunk longer than the model's window is the model's
own view of all of it: the normalized sum of ``plain_weight`` × its first
window's vector and the mean of all its window vectors. Scored with such
vectors in place of the plain ones, the base model's hit@5 on that set goes
from 0.664 to 0.792: the information is there, the truncated read never sees
it. This stage, run after contrastive training, pulls the model's embedding of
each chunk (as a plain index reads it: truncated) towards its target — a cosine
loss at every Matryoshka dimension, targets computed once from the model
before the stage, so they live in its own output space.

It is a property of the chunks it ran on, so it belongs to the corpus you will
search (``ragtune run`` passes the chunks it indexes). Measured (protocol A of
``../shared/BENCHMARK.md``, pairs generated from the Uber PDF): plain hit@5 /
nDCG@10 0.703 / 0.624 → 0.733 / 0.646 (``eval/results/a.json``), best-window
0.884 / 0.784 → 0.877 / 0.784; on the Lyft filing alone (a different corpus than the one searched)
only 0.664 → 0.673 from the base model.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragtune.encoders.windows import WindowSpec, batch_window_spans
from ragtune.progress import task
from ragtune.train.config import SummarySettings
from ragtune.train.hardware import autocast

log = logging.getLogger(__name__)


def summary_targets(
    model: Any, texts: Sequence[str], plain_weight: float = 0.5, batch_size: int = 64
) -> dict[str, np.ndarray]:
    """Summary target (unit vector) of each distinct text longer than the model's window, keyed by text.

    Windows follow :meth:`WindowSpec.for_model` at the model's ``max_seq_length``;
    texts that fit in one window get none (the model already reads all of them).
    """
    from ragtune.encoders.encoder import Encoder

    spec = WindowSpec.for_model(int(model.max_seq_length))
    distinct = list(dict.fromkeys(texts))
    spans = batch_window_spans(distinct, model.tokenizer, spec)
    long_texts = [t for t, s in zip(distinct, spans) if len(s) > 1]
    if not long_texts:
        return {}
    windowed = Encoder(model, batch_size=batch_size).encode_windows(long_texts, spec)
    out: dict[str, np.ndarray] = {}
    for text, own in zip(long_texts, windowed.per_chunk()):
        target = plain_weight * own[0] + own.mean(axis=0)
        out[text] = target / max(float(np.linalg.norm(target)), 1e-12)
    return out


def summary_loss(embeddings: Any, targets: Any, dims: Sequence[int]) -> Any:
    """Mean cosine distance of ``embeddings`` to ``targets``, averaged over the Matryoshka ``dims``."""
    from torch import nn

    total = embeddings.new_zeros(())
    for d in dims:
        e = nn.functional.normalize(embeddings[:, :d], dim=-1)
        t = nn.functional.normalize(targets[:, :d], dim=-1)
        total = total + (1 - (e * t).sum(dim=-1)).mean()
    return total / len(dims)


def train_summaries(
    model: Any,
    chunks: Sequence[str],
    dims: Sequence[int],
    settings: SummarySettings,
    param_groups: list[dict[str, Any]],
    precision: str = "fp32",
    seed: int = 13,
    max_steps: int = -1,
) -> dict[str, Any]:
    """Pull each long chunk's (truncated) embedding towards its summary target, in place; returns a record.

    ``max_steps`` (the run's ``--max-steps``; -1: ``settings.epochs`` passes) caps the optimiser
    steps here too, so a shortened run is short in every training phase.

    ``param_groups`` are AdamW groups with their learning rates (the trainer's
    :func:`~ragtune.train.optim.param_groups`: the embedding layer keeps its lower rate). The record holds the chunks used, the
    mean cosine distance to the targets before and after, steps and seconds.
    """
    import torch

    t0 = time.perf_counter()
    model.eval()
    device = next(model.parameters()).device
    with torch.inference_mode(), autocast(device, precision):
        targets = summary_targets(model, chunks, settings.plain_weight)
    texts = list(targets)
    if not texts:
        return {"chunks": 0, "skipped": "no chunk is longer than the model's window"}
    target = torch.tensor(np.stack([targets[t] for t in texts])).to(device)
    before = _distance(model, texts, target, dims, precision)

    per_epoch = math.ceil(len(texts) / settings.batch_size)
    total = per_epoch * settings.epochs if max_steps < 0 else min(per_epoch * settings.epochs, max_steps)
    warmup = max(1, int(total * settings.warmup_ratio))
    optimizer = torch.optim.AdamW(param_groups)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total - s) / total)
    )
    rng = random.Random(seed)
    order = list(range(len(texts)))
    model.train()
    with task("Chunk summaries", total=total, unit="steps") as steps:
        done = 0
        for _ in range(settings.epochs):
            rng.shuffle(order)
            for start in range(0, len(order), settings.batch_size):
                if done == total:
                    break
                idx = order[start : start + settings.batch_size]
                with autocast(device, precision):
                    emb = _embed(model, [texts[i] for i in idx])
                    loss = summary_loss(emb.float(), target[idx], dims)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                steps.advance()
                done += 1
    model.eval()
    after = _distance(model, texts, target, dims, precision)
    seconds = time.perf_counter() - t0
    log.info("chunk summaries: %d chunks, distance %.4f → %.4f, %.1f s", len(texts), before, after, seconds)
    return {
        "chunks": len(texts),
        "epochs": settings.epochs,
        "steps": total,
        "distance_before": round(before, 4),
        "distance_after": round(after, 4),
        "seconds": round(seconds, 2),
    }


def _embed(model: Any, texts: list[str]) -> Any:
    features = model.preprocess(texts) if hasattr(model, "preprocess") else model.tokenize(texts)
    device = next(model.parameters()).device
    features = {k: (v.to(device) if hasattr(v, "to") else v) for k, v in features.items()}
    return model(features)["sentence_embedding"]


def _distance(model: Any, texts: list[str], target: Any, dims: Sequence[int], precision: str, batch_size: int = 32) -> float:
    import torch

    parts = []
    with torch.inference_mode(), autocast(target.device, precision):
        for start in range(0, len(texts), batch_size):
            emb = _embed(model, texts[start : start + batch_size]).float()
            parts.append(summary_loss(emb, target[start : start + batch_size], dims) * len(emb))
    return float(sum(parts) / len(texts))
