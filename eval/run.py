"""Benchmarks of ../shared/BENCHMARK.md: ``python eval/run.py PROTOCOL --out FILE.json``.

PROTOCOL is one of
  T1      train on the given Lyft pairs, evaluate on the 881 Uber questions
          (ragtune's default trainer; the anchor too when it is installed);
  T2      pairs generated offline from the Lyft PDF, evaluated on Uber;
  A       pairs generated offline from the Uber PDF itself, evaluated on Uber;
  G       the T1 (or --model) model on dbpedia-5k: does tuning hurt general retrieval?
  M       the T1 (or --model) model at 384/256/128/64 dims on Uber;
  anchor  LlamaIndex's deprecated SentenceTransformersFinetuneEngine on T1's data.

Scoring is exact search: ``base``/``tuned`` read each chunk's first 256 tokens
(plain); ``base+long``/``tuned+long`` score each chunk by its best window.
Trained models are kept under ``--workdir`` (default ``eval/work``) so that G
and M reuse the T1 model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import M_DIMS, Bench, parse_overrides, require

from ragtune import console, progress

PROTOCOLS = ("T1", "T2", "A", "G", "M", "anchor")


def _train(pairs, out_dir: Path, overrides: dict, bench: Bench, base: str | None, chunks=None, start: Path | None = None):
    """Train with ragtune's defaults (+ overrides); ``chunks``: texts of the corpus to be searched, if trained on.

    ``start``: a tuned model to train further on ``pairs`` (served-query pairs), as
    ``ragtune run --queries`` does (:func:`ragtune.train.served.train_on_served`).
    """
    from ragtune.config import build_config, merge
    from ragtune.train import TrainConfig, train
    from ragtune.train.served import train_on_served

    cfg = build_config(TrainConfig, merge({"base": base}, overrides))
    ckpt = out_dir.with_name(out_dir.name + ".ckpt")
    with bench.timed("train_s"):
        if start is not None:
            result = train_on_served(start, pairs, out_dir, cfg, checkpoint_dir=ckpt)
        else:
            result = train(pairs, out_dir, cfg, checkpoint_dir=ckpt, chunks=chunks)
    size = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())
    # the config as trained: the card's, with the defaults that follow the model resolved (learning rate)
    from ragtune.train.card import read_card

    used = read_card(out_dir).get("train") or cfg.to_dict()
    bench.extra["training"] = result.to_dict() | {"config": used, "size_on_disk_mb": round(size / 2**20, 2)}
    bench.models["tuned"] = str(out_dir)
    print(f"  trained {result.steps} steps on {result.train_pairs} pairs in {bench.timings['train_s']:.1f} s", flush=True)
    return out_dir


def _eval_uber(bench: Bench, tuned: Path | None, dims, long_chunks: bool, base: str | None, lexical: bool = False):
    from ragtune.encoders.loading import model_label
    from ragtune.evaluation import load_llamaindex

    ds = load_llamaindex(require("tenk", "uber_val_pairs.json"))
    bench.models.setdefault("base", model_label(base))
    models = {"base": base} if tuned is None else {"base": base, "tuned": str(tuned)}
    bench.evaluate(ds, models, dims, long_chunks, lexical=lexical)
    return ds


def _given_chunks(path: Path):
    """The corpus of a LlamaIndex dataset JSON as ragtune chunks."""
    from ragtune.corpus.reader import Chunk
    from ragtune.pairs.schema import read_llamaindex_json

    corpus = read_llamaindex_json(path)["corpus"]
    return [Chunk(id=cid, text=text, doc_id=path.name, source=str(path)) for cid, text in corpus.items()]


def _prepare_given_pairs(
    path: Path, base: str | None, repoint: str, bench: Bench, negatives: int = 0, negatives_from: str = "model"
):
    from ragtune.encoders.encoder import Encoder
    from ragtune.pairs import load_pairs
    from ragtune.pairs.negatives import mine_hard_negatives
    from ragtune.pairs.repoint import repoint_to_windows

    pairs = load_pairs(path)
    if repoint != "off":
        with bench.timed("repoint_s"):
            pairs = repoint_to_windows(pairs, Encoder(base), keep_original=repoint == "both")
    if negatives:
        with bench.timed("mine_s"):
            mined = mine_hard_negatives(
                pairs, _given_chunks(path), encoder=Encoder(base) if negatives_from != "bm25" else None,
                bm25=negatives_from != "model", num_negatives=negatives,
                negative_text="chunk" if repoint == "off" else "window",
            )
        pairs = mined.pairs
        bench.extra["mining"] = mined.record()
    return pairs


def _repeat_lexical_misses(pairs, chunks, times: int, bench: Bench):
    """``--lexical-misses N``: each training pair whose passage BM25 does not rank first, N more times.

    The experiment asks whether weighting training toward what BM25 misses makes
    the dense side add more to the fused retriever than copying BM25 does.
    """
    from ragtune.pairs.filters import BM25ChunkIndex

    if not times:
        return pairs
    index = BM25ChunkIndex(chunks)
    train = [p for p in pairs if p.split != "val"]
    scores = index.scores([p.query for p in train])
    misses = [p for p, row in zip(train, scores) if int(row.argmax()) != index.positions[p.positive_id]]
    bench.extra["lexical_misses"] = {"pairs": len(train), "missed_by_bm25": len(misses), "repeated": times}
    print(f"  {len(misses)} of {len(train)} training pairs are not BM25's first hit: repeated {times}x", flush=True)
    return list(pairs) + misses * times


def _searched_texts(args) -> list[str] | None:
    """``--summarize-on searched``: the Uber corpus texts (no questions) for the chunk-summary stage.

    Off by default for T1/T2, whose protocol tunes on Lyft data only; on, it
    measures the case of pairs from elsewhere plus the corpus you will search.
    """
    if args.summarize_on != "searched":
        return None
    from ragtune.pairs.schema import read_llamaindex_json

    return list(read_llamaindex_json(require("tenk", "uber_val_pairs.json"))["corpus"].values())


def _offline_from_given(path: Path, args, bench: Bench):
    """Offline pairs generated from the given pairs' own corpus (``--augment N``: at most N of them)."""
    from ragtune.encoders.encoder import Encoder
    from ragtune.pairs import GenerationConfig, generate_pairs

    enc = Encoder(args.base)
    with bench.timed("augment_s"):
        gen = generate_pairs(
            _given_chunks(path), enc.tokenizer, enc.window_spec(),
            GenerationConfig(val_fraction=0.0, max_pairs=args.augment, positive=args.positive), encoder=enc,
        )
    bench.extra["augment"] = {"pairs": len(gen.pairs), "positive": args.positive, "by_kind": gen.by_kind}
    return list(gen.pairs)


def protocol_t1(args, bench: Bench, anchor_too: bool = True):
    train_json = require("tenk", "lyft_train_pairs.json")
    pairs = _prepare_given_pairs(train_json, args.base, args.repoint, bench, args.negatives, args.negatives_from)
    if args.augment:
        pairs = pairs + _offline_from_given(train_json, args, bench)
    if args.lexical_misses:
        pairs = _repeat_lexical_misses(pairs, _given_chunks(train_json), args.lexical_misses, bench)
    bench.extra["train_pairs"] = len(pairs)
    tuned = _train(
        pairs, args.workdir / "t1_model", parse_overrides(args.train), bench, args.base, _searched_texts(args)
    )
    if args.lexical:
        _fit_t1(args, bench, tuned, train_json)
    ds = _eval_uber(bench, tuned, args.dims or M_DIMS, args.long, args.base, args.lexical)
    if anchor_too and not args.no_anchor:
        _anchor(args, bench, ds)
    return ds


def _fit_t1(args, bench: Bench, tuned: Path, train_json: Path) -> None:
    """T1's fusion weights: held-out questions the offline generator writes on the Lyft corpus.

    The given Lyft pairs all train the model, so the weight is fitted on other
    questions about the same corpus, none of them seen in training — the
    situation of ``ragtune run`` fitting on its held-out split.
    """
    from ragtune.encoders.encoder import Encoder
    from ragtune.evaluation.datasets import from_pairs
    from ragtune.index.fusion import write_hybrid
    from ragtune.pairs import GenerationConfig, generate_pairs

    chunks = _given_chunks(train_json)
    enc = Encoder(args.base)
    gen = generate_pairs(chunks, enc.tokenizer, enc.window_spec(),
                         GenerationConfig(val_fraction=0.0, max_pairs=300), encoder=enc)
    # every generated pair is held out from training here (T1 trains on the given pairs only)
    held_out = from_pairs(gen.pairs, chunks, split="train", name="offline questions on the Lyft corpus")
    bench.fit({"base": args.base, "tuned": str(tuned)}, held_out)
    write_hybrid(tuned, bench.fusions["tuned"])


def _anchor(args, bench: Bench, ds=None):
    import anchor

    from ragtune.encoders.loading import resolve_model
    from ragtune.evaluation import load_llamaindex

    if not anchor.available():
        print("  anchor skipped: pip install -r eval/requirements-anchor.txt", flush=True)
        return ds
    out = args.workdir / "anchor_model"
    secs = anchor.train_anchor(require("tenk", "lyft_train_pairs.json"), out, resolve_model(args.base))
    bench.timings["anchor_train_s"] = round(secs, 2)
    bench.models["anchor"] = "llama-index-finetuning SentenceTransformersFinetuneEngine (MNRL, batch 10, 2 epochs)"
    print(f"  anchor trained in {secs:.1f} s", flush=True)
    ds = ds or load_llamaindex(require("tenk", "uber_val_pairs.json"))
    bench.evaluate(ds, {"anchor": str(out)}, args.dims or [384])
    if "train_s" in bench.timings:
        bench.extra["time_ratio_vs_anchor"] = round(bench.timings["train_s"] / secs, 3)
    return ds


def protocol_generated(args, bench: Bench, pdf: str):
    corpus, gen, tuned = generate_and_train(args, bench, pdf, f"{bench.protocol.lower()}_model")
    if args.lexical and any(p.split == "val" for p in gen.pairs):
        # as `ragtune run` does: the fusion weights fitted on the held-out generated pairs
        from ragtune.evaluation.datasets import from_pairs
        from ragtune.index.fusion import write_hybrid

        bench.fit({"base": args.base, "tuned": str(tuned)},
                  from_pairs(gen.pairs, corpus.chunks, split="val", name="held-out generated pairs"))
        write_hybrid(tuned, bench.fusions["tuned"])
    return _eval_uber(bench, tuned, args.dims or M_DIMS, args.long, args.base, args.lexical)


def generate_and_train(args, bench: Bench, pdf: str, model_name: str, reuse: Path | None = None):
    """T2/A's first half: offline pairs from ``pdf``, then a model trained on them under ``--workdir``.

    Returns ``(corpus, generation, model folder)``; protocol F (``eval/flywheel.py``) reuses it.
    ``reuse``: a model this function trained before with the same settings (its card's record
    is filed as the training; the pairs are generated again, deterministically).
    """
    from ragtune.corpus.reader import load_corpus
    from ragtune.encoders.encoder import Encoder
    from ragtune.pairs import GenerationConfig, OfflineConfig, generate_pairs

    path = require("tenk", pdf)
    with bench.timed("generate_s"):
        corpus = load_corpus(path)
        enc = Encoder(args.base)
        gen = generate_pairs(
            corpus.chunks,
            enc.tokenizer,
            enc.window_spec(),
            GenerationConfig(
                offline=OfflineConfig(kinds=tuple(args.kinds.split(","))) if args.kinds else OfflineConfig(),
                val_fraction=args.val_fraction,
                max_pairs=args.max_pairs,
                positive=args.positive,
                negatives=args.negatives,
                negatives_from=args.negatives_from,
                round_trip=args.round_trip,
                round_trip_k=args.round_trip_k,
            ),
            encoder=enc,
        )
    bench.extra["pairs"] = {
        "chunks": len(corpus.chunks),
        "generated": gen.generated,
        "kept": len(gen.pairs),
        "dropped": gen.dropped,
        "by_kind": gen.by_kind,
        "pairs_per_s": round(len(gen.pairs) / bench.timings["generate_s"], 1),
    }
    print(f"  generated {len(gen.pairs)} pairs from {len(corpus.chunks)} chunks in {bench.timings['generate_s']:.1f} s", flush=True)
    if reuse is not None:
        from ragtune.train.card import read_card

        card = read_card(reuse)
        bench.timings["train_s"] = card["result"]["seconds"]
        bench.extra["training"] = card["result"] | {"config": card["train"], "reused": str(reuse)}
        bench.models["tuned"] = str(reuse)
        print(f"  reusing {reuse} (trained {card['result']['steps']} steps on {card['result']['train_pairs']} pairs)", flush=True)
        return corpus, gen, Path(reuse)
    # A tunes on the corpus it then searches (what `ragtune run` does), so training
    # gets its chunks; T2 searches Uber after tuning on Lyft: nothing to summarize
    searched = [c.text for c in corpus.chunks] if pdf == "uber_2021.pdf" else _searched_texts(args)
    pairs = _repeat_lexical_misses(gen.pairs, corpus.chunks, args.lexical_misses, bench)
    tuned = _train(pairs, args.workdir / model_name, parse_overrides(args.train), bench, args.base, searched)
    return corpus, gen, tuned


def _t1_model(args, bench: Bench) -> Path:
    if args.model:
        return Path(args.model)
    model = args.workdir / "t1_model"
    if not (model / "ragtune.json").exists():
        print("  no T1 model yet: training it first", flush=True)
        pairs = _prepare_given_pairs(
            require("tenk", "lyft_train_pairs.json"), args.base, args.repoint, bench, args.negatives
        )
        _train(pairs, model, parse_overrides(args.train), bench, args.base)
    bench.models["tuned"] = str(model)
    return model


def protocol_g(args, bench: Bench):
    from ragtune.encoders.loading import model_label
    from ragtune.evaluation import compute_metrics, load_beir
    from ragtune.evaluation.datasets import binary

    graded = load_beir(require("dbpedia-5k"))
    ds = binary(graded)
    model = _t1_model(args, bench)
    bench.models.setdefault("base", model_label(args.base))
    # binary relevance, as sentence-transformers' evaluator (and the thresholds in
    # BENCHMARK.md) score it; the graded nDCG@10 (trec_eval's) goes beside it
    if args.lexical:
        from ragtune.index.fusion import read_hybrid

        # the tuned model's own fitted weight (written by its A/T1 run); the base model gets the default
        bench.fusions["tuned"] = read_hybrid(model)
        bench.extra["hybrid"] = {"tuned": bench.fusions["tuned"].to_json()}
    results = bench.evaluate(ds, {"base": args.base, "tuned": str(model)}, [384], lexical=args.lexical)
    base, tuned = results["base"], results["tuned"]
    bench.extra["graded_ndcg@10"] = {
        label: compute_metrics(graded.relevant, {q: r for q, r in res.rankings["384"].items()}, ["ndcg@10"])[0]["ndcg@10"]
        for label, res in (("base", base), ("tuned", tuned))
    }
    print(f"  graded nDCG@10: {bench.extra['graded_ndcg@10']}", flush=True)
    return ds


def protocol_m(args, bench: Bench):
    model = _t1_model(args, bench)
    ds = _eval_uber(bench, model, M_DIMS, False, args.base)
    full = bench.metrics["tuned"]["384"]["ndcg@10"]
    bench.extra["retention"] = {d: round(bench.metrics["tuned"][d]["ndcg@10"] / full, 4) for d in bench.metrics["tuned"]}
    bench.extra["above_base_384"] = {d: bench.metrics["tuned"][d]["ndcg@10"] > bench.metrics["base"]["384"]["ndcg@10"] for d in bench.metrics["tuned"]}
    print(f"  nDCG@10 retention vs 384: {bench.extra['retention']}", flush=True)
    return ds


def protocol_anchor(args, bench: Bench):
    from ragtune.encoders.loading import model_label
    from ragtune.evaluation import load_llamaindex

    ds = load_llamaindex(require("tenk", "uber_val_pairs.json"))
    bench.models["base"] = model_label(args.base)
    bench.evaluate(ds, {"base": args.base}, args.dims or [384])
    return _anchor(args, bench, ds)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``eval/run.py`` (protocol F builds its A half from it)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("protocol", choices=PROTOCOLS)
    ap.add_argument("--out", type=Path, required=True, help="Result JSON to write (a report folder goes beside it).")
    ap.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent / "work")
    ap.add_argument("--base", default=None, help="Base model (default: bundled all-MiniLM-L6-v2).")
    ap.add_argument("--model", default=None, help="G/M: evaluate this model instead of the T1 model.")
    ap.add_argument("--train", nargs="*", default=[], metavar="KEY=VALUE", help="TrainConfig overrides, e.g. epochs=2 learning_rate=1e-4")
    ap.add_argument("--repoint", choices=("off", "window", "both"), default="off", help="T1: point given pairs at their best window.")
    ap.add_argument("--max-pairs", type=int, default=None)
    ap.add_argument("--positive", choices=("window", "chunk", "both"), default="window", help="T2/A: what generated pairs point at.")
    ap.add_argument("--negatives", type=int, default=0, help="Hard negatives mined per pair (T1: from the given corpus).")
    ap.add_argument("--negatives-from", choices=("model", "bm25", "both"), default="model",
                    help="Who mines the hard negatives: the base model, BM25 (lexically close but wrong chunks) or both.")
    ap.add_argument("--lexical-misses", type=int, default=0, metavar="N",
                    help="T1/A: repeat each training pair BM25 does not rank first N more times.")
    ap.add_argument("--round-trip", choices=("bm25", "model"), default=None, help="T2/A: round-trip filter.")
    ap.add_argument("--kinds", default=None, help="T2/A: offline query kinds, comma-separated (default: all).")
    ap.add_argument("--round-trip-k", type=int, default=3)
    ap.add_argument("--dims", type=lambda s: [int(x) for x in s.split(",")], default=None)
    ap.add_argument("--no-long", dest="long", action="store_false", help="Skip long-chunk (best-window) evaluation.")
    ap.add_argument("--augment", type=int, default=0, help="T1: add up to N offline pairs generated from the given corpus.")
    ap.add_argument("--no-anchor", action="store_true", help="T1: do not run the anchor.")
    ap.add_argument("--hybrid", dest="lexical", action="store_true",
                    help="Also score bm25, base+hybrid and tuned+hybrid, the fusion weights fitted on held-out pairs "
                         "(A: the generated val split, as `ragtune run`; T1: offline questions on the Lyft corpus).")
    ap.add_argument("--val-fraction", type=float, default=0.0,
                    help="T2/A: hold out this share of the generated pairs (ragtune run: 0.15).")
    ap.add_argument(
        "--summarize-on", choices=("none", "searched"), default="none",
        help="T1/T2: run the chunk-summary stage on the Uber corpus (the searched one, unlabelled); A always does.",
    )
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)

    bench = Bench(args.protocol)
    t0 = time.perf_counter()
    print(f"protocol {args.protocol}", flush=True)
    with progress.use(console.display()):
        ds = PROTOCOL_RUNNERS[args.protocol](args, bench)
    bench.timings["total_s"] = round(time.perf_counter() - t0, 2)
    bench.write(args.out, ds)
    print(f"wrote {args.out}", flush=True)
    return 0


PROTOCOL_RUNNERS = {
    "T1": protocol_t1,
    "T2": lambda args, bench: protocol_generated(args, bench, "lyft_2021.pdf"),
    "A": lambda args, bench: protocol_generated(args, bench, "uber_2021.pdf"),
    "G": protocol_g,
    "M": protocol_m,
    "anchor": protocol_anchor,
}


if __name__ == "__main__":
    raise SystemExit(main())
