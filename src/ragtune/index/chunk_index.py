"""Stage 4 — chunks into a Qdrant collection, and search over it.

One facade (:func:`open_index`, :class:`ChunkIndex`) over the engines in
:mod:`ragtune.index.stores.base`: Qdrant Edge embedded on disk (the default for a folder:
Qdrant's own engine, no server), and qdrant-client for a Qdrant server by URL
and ``:memory:`` — the same calls for all. Each point is one chunk with named
vectors:

- ``text-dense`` — the plain vector (the first ``max_seq_length`` tokens), the
  name LlamaIndex's ``QdrantVectorStore`` uses, so a LlamaIndex index opens a
  server collection;
- ``windows`` — a multivector of the chunk's token windows compared with
  MAX_SIM, so text past the first 256 tokens is searchable;
- ``text-dense-small`` / ``windows-small`` — the same vectors truncated to a
  small Matryoshka dimension (64 for a 384-wide model), for two-stage search:
  a prefetch finds candidates on the small vectors, the full vectors rescore
  them. Optional scalar/binary quantization of the full vectors.

Point ids are the chunks' stable UUIDs: re-indexing the same corpus updates
points instead of adding duplicates. The collection's metadata records the
model and dimension; opening it with another model fails loudly.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragtune.corpus.reader import Chunk
from ragtune.encoders.encoder import Encoder, truncate
from ragtune.encoders.loading import embedding_width, model_fingerprint
from ragtune.errors import IndexMismatchError, InputError
from ragtune.index.filters import Condition, Where, where
from ragtune.index.fusion import MODES, HybridConfig, fuse
from ragtune.index.lexical import Lexical, LexicalConfig, fitted_config, normalise_language
from ragtune.index.stores.base import Found, Record, Sparse, StoredPoint, VectorSpec
from ragtune.index.stores.client import ClientStore, is_legacy_folder, local_mode
from ragtune.index.stores.edge import EdgeStore
from ragtune.index.stores.milvus import (
    MILVUS_PREFIX,
    MilvusStore,
    check_milvus_location,
)
from ragtune.progress import task, track

if TYPE_CHECKING:
    from ragtune.index.stores.base import Store

log = logging.getLogger(__name__)

PLAIN = "text-dense"
WINDOWS = "windows"
BM25 = "bm25"  # the sparse lexical vector (ragtune.index.lexical)
SMALL = "-small"
#: suffix of a collection rebuilt beside the one it replaces (ChunkIndex.ensure(replace=True))
STAGING = ".rebuild"
QUANTIZATIONS = ("none", "scalar", "binary")
ENGINES = ("auto", "edge", "local")


#: stores still open at interpreter exit are closed while Python can still
#: import (qdrant-client's own ``__del__`` otherwise prints a traceback, and an
#: Edge shard flushes)
_OPEN_STORES: weakref.WeakSet[Any] = weakref.WeakSet()


@atexit.register
def _close_open_stores() -> None:
    for store in list(_OPEN_STORES):
        with contextlib.suppress(Exception):  # best effort at exit
            store.close()


def is_remote(location: str | Path) -> bool:
    """True for a Qdrant server URL (``http(s)://``), False for a folder or ``:memory:``."""
    return str(location).startswith(("http://", "https://"))


def location_path(location: str | Path) -> Path | None:
    """The file or folder on this machine that holds an embedded store; None for a server or ``:memory:``."""
    loc = str(location)
    if loc.startswith(MILVUS_PREFIX):
        loc = loc[len(MILVUS_PREFIX):]
    if is_remote(loc) or "://" in loc or loc == ":memory:":
        return None
    return Path(loc).expanduser()


def check_location(location: str | Path) -> str:
    """Refuse a Qdrant folder that does not exist (``connect`` would create an empty one); readers call this."""
    loc = str(location)
    if loc.startswith(MILVUS_PREFIX):
        return check_milvus_location(loc)
    if not is_remote(loc) and loc != ":memory:" and not Path(loc).expanduser().is_dir():
        raise InputError(
            f"--qdrant {loc}: no such folder; give the folder `ragtune index --qdrant` wrote, or a Qdrant server URL"
        )
    return loc


def connect(location: str | Path, api_key: str | None = None, timeout: int = 60, engine: str = "auto") -> Store:
    """The store for a folder (embedded, on disk), ``:memory:``, a server URL, or Milvus.

    Every location ragtune accepts (``--qdrant``, the pipeline, the server, the
    LlamaIndex helpers) is opened here, so an engine plugs in once.

    Args:
        location: a folder, ``:memory:`` or an ``http(s)://`` Qdrant server URL;
            ``milvus:PATH.db`` (Milvus Lite, embedded, on disk) or
            ``milvus:http://host:19530`` (a Milvus server): :mod:`ragtune.index.stores.milvus`,
            with ``pip install 'ragtune[milvus]'``.
        api_key: a Qdrant server's API key (a Milvus server's token).
        timeout: seconds per request to a server.
        engine: for a folder: ``auto`` (Qdrant Edge, or qdrant-client's local
            mode for a folder it wrote earlier), ``edge`` or ``local``.

    Example:
        >>> store = connect("milvus:runs/demo/milvus.db")  # doctest: +SKIP
        >>> ChunkIndex(store, "ragtune").count()  # doctest: +SKIP
        42
    """
    from qdrant_client import QdrantClient

    loc = str(location)
    if engine not in ENGINES:
        raise InputError(f"engine={engine!r}: choose one of {', '.join(ENGINES)}")
    if loc.startswith(MILVUS_PREFIX):
        store: Store = MilvusStore(loc, api_key=api_key, timeout=timeout)
    elif is_remote(loc):
        store = ClientStore(QdrantClient(url=loc, api_key=api_key, timeout=timeout), loc)
    elif loc == ":memory:":
        store = ClientStore(QdrantClient(":memory:"), loc)
    else:
        path = Path(loc).expanduser()
        if path.exists() and not path.is_dir():
            raise InputError(f"{path}: a Qdrant location must be a folder, ':memory:' or an http(s) URL")
        if engine == "local" or (engine == "auto" and is_legacy_folder(path)):
            if engine == "auto":
                log.warning(
                    "%s was written by qdrant-client's local mode (slow past a few thousand chunks); "
                    "re-index into a new folder to use the Qdrant Edge engine", path,
                )
            store = local_mode(path)
        else:
            path.mkdir(parents=True, exist_ok=True)
            store = EdgeStore(path)
    _OPEN_STORES.add(store)
    return store


@dataclass
class Hit:
    id: str
    score: float
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    #: the point's whole stored payload (LlamaIndex's ``_node_content`` included)
    payload: dict[str, Any] = field(default_factory=dict, repr=False)


#: the longest collection name: the embedded store names files after it (``NAME.rebuild.json``
#: beside ``NAME/``), and a file name has at most 255 bytes; Qdrant and Milvus servers allow 255
MAX_COLLECTION = 200
_COLLECTION_NAME = re.compile(r"[A-Za-z0-9_-]+")


def check_collection(name: str) -> str:
    """A collection name of at most :data:`MAX_COLLECTION` ASCII letters, digits, ``-`` and ``_``.

    It names a folder and files of the embedded store, so it is checked before any store is touched.
    """
    shown = repr(name) if len(name) <= 60 else f"{name[:40]!r}… ({len(name)} characters)"
    if len(name) > MAX_COLLECTION:
        raise InputError(f"collection={shown}: too long; use at most {MAX_COLLECTION} characters")
    if not _COLLECTION_NAME.fullmatch(name):
        raise InputError(f"collection={shown}: use ASCII letters, digits, '-' and '_'")
    return name


class ChunkIndex:
    """A collection of chunks, with plain and per-window vectors, in any :mod:`ragtune.index.stores.base` engine.

    Args:
        store: a store from :func:`connect` (or a ``QdrantClient``, wrapped).
        collection: the collection name (letters, digits, ``-`` and ``_``).
        owns_client: close the store with this index.
    """

    def __init__(self, store: Any, collection: str, owns_client: bool = False) -> None:
        check_collection(collection)
        if not hasattr(store, "read_meta"):  # a bare QdrantClient
            store = ClientStore(store, owns=False)
        self.store = store
        self.collection = collection
        self.owns_client = owns_client
        self._meta: dict[str, Any] | None = None
        self._final: str | None = None  # the collection a staged rebuild replaces at commit()
        self.replaced: dict[str, Any] | None = None  # the model whose collection ensure(replace=True) rebuilt
        self._lexical: Lexical | None = None
        self._warned_dense = False

    @property
    def client(self) -> Any:
        """The ``QdrantClient`` under a server / ``:memory:`` store (None for the Edge engine)."""
        return getattr(self.store, "client", None)

    @property
    def engine(self) -> str:
        if isinstance(self.store, MilvusStore):
            return "milvus"
        return "edge" if isinstance(self.store, EdgeStore) else "qdrant-client"

    def close(self) -> None:
        """Close the store when this index opened it (:func:`open_index`); frees an embedded store's lock."""
        if self.owns_client:
            self.store.close()

    def __enter__(self) -> ChunkIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # lifecycle ------------------------------------------------------------
    def exists(self) -> bool:
        return bool(self.store.exists(self.collection))

    def metadata(self) -> dict[str, Any]:
        if self._meta is None:
            self._meta = self.store.read_meta(self.collection)
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
        replace: bool = False,
        lexical: bool = True,
        language: str | None = None,
    ) -> None:
        """Create the collection, or check that an existing one was built by this model.

        ``lexical`` gives a new collection a BM25 sparse vector per chunk (for
        hybrid and sparse search; not on Milvus, which ragtune keeps dense only):
        its language is ``language``, else the chunks' ``language`` metadata,
        else detected from the first chunks written (:mod:`ragtune.index.lexical`).

        ``small_dim`` adds truncated vectors for two-stage search (default: a
        sixth of ``dim``; 0 turns them off). ``replace``: a collection of
        another model is rebuilt instead of refused; on an engine that can
        swap (Qdrant Edge) the new one is built beside it and takes its place
        at :meth:`commit`, so the old one serves until the new one is complete;
        elsewhere it is dropped first. :attr:`replaced` then names the old model.
        """

        if quantization not in QUANTIZATIONS:
            raise InputError(f"quantization={quantization!r}: choose one of {', '.join(QUANTIZATIONS)}")
        small = dim // 6 if small_dim is None else small_dim
        if small and not 0 < small < dim:
            raise InputError(f"small_dim={small}: must be between 1 and the model width {dim}")
        meta: dict[str, Any] = {"model": model_name, "fingerprint": fingerprint, "dim": dim,
                                "small_dim": small or None, "quantization": quantization}
        if lexical and self.engine != "milvus":
            # settled from the first chunks written (language, average length): see _lexical_for
            meta["lexical"] = {"language": normalise_language(language) if language else None}
        if self.exists():
            have = self.metadata()
            if not have:
                raise IndexMismatchError(
                    f"collection {self.collection!r} exists but was not built by ragtune; "
                    "choose another --collection name"
                )
            mismatch = have.get("dim") != dim or have.get("fingerprint") != fingerprint
            if mismatch and replace:
                self.replaced = {k: have.get(k) for k in ("model", "fingerprint", "dim")}
                if hasattr(self.store, "swap"):
                    self._final, self.collection = self.collection, self.collection + STAGING
                self.store.drop(self.collection)
                self._meta = None
            elif mismatch:
                raise IndexMismatchError(
                    f"collection {self.collection!r} holds vectors of model {have.get('model')!r} "
                    f"(dim {have.get('dim')}, weights {have.get('fingerprint')}), but the model given is "
                    f"{model_name!r} (dim {dim}, weights {fingerprint}); nothing was changed — "
                    "use another --collection, the model that built it, or --replace to rebuild it"
                )
            else:
                return
        self.store.create(self.collection, _vector_specs(dim, small, quantization, "lexical" in meta), meta)
        self._meta = meta

    def commit(self) -> None:
        """Put a collection rebuilt beside the old one (``ensure(replace=True)``) in its place; else nothing."""
        if self._final is not None:
            self.store.swap(self.collection, self._final)
            self.collection, self._final = self._final, None

    def count(self, exact: bool = True) -> int:
        """Points in the collection (``exact=False``: a server's fast estimate)."""
        return self.store.count(self.collection, exact=exact)

    # writing --------------------------------------------------------------
    def upsert(
        self,
        chunks: Sequence[Chunk],
        encoder: Encoder,
        batch_size: int = 64,
    ) -> int:
        """Embed chunks (plain + windows) and upsert them; returns the number written."""
        batches = [chunks[i : i + batch_size] for i in range(0, len(chunks), batch_size)]
        written = 0
        for batch in track(batches, "Indexing chunks", unit="batches"):
            self._encode_and_write(batch, encoder)
            written += len(batch)
        self.optimize()
        return written

    def _encode_and_write(self, chunks: Sequence[Chunk], encoder: Encoder) -> None:
        wv = encoder.encode_windows([c.text for c in chunks])
        self.write(chunks, wv.first(), wv.per_chunk(), wv.spans)

    def write(
        self,
        chunks: Sequence[Chunk],
        plain: np.ndarray,
        windows: Sequence[np.ndarray],
        spans: Sequence[Sequence[tuple[int, int]]],
        payloads: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Upsert already-encoded chunks: one plain vector and a ``(n_windows, dim)`` array each.

        ``payloads``: keys laid over each chunk's :func:`chunk_payload` (the LlamaIndex
        vector store keeps its nodes' own ``_node_content`` there).
        """
        small = self.small_dim
        lexical = self._lexical_for(chunks)
        terms = lexical.documents([c.text for c in chunks]) if lexical else None
        plain = self._at_width(np.asarray(plain, dtype=np.float32), "chunk")
        points = []
        for i, c in enumerate(chunks):
            win = np.ascontiguousarray(self._at_width(np.asarray(windows[i], dtype=np.float32), "chunk"))
            vectors = {PLAIN: np.ascontiguousarray(plain[i], dtype=np.float32), WINDOWS: win}
            if terms is not None:
                vectors[BM25] = Sparse(*terms[i])
            if small:
                vectors[PLAIN + SMALL] = truncate(vectors[PLAIN], small)
                vectors[WINDOWS + SMALL] = truncate(win, small)
            payload = chunk_payload(c, spans[i]) if payloads is None else {**chunk_payload(c, spans[i]), **payloads[i]}
            points.append(StoredPoint(c.id, vectors, payload))
        self.store.upsert(self.collection, points)

    def _at_width(self, vectors: np.ndarray, what: str) -> np.ndarray:
        """``vectors`` at the collection's width: a collection made for a Matryoshka-truncated
        embedding (``RagtuneEmbedding(dimensions=128)``) holds the model's vectors truncated
        to that width, so a wider vector of the model is truncated (and re-normalised) as the
        embedding truncates it, on writing and on searching alike; a narrower one is refused."""
        dim = self.metadata().get("dim")
        if not dim or vectors.shape[-1] == dim:
            return vectors
        if vectors.shape[-1] < dim:
            raise InputError(
                f"collection {self.collection!r} holds {dim}-dimensional vectors; this {what} vector has "
                f"{vectors.shape[-1]}: use the embedding (and its dimensions=) the collection was built with"
            )
        return truncate(vectors, dim)

    @property
    def has_lexical(self) -> bool:
        """The collection holds BM25 vectors (built since hybrid search; older ones are dense only)."""
        return "lexical" in self.metadata()

    def lexical(self) -> Lexical | None:
        """The BM25 embedder of this collection (None when it is dense only or nothing is written yet)."""
        config = LexicalConfig.from_meta(self.metadata().get("lexical")) if self.has_lexical else None
        if config is None or self.metadata()["lexical"].get("avg_len") is None:
            return None
        if self._lexical is None or self._lexical.config != config:
            self._lexical = Lexical(config)
        return self._lexical

    def _lexical_for(self, chunks: Sequence[Chunk]) -> Lexical | None:
        """The embedder for writing ``chunks``; the first write settles the language and average length."""
        if not self.has_lexical:
            return None
        meta = self.metadata()
        if meta["lexical"].get("avg_len") is None and chunks:
            langs = [c.metadata.get("language") for c in chunks if isinstance(c.metadata.get("language"), str)]
            language = meta["lexical"].get("language") or (max(set(langs), key=langs.count) if langs else None)
            config = fitted_config([c.text for c in chunks], language)
            meta = {**meta, "lexical": config.to_meta()}
            self.store.write_meta(self.collection, meta)
            self._meta = meta
        return self.lexical()

    def sync(
        self,
        chunks: Iterable[Chunk],
        encoder: Encoder,
        batch_size: int = 64,
        *,
        corpus: str | Path | None = None,
        sources: Iterable[str] | None = None,
        prune: bool = False,
    ) -> dict[str, int]:
        """Make the collection hold exactly ``chunks``: encode only the new ones, remove the rest.

        Chunk ids are content-addressed (source, position, text hash), so an
        unchanged document's chunks are already there and are not encoded
        again; an edited document's old chunks and a deleted document's chunks
        are removed. ``chunks`` may be a stream (a :class:`ragtune.corpus.reader.CorpusReader`):
        it is consumed in batches of ``batch_size``, and only ids are kept in
        memory, so a corpus larger than RAM indexes in bounded memory. Each
        written batch is durable, so an interrupted run, run again, resumes
        where it stopped. The collection mirrors one corpus: points of
        documents not in ``chunks`` are removed at the end.

        A path that covers only part of the corpus a collection follows never
        removes the rest silently: with ``corpus`` (the file or folder read) and
        ``sources`` (its files' sources, :meth:`ragtune.corpus.reader.CorpusReader.sources`),
        the collection records the path it follows (metadata ``corpus``). Re-reading
        that path removes the points of files deleted from it; reading another path
        (one file of it, a subfolder, another folder) while points of files it does not
        list would go is refused before anything is written, naming how many, unless
        ``prune``; the collection then follows the new path.

        Returns:
            ``{"encoded", "kept", "removed", "points"}``.
        """
        sources_of = dict(self.store.scroll_payload(self.collection, ["source"]))
        have = set(sources_of)
        if corpus is not None:
            self._follow(str(Path(corpus).expanduser().resolve()), sources_of, set(sources or ()), prune)
        wanted: set[str] = set()
        pending: list[Chunk] = []
        encoded = 0
        with task("Encoding new chunks", unit="chunks") as progress:

            def flush() -> None:
                nonlocal encoded
                self._encode_and_write(pending, encoder)
                encoded += len(pending)
                progress.advance(len(pending))
                pending.clear()

            for c in chunks:
                if c.id in wanted:
                    continue
                wanted.add(c.id)
                if c.id not in have:
                    pending.append(c)
                    if len(pending) >= batch_size:
                        flush()
            if pending:
                flush()
        stale = sorted(have - wanted)
        if stale:
            self.store.delete_ids(self.collection, stale)
        if encoded or stale:
            self.optimize()
        return {"encoded": encoded, "kept": len(wanted & have), "removed": len(stale), "points": self.count()}

    def _follow(self, corpus: str, sources_of: Mapping[str, dict], listed: set[str], prune: bool) -> None:
        """Record that the collection follows ``corpus``; refuse (unless ``prune``) when that drops
        points of files another path put there (see :meth:`sync`)."""
        meta = self.metadata()
        followed = meta.get("corpus")
        if followed == corpus:
            return
        if not prune:
            outside = [src.get("source") for src in sources_of.values() if src.get("source") not in listed]
            if outside:
                holds = f"follows {followed}" if followed else "was built from another path"
                raise InputError(
                    f"{corpus}: collection {self.collection!r} {holds}; indexing only this path would remove "
                    f"{len(outside)} points of {len(set(outside))} other files; nothing was changed — index "
                    f"{followed or 'the whole corpus'} to update it, or pass --prune to keep only this path's"
                )
        self._meta = {**meta, "corpus": corpus}
        self.store.write_meta(self.collection, self._meta)

    def optimize(self) -> None:
        """Build the engine's search index now (Edge: HNSW over what was written)."""
        self.store.optimize(self.collection)

    def delete_documents(self, doc_ids: Sequence[str]) -> None:
        """Remove every point of these documents."""
        if doc_ids:
            self.store.delete(self.collection, Where(must=(Condition("doc_id", "in", list(doc_ids)),)))

    # reading --------------------------------------------------------------
    def search(
        self,
        query_vector: np.ndarray | None,
        top_k: int = 5,
        mode: str = "hybrid",
        query_filter: Any = None,
        two_stage: bool = False,
        candidates: int | None = None,
        query_text: str | None = None,
        hybrid: HybridConfig | None = None,
    ) -> list[Hit]:
        """Top chunks for one query.

        Args:
            query_vector: the query's normalised embedding (not needed for ``sparse``).
            top_k: hits to return.
            mode: ``hybrid`` (best window fused with BM25: ragtune's default
                retriever; without ``query_text`` it searches ``dense``),
                ``dense`` or ``windows`` (best window of each chunk),
                ``plain`` (one vector per chunk) or ``sparse`` (BM25 alone).
                ``hybrid`` on a collection built before BM25 vectors existed
                searches ``dense`` and says once how to re-index.
            query_filter: a :class:`ragtune.index.filters.Where`, a ``{"key": value}``
                mapping (a list value matches any), or, on a qdrant-client
                store, a qdrant-client ``Filter``.
            two_stage: find ``candidates`` (default ``max(100, 10 * top_k)``) on
                the small truncated vectors, rescore them on the full ones.
            candidates: the first stage's size.
            query_text: the query's text (``hybrid`` and ``sparse`` need it).
            hybrid: the fusion (default: :class:`~ragtune.index.fusion.HybridConfig`'s).
        """
        if mode not in (*MODES, "windows"):
            raise InputError(f"mode={mode!r}: choose one of {', '.join(MODES)}")
        flt = where(query_filter) if isinstance(query_filter, dict) else query_filter
        if mode == "hybrid" and query_text is None:
            mode = "dense"
        if mode in ("hybrid", "sparse"):
            if query_text is None:
                raise InputError(f"mode={mode!r} needs the query's text (query_text=...)")
            lexical = self.lexical()
            if lexical is None and self.has_lexical:  # a new collection: nothing written yet
                return []
            if lexical is None:
                hint = (f"collection {self.collection!r} has no BM25 vectors (built before ragtune had them, "
                        "or on Milvus, which ragtune keeps dense only); re-index it with --replace "
                        "for hybrid and sparse search")
                if mode == "sparse":
                    raise InputError(hint)
                if not self._warned_dense:
                    log.warning("%s; searching dense", hint)
                    self._warned_dense = True
                return self.search(query_vector, top_k, "dense", flt, two_stage, candidates)
            sparse_q = Sparse(*lexical.query(query_text))
            if mode == "sparse" or query_vector is None:
                found = self.store.query(self.collection, BM25, sparse_q, top_k, flt=flt) if sparse_q.indices else []
                return [_hit(f) for f in found]
            config = hybrid or HybridConfig()
            n = max(config.candidates, top_k)
            # both lists as ids and scores only: a payload (the chunk's text, its LlamaIndex node) is
            # read from disk, so only the fused top_k's are fetched (measured in eval/scale.py at 10k
            # chunks: reading 100 payloads doubled a hybrid query's time)
            dense = self._dense(query_vector, n, WINDOWS, flt, two_stage, candidates, with_payload=False)
            lexical_hits = (self.store.query(self.collection, BM25, sparse_q, n, flt=flt, with_payload=False)
                            if sparse_q.indices else [])
            fused = fuse([(f.id, f.score) for f in dense], [(f.id, f.score) for f in lexical_hits],
                         config.alpha, top_k)
            payloads = {r.id: r.payload for r in self.store.records(self.collection, [cid for cid, _ in fused])}
            return [_hit(Found(cid, score, payloads.get(cid, {}))) for cid, score in fused]
        using = PLAIN if mode == "plain" else WINDOWS
        return [_hit(f) for f in self._dense(query_vector, top_k, using, flt, two_stage, candidates)]

    def _dense(
        self, query_vector: Any, top_k: int, using: str, flt: Any, two_stage: bool, candidates: int | None,
        with_payload: bool = True,
    ) -> list[Found]:
        q = self._at_width(np.asarray(query_vector, dtype=np.float32), "query")

        def as_query(v: np.ndarray) -> Any:
            return [v.tolist()] if using == WINDOWS else v.tolist()

        prefetch = None
        if two_stage:
            small = self.small_dim
            if not small:
                raise InputError(
                    f"collection {self.collection!r} has no small vectors for two-stage search; "
                    "re-create it with small_dim > 0"
                )
            prefetch = (using + SMALL, as_query(truncate(q, small)), candidates or max(100, 10 * top_k))
        return self.store.query(
            self.collection,
            using,
            as_query(q),
            top_k,
            flt=flt,
            prefetch=prefetch,
            quantized=self.metadata().get("quantization", "none") != "none",
            with_payload=with_payload,
        )

    # by id and payload (the LlamaIndex vector store's get_nodes / delete_nodes / clear) --------
    def get(
        self,
        ids: Sequence[str] | None = None,
        query_filter: Where | Mapping[str, Any] | None = None,
        limit: int | None = None,
        with_vector: bool = False,
    ) -> list[Record]:
        """Points with these ids that match ``query_filter`` (every point when both are None).

        Each :class:`~ragtune.index.stores.base.Record` holds the point's whole payload
        and, with ``with_vector``, its plain vector; an empty ``ids`` gives nothing.
        """
        flt = where(query_filter) if isinstance(query_filter, Mapping) else query_filter
        return self.store.records(self.collection, ids, flt, PLAIN if with_vector else None, limit)

    def delete_points(
        self, ids: Sequence[str] | None = None, query_filter: Where | Mapping[str, Any] | None = None
    ) -> None:
        """Remove the points with these ids that match ``query_filter``; both None: every point."""
        flt = where(query_filter) if isinstance(query_filter, Mapping) else query_filter
        if ids is not None and flt is not None:
            ids = [r.id for r in self.get(ids, flt)]
        if ids is not None:
            if ids:
                self.store.delete_ids(self.collection, list(ids))
        else:
            self.store.delete(self.collection, flt or Where())

    def drop(self) -> None:
        """Delete the collection (points and metadata); :meth:`ensure` creates it again."""
        self.store.drop(self.collection)
        self._meta = None


def open_for_model(
    store: Any, collection: str, model: Any, model_name: str, create: bool = True, dim: int | None = None,
    **options: Any,
) -> ChunkIndex:
    """A :class:`ChunkIndex` built by ``model``; created if missing unless ``create=False``.

    ``dim``: the width the collection holds (default: the model's; a Matryoshka
    embedding's ``dimensions`` keeps the model's vectors truncated to it).
    ``options`` (``small_dim``, ``quantization``) apply only when the collection is new.
    Readers pass ``create=False`` so a mistyped name is an error, not an empty index.
    """
    index = ChunkIndex(store, collection)
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
    index.ensure(model_name, model_fingerprint(model), dim or embedding_width(model), **options)
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
    The returned index owns its store: close it (or use it as a context
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
    check_collection(collection)  # before connect creates a folder for a name that cannot be used
    loc = str(location) if create else check_location(location)
    store = connect(loc, api_key, timeout)
    try:
        index = open_for_model(store, collection, model, model_name, create=create, **options)
    except BaseException:
        store.close()
        raise
    index.owns_client = True
    return index


def _vector_specs(dim: int, small: int, quantization: str, lexical: bool = False) -> dict[str, VectorSpec]:
    out = {PLAIN: VectorSpec(dim, False, quantization), WINDOWS: VectorSpec(dim, True, quantization)}
    if lexical:
        out[BM25] = VectorSpec(0, sparse=True)
    if small:  # prefetch vectors are scanned: 64 dims scan fast, and a graph would cost memory and build time
        out[PLAIN + SMALL] = VectorSpec(small, False, index=False)
        out[WINDOWS + SMALL] = VectorSpec(small, True, index=False)
    return out


def chunk_payload(chunk: Chunk, spans: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """Payload in LlamaIndex's node format (so ``QdrantVectorStore`` reads it) plus ragtune fields.

    ``windows`` holds the windows' token spans as text, ``"0-256 192-448"``: a
    nested list costs an embedded store's ingest ~30 µs more per point to
    convert (measured with qdrant-edge-py 0.9), and nothing searches on it.
    """
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
        windows=" ".join(f"{a}-{b}" for a, b in spans),
    )
    return payload


def _hit(found: Any) -> Hit:
    payload = dict(found.payload or {})
    text = payload.pop("text", "")
    meta = {k: v for k, v in payload.items() if not k.startswith("_")}
    return Hit(id=found.id, score=found.score, text=text, metadata=meta, payload=dict(found.payload or {}))
