"""Stage 4 — chunks into a Qdrant collection, and search over it.

One facade over qdrant-client for the embedded on-disk mode (the default: a
folder, no server), ``:memory:``, and a Qdrant server by URL — the same code
path for all three. Each point is one chunk with two named vectors:

- ``text-dense`` — the plain vector (the first ``max_seq_length`` tokens), the
  name LlamaIndex's ``QdrantVectorStore`` uses, so a LlamaIndex index opens it;
- ``windows`` — a multivector of the chunk's token windows compared with
  MAX_SIM, so text past the first 256 tokens is searchable;
- ``text-dense-small`` / ``windows-small`` — the same vectors truncated to a
  small Matryoshka dimension (64 for a 384-wide model), for two-stage search:
  Qdrant ``prefetch`` finds candidates on the small vectors, the full vectors
  rescore them. Optional scalar/binary quantization of the full vectors
  (honoured by a Qdrant server; the embedded mode searches exactly).

Point ids are the chunks' stable UUIDs: re-indexing the same corpus updates
points instead of adding duplicates. The collection's metadata records the
model and dimension; opening it with another model fails loudly.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragtune.corpus import Chunk
from ragtune.errors import IndexMismatchError, InputError
from ragtune.models import Encoder, embedding_width, model_fingerprint, truncate
from ragtune.progress import track

log = logging.getLogger(__name__)

PLAIN = "text-dense"
WINDOWS = "windows"
SMALL = "-small"
META_KEY = "ragtune"
QUANTIZATIONS = ("none", "scalar", "binary")


#: embedded clients still open at interpreter exit are closed while Python can
#: still import (qdrant-client's own ``__del__`` otherwise prints a traceback)
_OPEN_CLIENTS: weakref.WeakSet[Any] = weakref.WeakSet()


@atexit.register
def _close_open_clients() -> None:
    for client in list(_OPEN_CLIENTS):
        with contextlib.suppress(Exception):  # best effort at exit
            client.close()


def is_remote(location: str | Path) -> bool:
    """True for a Qdrant server URL (``http(s)://``), False for a folder or ``:memory:``."""
    return str(location).startswith(("http://", "https://"))


def check_location(location: str | Path) -> str:
    """Refuse a Qdrant folder that does not exist (``connect`` would create an empty one); readers call this."""
    loc = str(location)
    if not is_remote(loc) and loc != ":memory:" and not Path(loc).expanduser().is_dir():
        raise InputError(
            f"--qdrant {loc}: no such folder; give the folder `ragtune index --qdrant` wrote, or a Qdrant server URL"
        )
    return loc


def connect(location: str | Path, api_key: str | None = None, timeout: int = 60) -> Any:
    """A ``QdrantClient`` for a folder (embedded, on disk), ``:memory:``, or a server URL."""
    from qdrant_client import QdrantClient

    loc = str(location)
    if is_remote(loc):
        return QdrantClient(url=loc, api_key=api_key, timeout=timeout)
    if loc == ":memory:":
        return QdrantClient(":memory:")
    path = Path(loc).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: a Qdrant location must be a folder, ':memory:' or an http(s) URL")
    path.mkdir(parents=True, exist_ok=True)
    try:
        client = QdrantClient(path=str(path))
    except RuntimeError as exc:  # the embedded store is locked by another process
        raise InputError(f"{path}: cannot open the embedded Qdrant store ({exc})") from exc
    _OPEN_CLIENTS.add(client)
    return client


@dataclass
class Hit:
    id: str
    score: float
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


class ChunkIndex:
    """A Qdrant collection of chunks, with plain and per-window vectors."""

    def __init__(self, client: Any, collection: str, owns_client: bool = False) -> None:
        if not collection or not collection.replace("-", "").replace("_", "").isalnum():
            raise InputError(f"collection={collection!r}: use letters, digits, '-' and '_'")
        self.client = client
        self.collection = collection
        self.owns_client = owns_client
        self._meta: dict[str, Any] | None = None

    def close(self) -> None:
        """Close the client when this index opened it (:func:`open_index`); frees an embedded store's lock."""
        if self.owns_client:
            self.client.close()

    def __enter__(self) -> ChunkIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # lifecycle ------------------------------------------------------------
    def exists(self) -> bool:
        return bool(self.client.collection_exists(self.collection))

    def metadata(self) -> dict[str, Any]:
        if self._meta is None:
            info = self.client.get_collection(self.collection)
            self._meta = dict((info.config.metadata or {}).get(META_KEY) or {})
        return self._meta

    @property
    def small_dim(self) -> int | None:
        return self.metadata().get("small_dim")

    def ensure(
        self,
        model_name: str,
        fingerprint: str,
        dim: int,
        small_dim: int | None = None,
        quantization: str = "none",
    ) -> None:
        """Create the collection, or check that an existing one was built by this model.

        ``small_dim`` adds truncated vectors for two-stage search (default: a
        sixth of ``dim``; 0 turns them off).
        """

        if quantization not in QUANTIZATIONS:
            raise InputError(f"quantization={quantization!r}: choose one of {', '.join(QUANTIZATIONS)}")
        small = dim // 6 if small_dim is None else small_dim
        if small and not 0 < small < dim:
            raise InputError(f"small_dim={small}: must be between 1 and the model width {dim}")
        meta = {"model": model_name, "fingerprint": fingerprint, "dim": dim, "small_dim": small or None,
                "quantization": quantization}
        if self.exists():
            have = self.metadata()
            if not have:
                raise IndexMismatchError(
                    f"collection {self.collection!r} exists but was not built by ragtune; "
                    "choose another --collection name"
                )
            if have.get("dim") != dim or have.get("fingerprint") != fingerprint:
                raise IndexMismatchError(
                    f"collection {self.collection!r} holds vectors of model {have.get('model')!r} "
                    f"(dim {have.get('dim')}, weights {have.get('fingerprint')}), but the model given is "
                    f"{model_name!r} (dim {dim}, weights {fingerprint}); nothing was changed — "
                    "use another --collection, or the model that built it"
                )
            return
        self.client.create_collection(
            self.collection,
            vectors_config=_vector_params(dim, small),
            quantization_config=_quantization(quantization),
            metadata={META_KEY: meta},
        )
        self._meta = meta

    def count(self, exact: bool = True) -> int:
        """Points in the collection (``exact=False``: a server's fast estimate)."""
        return int(self.client.count(self.collection, exact=exact).count)

    # writing --------------------------------------------------------------
    def upsert(
        self,
        chunks: Sequence[Chunk],
        encoder: Encoder,
        batch_size: int = 64,
    ) -> int:
        """Embed chunks (plain + windows) and upsert them; returns the number written."""
        from qdrant_client import models

        batches = [chunks[i : i + batch_size] for i in range(0, len(chunks), batch_size)]
        written = 0
        for batch in track(batches, "Indexing chunks", unit="batches"):
            texts = [c.text for c in batch]
            wv = encoder.encode_windows(texts)
            plain = wv.vectors[np.r_[0, np.flatnonzero(np.diff(wv.owner)) + 1]]
            per_chunk = wv.per_chunk()
            small = self.small_dim
            points = []
            for i, c in enumerate(batch):
                vectors = {PLAIN: plain[i].tolist(), WINDOWS: per_chunk[i].tolist()}
                if small:
                    vectors[PLAIN + SMALL] = truncate(plain[i], small).tolist()
                    vectors[WINDOWS + SMALL] = truncate(per_chunk[i], small).tolist()
                points.append(models.PointStruct(id=c.id, vector=vectors, payload=chunk_payload(c, wv.spans[i])))
            self.client.upsert(self.collection, points=points, wait=True)
            written += len(points)
        return written

    # reading --------------------------------------------------------------
    def search(
        self,
        query_vector: np.ndarray,
        top_k: int = 5,
        mode: str = "windows",
        query_filter: Any = None,
        two_stage: bool = False,
        candidates: int | None = None,
    ) -> list[Hit]:
        """Top chunks for one normalised query vector.

        ``mode``: ``windows`` (best window of each chunk) or ``plain`` (one
        vector per chunk). ``two_stage``: find ``candidates`` (default
        ``max(100, 10 * top_k)``) on the small truncated vectors, rescore them
        on the full ones.
        """
        from qdrant_client import models

        using = {"windows": WINDOWS, "plain": PLAIN}.get(mode)
        if using is None:
            raise InputError(f"mode={mode!r}: choose 'windows' or 'plain'")
        q = np.asarray(query_vector, dtype=np.float32)

        def as_query(v: np.ndarray) -> Any:
            return [v.tolist()] if using == WINDOWS else v.tolist()

        params = None
        if self.metadata().get("quantization", "none") != "none":
            params = models.SearchParams(quantization=models.QuantizationSearchParams(rescore=True, oversampling=2.0))
        prefetch = None
        if two_stage:
            small = self.small_dim
            if not small:
                raise InputError(
                    f"collection {self.collection!r} has no small vectors for two-stage search; "
                    "re-create it with small_dim > 0"
                )
            prefetch = models.Prefetch(
                query=as_query(truncate(q, small)),
                using=using + SMALL,
                limit=candidates or max(100, 10 * top_k),
                filter=query_filter,
            )
        res = self.client.query_points(
            self.collection,
            query=as_query(q),
            using=using,
            prefetch=prefetch,
            limit=top_k,
            with_payload=True,
            query_filter=query_filter,
            search_params=params,
        )
        return [_hit(p) for p in res.points]


def open_for_model(
    client: Any, collection: str, model: Any, model_name: str, create: bool = True, **options: Any
) -> ChunkIndex:
    """A :class:`ChunkIndex` built by ``model``; created if missing unless ``create=False``.

    ``options`` (``small_dim``, ``quantization``) apply only when the collection is new.
    Readers pass ``create=False`` so a mistyped name is an error, not an empty index.
    """
    index = ChunkIndex(client, collection)
    try:
        exists = index.exists()
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise InputError(f"cannot reach Qdrant ({first})") from exc
    if not create and not exists:
        raise InputError(
            f"collection {collection!r} does not exist: build it with `ragtune index CORPUS --model MODEL "
            f"--collection {collection}` (or ragtune run), or pass the right --collection"
        )
    index.ensure(model_name, model_fingerprint(model), embedding_width(model), **options)
    return index


def open_index(
    location: str | Path,
    collection: str,
    model: Any,
    model_name: str,
    *,
    api_key: str | None = None,
    create: bool = True,
    timeout: int = 60,
    **options: Any,
) -> ChunkIndex:
    """The store facade: connect to ``location`` and open ``collection`` as built by ``model``.

    Every caller (``ragtune index/query``, the pipeline, the server, the
    LlamaIndex helpers) opens its store here, so a new engine plugs in once.
    The returned index owns its client: close it (or use it as a context
    manager) to release an embedded store's folder lock.

    Args:
        location: a folder (embedded Qdrant, on disk), ``:memory:``, or a server URL.
        collection: the collection name.
        model: the ``SentenceTransformer`` whose vectors the collection holds.
        model_name: how the collection's metadata names the model.
        api_key: a Qdrant server's API key.
        create: create a missing collection; readers pass False, so that a
            mistyped folder or name is an error instead of an empty index.
        options: ``small_dim``, ``quantization`` for a new collection.

    Example:
        >>> with open_index("runs/demo/qdrant", "ragtune", model, "runs/demo/model", create=False) as idx:  # doctest: +SKIP
        ...     hits = idx.search(Encoder(model).encode_queries(["battery warranty"])[0])
    """
    loc = str(location) if create else check_location(location)
    client = connect(loc, api_key, timeout)
    try:
        index = open_for_model(client, collection, model, model_name, create=create, **options)
    except BaseException:
        client.close()
        raise
    index.owns_client = True
    return index


def _vector_params(dim: int, small: int) -> dict[str, Any]:
    from qdrant_client import models

    def params(size: int, multi: bool) -> Any:
        return models.VectorParams(
            size=size,
            distance=models.Distance.COSINE,
            multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM) if multi else None,
        )

    out = {PLAIN: params(dim, False), WINDOWS: params(dim, True)}
    if small:
        out[PLAIN + SMALL] = params(small, False)
        out[WINDOWS + SMALL] = params(small, True)
    return out


def _quantization(kind: str) -> Any:
    from qdrant_client import models

    if kind == "scalar":
        return models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True))
    if kind == "binary":
        return models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
    return None


def chunk_payload(chunk: Chunk, spans: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """Payload in LlamaIndex's node format (so ``QdrantVectorStore`` reads it) plus ragtune fields."""
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.utils import node_to_metadata_dict

    node = TextNode(id_=chunk.id, text=chunk.text, metadata=dict(chunk.metadata, source=chunk.source))
    payload = node_to_metadata_dict(node, remove_text=False, flat_metadata=False)
    payload.update(
        text=chunk.text,
        chunk_id=chunk.id,
        doc_id=chunk.doc_id,
        document_id=chunk.doc_id,
        ref_doc_id=chunk.doc_id,
        source=chunk.source,
        windows=[list(s) for s in spans],
    )
    return payload


def _hit(point: Any) -> Hit:
    payload = dict(point.payload or {})
    text = payload.pop("text", "")
    meta = {k: v for k, v in payload.items() if not k.startswith("_")}
    return Hit(id=str(point.id), score=float(point.score), text=text, metadata=meta)
