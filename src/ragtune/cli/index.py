"""``ragtune index`` and ``ragtune query``: a corpus into a collection that follows it, and a search of it."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ragtune.cli import options as o
from ragtune.cli.output import echo, showing_progress
from ragtune.corpus.reader import ChunkConfig


def index(
    corpus: o.Corpus,
    model: o.Model,
    store: o.Store,
    collection: o.Collection,
    api_key: o.ApiKey = None,
    chunk_size: o.ChunkSize = ChunkConfig.chunk_size,
    small_dim: int | None = typer.Option(None, "--small-dim", help="Truncated vectors for two-stage search (default width/6; 0: none)."),
    quantization: str = typer.Option("none", "--quantization", help="none | scalar | binary (Milvus: none or scalar)."),
    backend: o.Backend = o.DEFAULT_BACKEND,
    backend_file: o.BackendFile = None,
    workers: o.Workers = 0,
    replace: bool = typer.Option(
        False, "--replace", help="A collection built by another model is rebuilt with this one (embedded: beside it, swapped in when complete)."
    ),
    prune: bool = typer.Option(
        False, "--prune",
        help="Indexing a path that covers only part of the collection's corpus (one file, a subfolder) removes the rest (else refused).",
    ),
    follow_symlinks: bool = typer.Option(
        ChunkConfig.follow_symlinks, "--follow-symlinks",
        help="Read files and folders that symlinks in the corpus point to outside it (default: skipped with a warning).",
    ),
) -> None:
    """Chunk a corpus into a collection that follows it: a re-run encodes only new or
    edited documents' chunks and removes those of edited and deleted ones (ids are content-addressed)."""
    from ragtune.corpus.reader import CorpusReader
    from ragtune.encoders.encoder import Encoder, encoding_devices
    from ragtune.encoders.loading import load_model
    from ragtune.index.chunk_index import check_collection, location_path, open_index
    from ragtune.index.stores.edge import is_no_space, no_space

    check_collection(collection)  # before the corpus is read and the model loaded
    reader = CorpusReader(corpus, ChunkConfig(chunk_size=chunk_size, follow_symlinks=follow_symlinks))
    st = load_model(model, backend=backend, file=backend_file)
    enc = Encoder(st, devices=encoding_devices(workers))
    folder = location_path(store)
    try:
        with open_index(store, collection, st, model, api_key=api_key, small_dim=small_dim,
                        quantization=quantization, replace=replace) as idx:
            with showing_progress():
                # streamed: one file's chunks in memory at a time
                done = idx.sync(reader, enc, corpus=reader.corpus, sources=reader.sources(), prune=prune)
            idx.commit()
            replaced = idx.replaced
    except OSError as exc:  # a full disk under an embedded store: one line naming the folder and the disk
        if folder is None or not is_no_space(exc):
            raise
        raise no_space(folder, f"{exc.strerror or exc}") from exc
    if replaced:
        echo(f"replaced {collection!r} of model {replaced.get('model')!r} (weights {replaced.get('fingerprint')})")
    echo(
        f"{done['encoded']} chunks encoded, {done['kept']} kept, {done['removed']} removed; "
        f"{collection!r} at {store} holds {done['points']} points"
    )


def query(
    text: Annotated[str, typer.Argument(help="The question or search text.")],
    model: o.Model,
    store: o.Store,
    collection: o.Collection,
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="Hits to return (>= 1)."),
    mode: str = typer.Option(
        "hybrid", "--mode",
        help="hybrid (best window fused with BM25 at the model's fitted weight) | dense (best window) | sparse (BM25) | plain",
    ),
    api_key: o.ApiKey = None,
    two_stage: bool = typer.Option(False, "--two-stage", help="Candidates on small Matryoshka vectors, rescored on full ones."),
    as_json: bool = typer.Option(False, "--json", help="Print hits as JSON lines."),
    backend: o.Backend = o.DEFAULT_BACKEND,
    backend_file: o.BackendFile = None,
) -> None:
    """Search a ragtune collection with a model."""
    from ragtune.encoders.encoder import Encoder
    from ragtune.encoders.loading import load_model, resolve_model
    from ragtune.index.chunk_index import check_collection, check_location, open_index
    from ragtune.index.fusion import read_hybrid

    check_collection(collection)
    resolve_model(model)  # a bad model or folder fails in a second, before anything loads
    check_location(store)
    st = load_model(model, backend=backend, file=backend_file)
    enc = Encoder(st)
    with open_index(store, collection, st, model, api_key=api_key, create=False) as idx:
        vector = None if mode == "sparse" else enc.encode_queries([text])[0]
        hits = idx.search(vector, top_k=top_k, mode=mode, two_stage=two_stage, query_text=text,
                          hybrid=read_hybrid(resolve_model(model)))
    for rank, h in enumerate(hits, 1):
        if as_json:
            echo(json.dumps({"rank": rank, "id": h.id, "score": h.score, "source": h.metadata.get("source"), "text": h.text}))
        else:
            snippet = " ".join(h.text.split())[:300]
            echo(f"{rank}. [{h.score:.3f}] {h.metadata.get('source', '')}\n   {snippet}")
