"""qdrant-client as a store: a Qdrant server by URL, ``:memory:``, or a local-mode folder.

Local-mode folders are what ragtune wrote before the Edge engine; they are
still read, with a warning that says how to move.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.errors import InputError
from ragtune.index.filters import Condition, Where, translate_filter
from ragtune.index.stores.base import (
    META_KEY,
    Found,
    Record,
    Sparse,
    StoredPoint,
    VectorSpec,
    paged,
    paged_records,
)

log = logging.getLogger(__name__)


LEGACY_MARKER = "meta.json"  # qdrant-client's local mode keeps its collections list here
# ---------------------------------------------------------------------------
# qdrant-client (server URL, :memory:, legacy local-mode folders)


class ClientStore:
    """Collections through a ``QdrantClient`` (a server, ``:memory:`` or a local-mode folder)."""

    def __init__(self, client: Any, location: str = "", owns: bool = True) -> None:
        self.client = client
        self.location = location
        self.owns = owns

    def exists(self, name: str) -> bool:
        return bool(self.client.collection_exists(name))

    def read_meta(self, name: str) -> dict[str, Any]:
        info = self.client.get_collection(name)
        return dict((info.config.metadata or {}).get(META_KEY) or {})

    def create(self, name: str, vectors: Mapping[str, VectorSpec], meta: dict[str, Any]) -> None:
        from qdrant_client import models

        def params(spec: VectorSpec) -> Any:
            quant = None
            if spec.quantization == "scalar":
                quant = models.ScalarQuantization(
                    scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)
                )
            elif spec.quantization == "binary":
                quant = models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
            return models.VectorParams(
                size=spec.size,
                distance=models.Distance.COSINE,
                multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM)
                if spec.multi
                else None,
                quantization_config=quant,
            )

        self.client.create_collection(
            name,
            vectors_config={k: params(v) for k, v in vectors.items() if not v.sparse},
            sparse_vectors_config={k: models.SparseVectorParams(modifier=models.Modifier.IDF)
                                   for k, v in vectors.items() if v.sparse} or None,
            metadata={META_KEY: meta},
        )

    def write_meta(self, name: str, meta: dict[str, Any]) -> None:
        self.client.update_collection(name, metadata={META_KEY: meta})

    def count(self, name: str, exact: bool = True) -> int:
        return int(self.client.count(name, exact=exact).count)

    def upsert(self, name: str, points: Sequence[StoredPoint]) -> None:
        from qdrant_client import models

        self.client.upsert(
            name,
            points=[
                models.PointStruct(id=p.id, vector={k: _client_vector(v) for k, v in p.vectors.items()},
                                   payload=p.payload)
                for p in points
            ],
            wait=True,
        )

    def delete(self, name: str, flt: Where) -> None:
        from qdrant_client import models

        self.client.delete(name, points_selector=models.FilterSelector(filter=client_filter(flt)), wait=True)

    def delete_ids(self, name: str, ids: Sequence[str]) -> None:
        from qdrant_client import models

        self.client.delete(name, points_selector=models.PointIdsList(points=list(ids)), wait=True)

    def scroll_payload(self, name: str, keys: Sequence[str], flt: Where | None = None) -> Iterable[tuple[str, dict]]:
        return paged(
            lambda offset: self.client.scroll(
                name, scroll_filter=client_filter(flt) if flt else None, limit=1024, offset=offset,
                with_payload=list(keys), with_vectors=False,
            )
        )

    def query(
        self,
        name: str,
        using: str,
        vector: Any,
        limit: int,
        flt: Where | Any | None = None,
        prefetch: tuple[str, Any, int] | None = None,
        quantized: bool = False,
        with_payload: bool = True,
    ) -> list[Found]:
        from qdrant_client import models

        qf = client_filter(flt) if isinstance(flt, Where) else flt  # a qdrant_client Filter passes through
        params = (
            models.SearchParams(quantization=models.QuantizationSearchParams(rescore=True, oversampling=2.0))
            if quantized
            else None
        )
        pre = None
        if prefetch is not None:
            p_using, p_vector, p_limit = prefetch
            pre = models.Prefetch(query=p_vector, using=p_using, limit=p_limit, filter=qf)
        res = self.client.query_points(
            name, query=_client_vector(vector), using=using, prefetch=pre, limit=limit, with_payload=with_payload,
            query_filter=qf, search_params=params,
        )
        return [Found(str(p.id), float(p.score), dict(p.payload or {})) for p in res.points]

    def optimize(self, name: str) -> None:
        """A server optimizes on its own; local mode has no index to build."""

    def drop(self, name: str) -> None:
        if self.client.collection_exists(name):
            self.client.delete_collection(name)

    def close(self) -> None:
        if self.owns:
            self.client.close()

    def records(
        self,
        name: str,
        ids: Sequence[str] | None = None,
        flt: Where | None = None,
        vector: str | None = None,
        limit: int | None = None,
    ) -> list[Record]:
        """Points by id and/or filter (every point when neither), with full payloads and vector ``vector``."""
        from qdrant_client import models

        if ids is not None and not ids:
            return []
        must: list[Any] = [models.HasIdCondition(has_id=list(ids))] if ids is not None else []
        if flt is not None:
            must.append(client_filter(flt))
        return paged_records(
            lambda offset, page: self.client.scroll(
                name, scroll_filter=models.Filter(must=must) if must else None, limit=page, offset=offset,
                with_payload=True, with_vectors=[vector] if vector else False,
            ),
            vector, limit,
        )


def _client_vector(v: Any) -> Any:
    if isinstance(v, Sparse):
        from qdrant_client import models

        return models.SparseVector(indices=list(v.indices), values=list(v.values))
    return np.asarray(v).tolist()


def client_filter(flt: Where) -> Any:
    """A :class:`Where` as a qdrant-client ``Filter``."""
    from qdrant_client import models

    def field(c: Condition) -> Any:
        if c.op == "eq":
            return models.FieldCondition(key=c.key, match=models.MatchValue(value=c.value))
        if c.op == "in":
            return models.FieldCondition(key=c.key, match=models.MatchAny(any=list(c.value)))
        if c.op == "nin":
            return models.FieldCondition(key=c.key, match=models.MatchExcept(**{"except": list(c.value)}))
        return models.FieldCondition(key=c.key, range=models.Range(**{c.op: c.value}))

    return translate_filter(
        flt, field, lambda must, should, must_not: models.Filter(must=must, should=should, must_not=must_not)
    )


def is_legacy_folder(folder: Path) -> bool:
    """A folder qdrant-client's local mode wrote (``meta.json`` + ``collection/``)."""
    return (folder / LEGACY_MARKER).is_file() and (folder / "collection").is_dir()


def local_mode(folder: str | Path) -> ClientStore:
    """qdrant-client's pure-Python local mode on ``folder`` (kept for old folders and for comparison)."""
    from qdrant_client import QdrantClient

    path = Path(folder).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    try:
        client = QdrantClient(path=str(path))
    except RuntimeError as exc:  # locked by another process
        raise InputError(f"{path}: cannot open the embedded Qdrant store ({exc})") from exc
    return ClientStore(client, str(path))


