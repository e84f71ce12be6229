"""Speed and quality of every form of a tuned model: ``python eval/speed.py --model DIR --out FILE.json``.

For the model (default: the T1 model ``eval/run.py T1`` trained) and each form
``ragtune export`` writes (ONNX fp32 / int8, OpenVINO fp32 / int8 calibrated on
the Uber corpus), in one process, one after another on the same machine:

- quality on the Uber set (881 questions, 410 chunks): nDCG@10 and hit@5,
  plain (first 256 tokens) and best-window, by ragtune's evaluation loop;
- documents per second at 256 tokens (the corpus's windows, batch 64);
- single-query latency p50 / p95 over the questions (one text per call);
- load time and size on disk.

Every timing is a ratio to torch fp32 measured in the same run; the machine
(CPU model and flags) is recorded beside them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import require

from ragtune import console, progress

FORMS = ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8", "static")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=Path(__file__).resolve().parent / "work" / "t1_model")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--forms", default=",".join(FORMS), help=f"comma-separated, from {', '.join(FORMS)}")
    ap.add_argument("--queries", type=int, default=200, help="single-query latency sample")
    ap.add_argument(
        "--static-positive", choices=("window", "chunk", "both"), default="both",
        help="static: what the offline pairs from the Uber PDF (its training data) point at",
    )
    ap.add_argument("--server", action="store_true",
                    help="also load-test `ragtune serve` on torch and on the fastest int8 form (eval/load_server.py)")
    ap.add_argument("--infinity", help="infinity_emb executable: the anchor served the same folder under the same load")
    ap.add_argument("--requests", type=int, default=200, help="server: requests per (variant, clients) level")
    args = ap.parse_args(argv)
    with progress.use(console.display()):
        result = run(args)
    from ragtune._io import write_json

    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


def run(args: argparse.Namespace) -> dict:
    from ragtune.encoders.export import export_model
    from ragtune.evaluation import load_llamaindex
    from ragtune.machine import machine_info, package_versions

    if not (args.model / "config.json").exists() and not (args.model / "modules.json").exists():
        print(f"SKIPPED: {args.model} is not a model folder (train one with eval/run.py T1)", file=sys.stderr)
        sys.exit(0)
    ds = load_llamaindex(require("tenk", "uber_val_pairs.json"))
    corpus = list(ds.corpus.values())
    forms = [f.strip() for f in args.forms.split(",") if f.strip()]
    exports: dict[str, Path] = {}
    extra: dict[str, dict] = {}
    for form in forms:
        t0 = time.perf_counter()
        if form == "static":
            exports[form] = _static_student(args, extra)
        elif form != "torch":
            exports[form] = export_model(args.model, form, calibration=corpus)
        if form != "torch":
            print(f"  exported {form} in {time.perf_counter() - t0:.1f} s", flush=True)

    from ragtune.evaluation.speed import measure_forms

    runs = measure_forms(args.model, forms, ds, paths=exports, queries=args.queries)
    for row in runs:
        row.update(extra.get(row["form"], {}))
        print(
            f"  {row['form']:<14} {row['docs_per_s']:>7.1f} docs/s  p50 {row['query_p50_ms']:>6.2f} ms  "
            f"nDCG@10 plain {row['plain']['ndcg@10']:.3f} windows {row['windows']['ndcg@10']:.3f}  "
            f"{row['size_mb']} MB", flush=True,
        )
    servers = _servers(args, runs, exports) if args.server else None
    return {
        "benchmark": "speed",
        "command": "python " + " ".join(sys.argv),
        "model": str(args.model),
        "dataset": {"name": "uber_val_pairs", "queries": len(ds.queries), "chunks": len(corpus), "windows": runs[0]["texts_encoded"] if runs else 0},
        "runs": runs,
        **({"server": servers} if servers else {}),
        "machine": machine_info(),
        "versions": package_versions(),
    }


def _servers(args: argparse.Namespace, runs: list[dict], exports: dict[str, Path]) -> dict:
    """``ragtune serve`` on torch, then on the fastest int8 form, then infinity-emb: one load each."""
    import secrets

    import load_server as ls

    int8 = [r for r in runs if r["form"].endswith("-int8")]
    fastest = max(int8, key=lambda r: r["docs_per_s"])["form"] if int8 else None
    texts = [ls.sentence(50_000_000 + i) for i in range(32)]
    out = []
    for backend, file in [("torch", None)] + ([(fastest.split("-")[0], exports[fastest])] if fastest else []):
        largs = ls.parse_args(["--model", str(args.model), "--backend", backend, "--requests", str(args.requests)]
                              + (["--backend-file", str(file)] if file else []))
        ref = ls.reference_vectors(largs, texts)
        key, port = secrets.token_urlsafe(16), ls.free_port()
        out.append(ls.bench(ls.ragtune_server(largs, port, key), f"http://{ls.HOST}:{port}", key, largs, ref))
    if args.infinity:
        key, port = secrets.token_urlsafe(16), ls.free_port()
        largs = ls.parse_args(["--model", str(args.model), "--requests", str(args.requests)])
        ref = ls.reference_vectors(largs, texts)
        folder = Path(tempfile.mkdtemp()) / "model"  # the same weights, linked, in a 3.x layout
        out.append(ls.bench(ls.infinity_server(args.infinity, str(args.model), port, key, folder),
                            f"http://{ls.HOST}:{port}", key, largs, ref))
    return {"requests_per_level": args.requests, "fastest_int8": fastest, "servers": out}


def _static_student(args: argparse.Namespace, extra: dict[str, dict]) -> Path:
    """The static student of the model: distilled, then tuned on offline pairs from the Uber PDF."""
    from ragtune.corpus.reader import load_corpus
    from ragtune.encoders.encoder import Encoder
    from ragtune.encoders.loading import load_model
    from ragtune.pairs import GenerationConfig, generate_pairs
    from ragtune.train.static import StaticSettings, distill_static

    enc = Encoder(load_model(args.model))
    gen = generate_pairs(
        load_corpus(require("tenk", "uber_2021.pdf")).chunks, enc.tokenizer, enc.window_spec(),
        GenerationConfig(val_fraction=0.0, positive=args.static_positive), encoder=enc,
    )
    out = args.model.with_name(args.model.name + "-static")
    t0 = time.perf_counter()
    distill_static(args.model, gen.pairs, out, StaticSettings())
    extra["static"] = {
        "train_pairs": len(gen.pairs), "positive": args.static_positive, "build_s": round(time.perf_counter() - t0, 1),
        "settings": StaticSettings().__dict__,
    }
    return out


if __name__ == "__main__":
    raise SystemExit(main())
