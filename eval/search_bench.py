"""Search through Qdrant on the Uber set: quality and latency per search mode.

``python eval/search_bench.py --out search.json [--tuned MODEL_DIR]``

For the base model (and a tuned one) the 410 Uber chunks are indexed into an
embedded on-disk Qdrant collection with plain, window and small (64-dim)
vectors; all 881 questions are then searched in four modes — plain full-dim,
plain two-stage (64 → 384), windows (best window, long-chunk) and windows
two-stage — and hit@5 / nDCG@10 (through ranx) and per-query search latency
(p50/p95, query encoding excluded and reported apart) are written to one JSON.
Unlike the protocols in ``run.py`` this measures the index, not exact search.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import latency_ms, require

MODES = {
    "plain": dict(mode="plain", two_stage=False),
    "plain_two_stage": dict(mode="plain", two_stage=True),
    "windows": dict(mode="windows", two_stage=False),
    "windows_two_stage": dict(mode="windows", two_stage=True),
}


def bench_model(label: str, model_path: str | None, ds, workdir: Path, top_k: int, candidates: int) -> dict:
    from ragtune.corpus.reader import Chunk
    from ragtune.encoders.encoder import Encoder
    from ragtune.encoders.loading import load_model
    from ragtune.evaluation import compute_metrics
    from ragtune.index.chunk_index import connect, open_for_model

    st = load_model(model_path)
    enc = Encoder(st)
    client = connect(workdir / f"qdrant_{label}")
    chunks = [Chunk(id=cid, text=text, doc_id=cid, source="uber") for cid, text in ds.corpus.items()]
    t0 = time.perf_counter()
    idx = open_for_model(client, "uber", st, label, small_dim=64)
    idx.upsert(chunks, enc)
    index_s = time.perf_counter() - t0
    qids = sorted(ds.queries)
    t0 = time.perf_counter()
    qvecs = enc.encode_queries([ds.queries[q] for q in qids])
    encode_ms = (time.perf_counter() - t0) / len(qids) * 1000
    out = {"index_s": round(index_s, 2), "query_encode_ms_mean": round(encode_ms, 3), "points": idx.count(), "modes": {}}
    for name, kw in MODES.items():
        lat, results = [], {}
        for qid, vec in zip(qids, qvecs):
            t0 = time.perf_counter()
            hits = idx.search(vec, top_k=max(top_k, 10), candidates=candidates, **kw)
            lat.append((time.perf_counter() - t0) * 1000)
            results[qid] = [(h.id, h.score) for h in hits]
        means, _ = compute_metrics(ds.relevant, results, ["hit@5", "ndcg@10", "mrr@10"])
        out["modes"][name] = {
            **{k: round(v, 4) for k, v in means.items()},
            **latency_ms(lat),
        }
        print(f"  {label:<6} {name:<18} hit@5 {means['hit@5']:.3f}  ndcg@10 {means['ndcg@10']:.3f}  "
              f"p50 {out['modes'][name]['p50_ms']:.1f} ms  p95 {out['modes'][name]['p95_ms']:.1f} ms", flush=True)
    for name in ("plain", "windows"):
        full, two = out["modes"][name]["hit@5"], out["modes"][f"{name}_two_stage"]["hit@5"]
        out[f"{name}_two_stage_keeps"] = round(two / full, 4) if full else None
    client.close()
    return out


def main(argv: list[str] | None = None) -> int:

    from ragtune._io import write_json
    from ragtune.evaluation import load_llamaindex
    from ragtune.machine import machine_info, package_versions

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--base", default=None)
    ap.add_argument("--tuned", default=None, help="Tuned model folder (default: eval/work/t1_model if present).")
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--candidates", type=int, default=100, help="Two-stage: candidates taken from the 64-dim vectors.")
    args = ap.parse_args(argv)
    ds = load_llamaindex(require("tenk", "uber_val_pairs.json"))
    tuned = args.tuned or (str(Path(__file__).parent / "work" / "t1_model") if (Path(__file__).parent / "work" / "t1_model").exists() else None)
    result = {"protocol": "search", "dataset": ds.name, "queries": len(ds.queries), "candidates": args.candidates, "models": {}, "metrics": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for label, path in (("base", args.base), ("tuned", tuned)):
            if label == "tuned" and path is None:
                print("  no tuned model (pass --tuned or run T1 first): base only", flush=True)
                continue
            r = bench_model(label, path, ds, Path(tmp), args.top_k, args.candidates)
            result["models"][label] = r
            result["metrics"][label] = {"384": {k: v for k, v in r["modes"]["plain"].items() if "@" in k}}
            result["metrics"][f"{label}+long"] = {"384": {k: v for k, v in r["modes"]["windows"].items() if "@" in k}}
    result["machine"] = machine_info()
    result["versions"] = package_versions()
    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
