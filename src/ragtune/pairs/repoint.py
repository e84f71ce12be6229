"""Point each pair at the window of its chunk that holds the answer.

Given pairs (LlamaIndex's, or any labelled set) name a whole chunk as the
positive, often 1024 tokens, while the encoder reads 256: trained as is, the
model learns to match a question to the *start* of a chunk that may not contain
the answer. Re-pointing picks, per pair, the window the base model scores
highest against the query, so training matches how long chunks are searched
(best window) and teaches question → answer-passage matching.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from ragtune.encoders.encoder import Encoder
from ragtune.pairs.schema import Pair


def repoint_to_windows(pairs: Sequence[Pair], encoder: Encoder, keep_original: bool = False) -> list[Pair]:
    """Replace each long positive by its best window (by ``encoder``'s similarity to the query).

    Pairs whose positive fits in one window are unchanged. With ``keep_original``
    the whole-chunk pair is kept too (the window pair is added beside it).
    """
    spec = encoder.window_spec()
    texts = sorted({p.positive for p in pairs})
    windowed = encoder.encode_windows(texts, spec)
    per_text = dict(zip(texts, windowed.per_chunk()))
    spans = dict(zip(texts, windowed.spans))
    long = [p for p in pairs if len(spans[p.positive]) > 1]
    qvecs = encoder.encode_queries([p.query for p in long]) if long else np.zeros((0, 1))
    best_for = {id(p): int(np.argmax(per_text[p.positive] @ q)) for p, q in zip(long, qvecs)}
    out: list[Pair] = []
    for p in pairs:
        if id(p) not in best_for:
            out.append(p)
            continue
        a, b = spans[p.positive][best_for[id(p)]]
        if keep_original:
            out.append(p)
        base = p.window[0] if p.window else 0
        out.append(replace(p, positive=p.positive[a:b], window=(base + a, base + b)))
    return out
