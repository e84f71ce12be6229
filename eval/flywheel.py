"""Protocol F, learning from served queries: ``python eval/flywheel.py --out eval/results/flywheel.json``.

1. Tune on the Uber PDF exactly as protocol A does (offline pairs, the held-out
   split ``ragtune run`` keeps, fusion weight fitted on it): the
   **synthetic-only** model, labelled ``synthetic``.
2. Split the 881 Uber questions in two halves *by chunk* (no chunk's questions
   on both sides). Index the Uber corpus with the synthetic model and run the
   real ``ragtune serve --log-queries`` on 127.0.0.1; send the first half's
   questions to ``/v1/search`` (their labels are never used).
3. Pseudo-label the log with :func:`ragtune.pairs.served.label_served_queries`
   (what ``ragtune run --queries`` runs: the served model's best-window ranking
   and BM25 must agree on the top chunk) and train the synthetic model further on
   the served pairs with :func:`ragtune.train.served.train_on_served` (what
   ``ragtune run --queries`` runs next): the **logs-tuned** model, ``tuned``.
4. Evaluate ``base``, ``synthetic`` and ``tuned`` on the second half with the
   true labels — plain, best window (``+long``) and ragtune's default search
   (``+hybrid``, each at its fitted weight) — with paired bootstrap CIs of
   ``tuned − synthetic``; check the pseudo-labels against the hidden labels (for
   the report only); and run the dbpedia-5k guard on the logs-tuned model.

Exits with ``SKIPPED:`` when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import random
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402
from common import Bench, parse_overrides, require  # noqa: E402
from load_server import HOST, Server, free_port, start_server, wait_ready  # noqa: E402

from ragtune import console, progress  # noqa: E402


def split_by_chunk(ds: Any, seed: int = 0) -> tuple[Any, Any]:
    """Two halves of a labelled set, no relevant chunk shared: (served half, held-out half)."""
    from ragtune.evaluation.datasets import RetrievalDataset

    chunks = sorted({d for rel in ds.relevant.values() for d in rel})
    random.Random(seed).shuffle(chunks)
    first = set(chunks[: len(chunks) // 2])
    halves = []
    for side, name in ((True, "served half"), (False, "held-out half")):
        qids = [q for q, rel in ds.relevant.items() if all((d in first) == side for d in rel)]
        halves.append(RetrievalDataset(
            name=f"{ds.name} ({name})", queries={q: ds.queries[q] for q in qids}, corpus=ds.corpus,
            relevant={q: ds.relevant[q] for q in qids}, kind=ds.kind, source=ds.source,
        ))
    return halves[0], halves[1]


def serve_and_log(model: Path, corpus: dict[str, str], questions: list[str], workdir: Path, bench: Bench) -> Path:
    """Index ``corpus`` with ``model``, run ``ragtune serve --log-queries`` and send each question once."""
    folder = workdir / "f_corpus"
    folder.mkdir(parents=True, exist_ok=True)
    for cid, text in corpus.items():
        (folder / f"{cid}.txt").write_text(text, encoding="utf-8")
    store, logs = workdir / "f_store", workdir / "f_logs"
    for old in logs.glob("queries.jsonl*") if logs.exists() else []:
        old.unlink()  # a re-run logs afresh: the questions are sent once
    exe = [shutil.which("ragtune", path=str(Path(sys.executable).parent)) or "ragtune"]
    with bench.timed("index_s"):
        subprocess.run([*exe, "-q", "index", str(folder), "--model", str(model), "--store", str(store),
                        "--collection", "uber", "--replace"], check=True)
    port = free_port()
    key = secrets.token_urlsafe(16)
    cmd = [*exe, "-q", "serve", "--model", str(model), "--store", str(store), "--collection", "uber",
           "--host", HOST, "--port", str(port), "--api-key", key, "--log-queries", str(logs),
           "--log-level", "warning"]
    proc = start_server(Server("ragtune serve", cmd))
    url = f"http://{HOST}:{port}"
    try:
        wait_ready(proc, url, timeout=300)
        with bench.timed("serve_s"), httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                                  timeout=120) as client:
            for q in questions:
                r = client.post("/v1/search", json={"query": q, "top_k": 5})
                r.raise_for_status()
    finally:
        proc.terminate()
        proc.wait(60)
    bench.extra["served_requests"] = len(questions)
    print(f"  served {len(questions)} questions through ragtune serve in {bench.timings['serve_s']:.1f} s", flush=True)
    return logs


def pseudo_label(logs: Path, ds: Any, served: Any, judge: Path, alpha: float, bench: Bench):
    """``label_served_queries`` on the log as ``ragtune run --queries`` runs it (the served model at its
    fitted weight judges), checked against the hidden labels."""
    from ragtune.corpus.reader import Chunk
    from ragtune.encoders.encoder import Encoder
    from ragtune.pairs.querylog import read_query_log
    from ragtune.pairs.served import ServedConfig, label_served_queries
    from ragtune.pairs.text import normalize_query

    chunks = [Chunk(id=cid, text=text, doc_id=cid, source=ds.source) for cid, text in ds.corpus.items()]
    encoder = Encoder(str(judge))
    with bench.timed("label_s"):
        result = label_served_queries(read_query_log(logs), chunks, encoder, encoder.window_spec(),
                                      ServedConfig(alpha=alpha))
    truth = {normalize_query(served.queries[q]): set(rel) for q, rel in served.relevant.items()}
    right = sum(p.positive_id in truth.get(normalize_query(p.query), ()) for p in result.pairs)
    bench.extra["served"] = result.record() | {
        "pseudo_labels_right": right,
        "pseudo_label_precision": round(right / len(result.pairs), 4) if result.pairs else None,
        "questions_labelled_share": round(len(result.pairs) / max(1, len(served.queries)), 4),
    }
    print(f"  pseudo-labelled {len(result.pairs)} of {len(served.queries)} served questions; "
          f"{right} agree with the hidden labels", flush=True)
    return result.pairs


def retag(bench: Bench, label: str) -> None:
    """``run._train`` records under ``tuned`` / ``train_s``: file the model just trained under ``label``."""
    bench.timings[f"train_{label}_s"] = bench.timings.pop("train_s")
    bench.extra[f"training_{label}"] = bench.extra.pop("training")
    bench.models[label] = bench.models.pop("tuned")


def guard(model: Path, base: str | None, fusion: Any, bench: Bench) -> None:
    """dbpedia-5k: the logs-tuned model (plain and default search) against the base model."""
    from ragtune.evaluation import evaluate_models, load_beir
    from ragtune.evaluation.datasets import binary
    from ragtune.evaluation.evaluator import compare

    ds = binary(load_beir(require("dbpedia-5k")))
    with bench.timed("guard_s"):
        res = evaluate_models(ds, {"base": base, "tuned": str(model)}, [384], long_chunks=False,
                              hybrid={"tuned": fusion})
    bench.extra["guard_dbpedia"] = {
        "metrics": {label: r.metrics["384"] for label, r in res.items()},
        "comparison": {"tuned-base": compare(res["tuned"], res["base"])["384"]},
    }
    for label in ("base", "tuned", "tuned+hybrid"):
        print(f"  dbpedia-5k {label:<12} ndcg@10 {res[label].metrics['384']['ndcg@10']:.3f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--workdir", type=Path, default=HERE / "work")
    ap.add_argument("--base", default=None, help="Base model (default: bundled all-MiniLM-L6-v2).")
    ap.add_argument("--train", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides for both models.")
    ap.add_argument("--seed", type=int, default=0, help="Seed of the by-chunk split.")
    ap.add_argument("--synthetic", type=Path, default=None,
                    help="A synthetic-only model this script trained before with the same settings: reuse it.")
    args = ap.parse_args(argv)
    from ragtune.encoders.loading import model_label
    from ragtune.evaluation import load_llamaindex
    from ragtune.evaluation.datasets import from_pairs
    from ragtune.evaluation.evaluator import compare
    from ragtune.index.fusion import write_hybrid

    uber = load_llamaindex(require("tenk", "uber_val_pairs.json"))
    require("dbpedia-5k")
    args.workdir.mkdir(parents=True, exist_ok=True)
    # protocol A's settings, as eval/hybrid.py runs it
    a = run.build_parser().parse_args(["A", "--out", str(args.out), "--workdir", str(args.workdir), "--hybrid",
                                       "--val-fraction", "0.15", "--dims", "384",
                                       *(["--base", args.base] if args.base else []),
                                       *(["--train", *args.train] if args.train else [])])
    bench = Bench("F")
    t0 = time.perf_counter()
    print("protocol F", flush=True)
    with progress.use(console.display()):
        corpus, gen, synthetic = run.generate_and_train(a, bench, "uber_2021.pdf", "f_synthetic_model", args.synthetic)
        retag(bench, "synthetic")
        held_out = from_pairs(gen.pairs, corpus.chunks, split="val", name="held-out generated pairs")
        bench.fit({"base": args.base, "synthetic": str(synthetic)}, held_out)
        fits, fit_s = dict(bench.extra["hybrid"]), bench.timings["fit_hybrid_s"]
        write_hybrid(synthetic, bench.fusions["synthetic"])  # the served model searches at its fitted weight

        served_ds, test_ds = split_by_chunk(uber, args.seed)
        bench.extra["split"] = {
            "seed": args.seed, "by": "relevant chunk",
            "served_questions": len(served_ds.queries), "held_out_questions": len(test_ds.queries),
            "served_chunks": len({d for r in served_ds.relevant.values() for d in r}),
            "held_out_chunks": len({d for r in test_ds.relevant.values() for d in r}),
        }
        logs = serve_and_log(synthetic, uber.corpus, list(served_ds.queries.values()), args.workdir, bench)
        served_pairs = pseudo_label(logs, uber, served_ds, synthetic, bench.fusions["synthetic"].alpha, bench)

        tuned = run._train(served_pairs, args.workdir / "f_logs_model", parse_overrides(args.train), bench, args.base,
                           start=synthetic)
        retag(bench, "tuned")
        bench.models["tuned"] += " (the synthetic model trained further on the served pairs)"
        bench.extra["pairs_by_source"] = {"synthetic": sum(p.split != "val" for p in gen.pairs),
                                          "served": len(served_pairs)}
        bench.fit({"tuned": str(tuned)}, held_out)
        bench.extra["hybrid"] = fits | bench.extra["hybrid"]
        bench.timings["fit_hybrid_s"] = round(fit_s + bench.timings["fit_hybrid_s"], 2)
        write_hybrid(tuned, bench.fusions["tuned"])

        bench.models.setdefault("base", model_label(args.base))
        print(f"  held-out half: {len(test_ds.queries)} questions", flush=True)
        bench.evaluate(test_ds, {"base": args.base, "synthetic": str(synthetic), "tuned": str(tuned)}, [384],
                       long_chunks=True, lexical=True)
        bench.extra["flywheel"] = {
            f"{t}-{s}": compare(bench.results[t], bench.results[s])["384"]
            for t, s in (("tuned", "synthetic"), ("tuned+long", "synthetic+long"),
                         ("tuned+hybrid", "synthetic+hybrid"), ("synthetic+hybrid", "bm25"))
        }
        for key, comp in bench.extra["flywheel"].items():
            d = comp["ndcg@10"]
            print(f"  {key:<34} nDCG@10 {d['mean_diff']:+.4f}  95% CI [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]",
                  flush=True)
        guard(tuned, args.base, bench.fusions["tuned"], bench)
    bench.timings["total_s"] = round(time.perf_counter() - t0, 2)
    bench.write(args.out, test_ds)
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
