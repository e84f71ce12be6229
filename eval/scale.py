"""The embedded store at the size of a real corpus: ingest, latency, recall, memory, disk.

``python eval/scale.py --chunks 10000,100000,250000 --out eval/results/scale.json``

Each chunk is written the way ``ragtune index`` writes it (through
:class:`ragtune.index.chunk_index.ChunkIndex`, LlamaIndex node payload included): a plain
vector, four window vectors (a multivector searched by max-sim) and their
64-dim Matryoshka truncations for two-stage search — 6 vectors per chunk, so
250,000 chunks hold 1,000,000 window vectors.

The vectors come from real embeddings: the 1,520 window vectors of the Uber
10-K's 410 chunks (all-MiniLM-L6-v2, cached in ``--cache``), mixed and
perturbed (:func:`_block`): each synthetic window is a random convex mix of
three real windows plus Gaussian noise of norm ``--noise`` (default 0.3).
The generator is a function of the chunk number (seeded per block), so exact
search — the reference for recall — regenerates the same vectors instead of
holding them. Queries are the Uber set's real questions.

For each store and size a child process builds the collection in a fresh
folder and measures ingest time (``ingest_s``: time inside the store — creating
the collection, the upserts, the engine's index build; ``ingest_wall_s`` adds
generating the vectors and ragtune's payload building, the same for every store),
single-query latency in three modes (plain, windows, windows two-stage),
reopen time, disk and the child's peak RSS; the parent computes exact
top-10s and recall@10. qdrant-client's local mode runs only up to
``--local-max`` chunks (at 50k single vectors it took ≈525 s to ingest).
``--stores milvus`` adds Milvus Lite (``milvus:FOLDER/scale.db``, windows as
rows of a second collection) through the same facade.

Streaming (``--index-copies 1,10``): ``ragtune index`` itself, as a child
process, over a folder holding the Uber 10-K PDF once and over one holding it
ten times (symlinks under different names, so every copy's chunks are new),
with the base model's OpenVINO int8 form (``ragtune export``, calibrated on the
PDF) so ten copies encode in minutes on 2 cores; the child's peak RSS shows
whether memory grows with the corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import latency_ms, require

BLOCK = 2000
WINDOWS = 4
SMALL = 64
TOP_K = 10
MODES = {"plain": ("plain", False), "windows": ("windows", False), "windows_two_stage": ("windows", True),
         "hybrid": ("hybrid", False), "sparse": ("sparse", False)}
#: modes whose exact reference this script computes (hybrid and sparse have none: no recall for them)
EXACT_MODES = ("plain", "windows", "windows_two_stage")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", default="10000", help="comma-separated collection sizes in chunks")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--stores", default="edge,local",
                    help="edge (the default engine), local (qdrant-client local mode), milvus (Milvus Lite)")
    ap.add_argument("--local-max", type=int, default=10_000, help="largest size local mode is run at")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--noise", type=float, default=0.3)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "ragtune-scale-vectors-v2.npz")
    ap.add_argument("--workdir", type=Path, default=None, help="where the stores are built (default: a temp folder)")
    ap.add_argument("--index-copies", default="1,10", help="corpus sizes (copies of the Uber PDF) for the streaming run; '' skips it")
    ap.add_argument("--index-backend", default="openvino", help="the --backend of the streaming run's `ragtune index`")
    ap.add_argument("--no-lexical", dest="lexical", action="store_false",
                    help="collections without BM25 vectors (as before hybrid search): the ingest baseline")
    ap.add_argument("--compare-dense", action="store_true",
                    help="build each store and size twice, without and with BM25 vectors (ingest and latency side by side)")
    ap.add_argument("--one", nargs=2, metavar=("STORE", "CHUNKS"), help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        return _child(args)

    from ragtune.machine import machine_info, package_versions

    base = _real_vectors(args.cache)
    queries = base["queries"][: args.queries]
    runs = []
    work = Path(tempfile.mkdtemp(prefix="ragtune-scale-", dir=args.workdir))
    try:
        for n in [int(x) for x in args.chunks.split(",")]:
            exact = _exact(base, queries, n, args.noise)
            for store in [s.strip() for s in args.stores.split(",") if s.strip()]:
                if store == "local" and n > args.local_max:
                    continue
                for lexical in ([False, True] if args.compare_dense else [args.lexical]):
                    print(f"{store} at {n:,} chunks{'' if lexical else ' (dense only)'} ...", flush=True)
                    run = _spawn(args, store, n, work, lexical)
                    for mode, ids in run.pop("top_ids").items():
                        if mode not in EXACT_MODES:
                            continue
                        ref = exact["windows" if mode.startswith("windows") else "plain"]
                        run["modes"][mode]["recall_at_10"] = round(_recall(ids, ref), 4)
                    run["recall_at_10"] = run["modes"]["windows"]["recall_at_10"]
                    runs.append(run)
                    hybrid = run["modes"].get("hybrid")
                    print(
                        f"  ingest {run['ingest_s']:.1f} s ({run['ingest_points_per_s']:.0f} chunks/s), windows p50/p95 "
                        f"{run['query_p50_ms']:.2f}/{run['query_p95_ms']:.2f} ms, "
                        + (f"hybrid p50/p95 {hybrid['p50_ms']:.2f}/{hybrid['p95_ms']:.2f} ms, " if hybrid else "")
                        + f"recall@10 {run['recall_at_10']:.3f}, "
                        f"peak RSS {run['peak_rss_gib']:.2f} GiB, disk {run['disk_mb']:.0f} MB",
                        flush=True,
                    )
        indexing = _streaming(args, work) if args.index_copies else []
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = {
        "benchmark": "scale",
        "command": "python " + " ".join(sys.argv),
        "default_store": "edge",
        "generator": {"source": "Uber 10-K windows, all-MiniLM-L6-v2", "real_chunks": int(base["chunks"]),
                      "windows_per_chunk": WINDOWS, "small_dim": SMALL, "noise": args.noise,
                      "queries": len(queries)},
        "runs": runs,
        "indexing": indexing,
        "indexing_rss_ratio": round(indexing[-1]["peak_rss_gib"] / indexing[0]["peak_rss_gib"], 3) if len(indexing) > 1 else None,
        "machine": machine_info(),
        "versions": package_versions(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


# --- vectors ----------------------------------------------------------------


def _real_vectors(cache: Path) -> dict[str, np.ndarray]:
    """The Uber chunks' window vectors and the questions' vectors (base model), cached."""
    if cache.exists():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    from ragtune.encoders.encoder import Encoder
    from ragtune.encoders.loading import load_model
    from ragtune.evaluation import load_llamaindex

    ds = load_llamaindex(require("tenk", "uber_val_pairs.json"))
    enc = Encoder(load_model(None))
    wv = enc.encode_windows(list(ds.corpus.values()))
    qv = enc.encode_queries([ds.queries[q] for q in sorted(ds.queries)])
    out = {"windows": wv.vectors.astype(np.float32), "chunks": np.asarray(len(ds.corpus)),
           "queries": qv.astype(np.float32)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def _real_texts() -> tuple[list[str], list[str]]:
    """The Uber set's chunk texts and its questions (in the order of the cached query vectors)."""
    data = json.loads(require("tenk", "uber_val_pairs.json").read_text())
    return list(data["corpus"].values()), [data["queries"][q] for q in sorted(data["queries"])]


def _block(base: dict[str, np.ndarray], start: int, stop: int, noise: float) -> np.ndarray:
    """Window vectors ``(stop - start, WINDOWS, dim)`` of chunks ``start..stop`` (a block-aligned range).

    Each synthetic window is a random convex mix (Dirichlet weights) of three
    real Uber windows plus Gaussian noise of norm ``noise``, re-normalised: the
    vectors stay in the region real embeddings occupy, with their clustering,
    while no two chunks are near-copies of each other (copies of a few hundred
    real chunks would make the exact top-10 a noise-level tie among copies,
    which no approximate index — or real corpus — has).
    """
    w = base["windows"]
    rng = np.random.default_rng([7, start])
    count, dim = stop - start, w.shape[1]
    picks = rng.integers(0, len(w), size=(count, WINDOWS, 3))
    weights = rng.dirichlet(np.ones(3), size=(count, WINDOWS)).astype(np.float32)
    v = np.einsum("nwk,nwkd->nwd", weights, w[picks])
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    v += rng.standard_normal((count, WINDOWS, dim), dtype=np.float32) * (noise / np.sqrt(dim))
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _blocks(base, n: int, noise: float):
    for start in range(0, n, BLOCK):
        yield start, _block(base, start, min(n, start + BLOCK), noise)


def _chunk_id(i: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ragtune-scale/{i}"))


def _exact(base, queries: np.ndarray, n: int, noise: float) -> dict[str, list[list[int]]]:
    """Exact top-10 chunk numbers per query, plain (window 0) and windows (max-sim)."""
    best = {m: (np.full((len(queries), TOP_K), -np.inf, np.float32), np.zeros((len(queries), TOP_K), np.int64))
            for m in ("plain", "windows")}
    for start, win in _blocks(base, n, noise):
        sims_w = np.einsum("qd,nwd->qnw", queries, win)
        for mode, sims in (("plain", sims_w[:, :, 0]), ("windows", sims_w.max(axis=2))):
            s, i = best[mode]
            cat_s = np.concatenate([s, sims], axis=1)
            cat_i = np.concatenate([i, np.broadcast_to(np.arange(start, start + sims.shape[1]), sims.shape)], axis=1)
            top = np.argsort(-cat_s, axis=1, kind="stable")[:, :TOP_K]
            best[mode] = (np.take_along_axis(cat_s, top, 1), np.take_along_axis(cat_i, top, 1))
    return {m: best[m][1].tolist() for m in best}


def _recall(found: list[list[str]], exact: list[list[int]]) -> float:
    hits = [len(set(f) & {_chunk_id(i) for i in e}) / TOP_K for f, e in zip(found, exact)]
    return float(np.mean(hits))


# --- streaming: `ragtune index` over 1x and 10x the Uber PDF ------------------


def _streaming(args: argparse.Namespace, work: Path) -> list[dict]:
    """Peak RSS and time of `ragtune index` as the corpus grows (each in a child process)."""
    pdf = require("tenk", "uber_2021.pdf")
    ragtune = str(Path(sys.executable).with_name("ragtune"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAGTUNE_PROGRESS_INTERVAL": "60"}
    counts = [int(x) for x in args.index_copies.split(",")]
    for copies in counts:
        corpus = work / f"corpus-{copies}"
        corpus.mkdir()
        for i in range(copies):
            (corpus / f"uber_{i:02d}.pdf").symlink_to(pdf)
    from ragtune.encoders.loading import resolve_model

    model = Path(resolve_model("default"))
    if args.index_backend != "torch":
        model = shutil.copytree(model, work / "base-model")
        fmt = {"openvino": "openvino-int8", "onnx": "onnx-int8"}[args.index_backend]
        subprocess.run([ragtune, "export", str(model), "--format", fmt, "--calibration", str(work / f"corpus-{counts[0]}")],
                       check=True, env=env, stdout=subprocess.DEVNULL)
    out = []
    for copies in counts:
        corpus = work / f"corpus-{copies}"
        print(f"ragtune index over {copies} x the Uber PDF ...", flush=True)
        cmd = [ragtune, "index", str(corpus), "--model", str(model), "--store", str(work / f"q-{copies}"),
               "--collection", "stream", "--backend", args.index_backend]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
        stdout = proc.stdout.read() if proc.stdout else ""
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(cmd)} failed")
        encoded = int(stdout.split(" chunks encoded")[0].split()[-1])
        row = {"copies": copies, "chunks": encoded, "seconds": round(seconds, 1), "chunks_per_s": round(encoded / seconds, 2),
               "peak_rss_gib": round(usage.ru_maxrss / 2**20, 3), "backend": args.index_backend, "output": stdout.strip()}
        print(f"  {encoded} chunks in {seconds:.0f} s, peak RSS {row['peak_rss_gib']:.2f} GiB", flush=True)
        out.append(row)
        shutil.rmtree(work / f"q-{copies}", ignore_errors=True)
    return out


# --- one store, one size, in its own process (its peak RSS is the store's) --


def _spawn(args: argparse.Namespace, store: str, n: int, work: Path, lexical: bool = True) -> dict:
    result = work / f"{store}-{n}-{int(lexical)}.json"
    cmd = [sys.executable, __file__, "--one", store, str(n), "--result", str(result), "--out", str(args.out),
           "--cache", str(args.cache), "--queries", str(args.queries), "--noise", str(args.noise),
           "--workdir", str(work), *([] if lexical else ["--no-lexical"])]
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    return json.loads(result.read_text())


STORES = {"edge": "qdrant-edge", "local": "qdrant-client-local", "milvus": "milvus-lite"}


def _open(folder: Path, store_name: str):
    from ragtune.index.chunk_index import connect

    if store_name == "milvus":  # a Milvus Lite database file inside the run's folder
        folder.mkdir(parents=True, exist_ok=True)
        return connect(f"milvus:{folder / 'scale.db'}")
    return connect(folder, engine=store_name)


def _child(args: argparse.Namespace) -> int:
    from ragtune.corpus.reader import Chunk
    from ragtune.index.chunk_index import ChunkIndex

    store_name, n = args.one[0], int(args.one[1])
    base = _real_vectors(args.cache)
    queries = base["queries"][: args.queries]
    folder = args.workdir / f"{store_name}-{n}"
    # chunk texts and query texts are the Uber set's real ones (chunk i reads real chunk i mod 410,
    # with its number, so BM25 indexes a real vocabulary); --lexical off: collections without BM25
    texts, query_texts = _real_texts()
    lexical = args.lexical

    # ingest_s: time inside the store (create, upserts, index build) — the engines compared;
    # ingest_wall_s adds what every engine shares: generating the vectors and ragtune's
    # payload building (ChunkIndex.write), so the two differ by the same amount for each store
    clock = {"store": 0.0, "depth": 0}

    def timed(fn):
        def run(*a, **k):  # outermost call only: the store's upsert may call its own optimize
            clock["depth"] += 1
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                clock["depth"] -= 1
                if clock["depth"] == 0:
                    clock["store"] += time.perf_counter() - t

        return run

    t0 = time.perf_counter()
    store = _open(folder, store_name)
    for name in ("create", "upsert", "optimize"):
        setattr(store, name, timed(getattr(store, name)))
    index = ChunkIndex(store, "scale")
    index.ensure("scale-generator", "0" * 16, base["windows"].shape[1], small_dim=SMALL, lexical=lexical)
    for start, win in _blocks(base, n, args.noise):
        for s in range(0, len(win), 256):
            part = win[s : s + 256]
            ids = range(start + s, start + s + len(part))
            chunks = [Chunk(id=_chunk_id(i), text=f"{texts[i % len(texts)]} (part {i})", doc_id=f"doc-{i // 20}",
                            source=f"doc-{i // 20}.pdf") for i in ids]
            index.write(chunks, part[:, 0], list(part), [[(0, 256)] * WINDOWS] * len(part))
    index.optimize()
    ingest_wall_s = time.perf_counter() - t0
    ingest_s = clock["store"]
    count = index.count()
    index.store.close()

    t0 = time.perf_counter()
    store = _open(folder, store_name)
    index = ChunkIndex(store, "scale")
    index.count()
    reopen_s = time.perf_counter() - t0

    modes, top_ids = {}, {}
    for name, (mode, two_stage) in MODES.items():
        if mode in ("hybrid", "sparse") and not lexical:
            continue
        index.search(queries[0], top_k=TOP_K, mode=mode, two_stage=two_stage, query_text=query_texts[0])  # warm
        lat, ids = [], []
        for q, qt in zip(queries, query_texts):
            t = time.perf_counter()
            hits = index.search(q, top_k=TOP_K, mode=mode, two_stage=two_stage, query_text=qt)
            lat.append((time.perf_counter() - t) * 1000)
            ids.append([h.id for h in hits])
        modes[name] = latency_ms(lat)
        top_ids[name] = ids
    index.store.close()
    # disk: blocks allocated, as `du` counts them; the engines preallocate sparse files (Edge's
    # vector chunks are 32 MB each), whose apparent size overstates what the disk holds
    files = [p.stat() for p in folder.rglob("*") if p.is_file()]
    disk, apparent = sum(f.st_blocks * 512 for f in files), sum(f.st_size for f in files)
    shutil.rmtree(folder, ignore_errors=True)
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    run = {
        "store": STORES[store_name],
        "lexical": lexical,
        "chunks": n,
        "points": count,
        "vectors": n * (2 + 2 * WINDOWS),
        "window_vectors": n * WINDOWS,
        "ingest_s": round(ingest_s, 2),
        "ingest_points_per_s": round(n / ingest_s, 1),
        "ingest_wall_s": round(ingest_wall_s, 2),
        "query_p50_ms": modes["windows"]["p50_ms"],
        "query_p95_ms": modes["windows"]["p95_ms"],
        "modes": modes,
        "reopen_s": round(reopen_s, 3),
        "peak_rss_gib": round(rss_gib, 3),
        "disk_mb": round(disk / 2**20, 1),
        "disk_apparent_mb": round(apparent / 2**20, 1),
        "top_ids": top_ids,
    }
    args.result.write_text(json.dumps(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
