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
    args = ap.parse_args(argv)
    with progress.use(console.display()):
        result = run(args)
    from ragtune._io import write_json

    write_json(args.out, result)
    print(f"wrote {args.out}")
    return 0


def run(args: argparse.Namespace) -> dict:
    import numpy as np

    from ragtune.backends import backend_of, export_model
    from ragtune.evaluation import evaluate_models, load_llamaindex
    from ragtune.machine import machine_info, package_versions
    from ragtune.models import Encoder, load_model

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

    # the windows a best-window index embeds: what "docs/s at 256 tokens" encodes
    from ragtune.windows import batch_window_spans

    windows_probe = Encoder(load_model(args.model))
    all_spans = batch_window_spans(corpus, windows_probe.tokenizer, windows_probe.window_spec())
    windows = [text[a:b] for text, sp in zip(corpus, all_spans) for a, b in sp]
    queries = [ds.queries[q] for q in sorted(ds.queries)][: args.queries]

    runs = []
    for form in forms:
        backend = backend_of(form) if form != "torch" else "torch"
        t0 = time.perf_counter()
        if form == "static":
            model = load_model(exports[form])
        else:
            model = load_model(args.model, backend=backend, file=exports.get(form))
        load_s = time.perf_counter() - t0
        enc = Encoder(model, batch_size=64)
        enc.encode_documents(windows[:64])  # warm-up: first-call allocations and kernel selection
        t0 = time.perf_counter()
        enc.encode_documents(windows)
        docs_s = len(windows) / (time.perf_counter() - t0)
        lat = []
        for q in queries:
            t1 = time.perf_counter()
            enc.encode_queries([q])
            lat.append((time.perf_counter() - t1) * 1000)
        quality = evaluate_models(ds, {form: enc}, dims=None, long_chunks=True)
        weights = exports[form] if form == "static" else args.model
        size = exports[form].stat().st_size if form in exports and form != "static" else sum(
            f.stat().st_size for f in weights.glob("*.safetensors")
        )
        if form in exports and exports[form].suffix == ".xml":
            size += exports[form].with_suffix(".bin").stat().st_size
        row = {
            "form": form,
            "file": "model-static/" if form == "static" else str(exports[form].relative_to(args.model)) if form in exports else "model.safetensors",
            "load_s": round(load_s, 2),
            "docs_per_s": round(docs_s, 1),
            "query_p50_ms": round(float(np.percentile(lat, 50)), 2),
            "query_p95_ms": round(float(np.percentile(lat, 95)), 2),
            "size_mb": round(size / 2**20, 1),
            **extra.get(form, {}),
            "plain": {k: quality[form].metrics[str(enc.dimension)][k] for k in ("ndcg@10", "hit@5")},
            "windows": {k: quality[f"{form}+long"].metrics[str(enc.dimension)][k] for k in ("ndcg@10", "hit@5")},
        }
        runs.append(row)
        print(
            f"  {form:<14} {row['docs_per_s']:>7.1f} docs/s  p50 {row['query_p50_ms']:>6.2f} ms  "
            f"nDCG@10 plain {row['plain']['ndcg@10']:.3f} windows {row['windows']['ndcg@10']:.3f}  "
            f"{row['size_mb']} MB", flush=True,
        )
    torch_row = next((r for r in runs if r["form"] == "torch"), None)
    if torch_row:
        for r in runs:
            r["x_torch_docs_per_s"] = round(r["docs_per_s"] / torch_row["docs_per_s"], 2)
            r["ndcg_delta_plain"] = round(r["plain"]["ndcg@10"] - torch_row["plain"]["ndcg@10"], 4)
            r["ndcg_delta_windows"] = round(r["windows"]["ndcg@10"] - torch_row["windows"]["ndcg@10"], 4)
    return {
        "benchmark": "speed",
        "command": "python " + " ".join(sys.argv),
        "model": str(args.model),
        "dataset": {"name": "uber_val_pairs", "queries": len(ds.queries), "chunks": len(corpus), "windows": len(windows)},
        "runs": runs,
        "machine": machine_info(),
        "versions": package_versions(),
    }


def _static_student(args: argparse.Namespace, extra: dict[str, dict]) -> Path:
    """The static student of the model: distilled, then tuned on offline pairs from the Uber PDF."""
    from ragtune.corpus import load_corpus
    from ragtune.models import Encoder, load_model
    from ragtune.pairs import GenerationConfig, generate_pairs
    from ragtune.static import StaticSettings, distill_static

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
