"""``ragtune generate``: synthetic query → passage pairs from a corpus."""

from __future__ import annotations

from pathlib import Path

import typer

from ragtune.cli import options as o
from ragtune.cli.output import echo, showing_progress
from ragtune.corpus.reader import ChunkConfig
from ragtune.pairs import GenerationConfig


def generate(
    corpus: o.Corpus,
    out: Path = typer.Option(..., "--out", "-o", help="pairs.jsonl to write (chunks go beside it as OUT.chunks.jsonl)."),
    base: str | None = typer.Option(None, "--base", help="Model whose tokenizer sets the windows."),
    max_pairs: int | None = typer.Option(None, "--max-pairs"),
    chunk_size: o.ChunkSize = ChunkConfig.chunk_size,
    val_fraction: float = typer.Option(GenerationConfig.val_fraction, "--val-fraction", help="Share of documents held out for validation."),
    llm: str | None = typer.Option(None, "--llm", help="provider:model to write the questions (default: the offline generator)."),
    questions_per_chunk: int = typer.Option(
        GenerationConfig.questions_per_chunk, "--questions-per-chunk", help="LLM generator: questions per window."
    ),
    llm_cache: Path | None = typer.Option(None, "--llm-cache", help="LLM answers cache (default: OUT.llm-cache/); re-runs never pay twice."),
    queries: Path | None = typer.Option(None, "--queries", help=o.QUERIES_HELP),
) -> None:
    """Generate synthetic query → passage pairs from a corpus (offline by default, or with an LLM)."""
    import time

    from ragtune.corpus.reader import load_corpus, save_chunks
    from ragtune.encoders.encoder import Encoder
    from ragtune.pairs import generate_pairs, make_generator, save_pairs

    t0 = time.perf_counter()
    with showing_progress():
        res = load_corpus(corpus, ChunkConfig(chunk_size=chunk_size))
    encoder = Encoder(base)
    cfg = GenerationConfig(max_pairs=max_pairs, val_fraction=val_fraction, llm=llm, questions_per_chunk=questions_per_chunk)
    cache = llm_cache or out.with_name(out.stem + ".llm-cache")
    with showing_progress():
        gen = generate_pairs(
            res.chunks,
            encoder.tokenizer,
            encoder.window_spec(),
            cfg,
            generator=make_generator(cfg, cache_dir=cache if llm else None),
            encoder=encoder,
        )
    served_note = ""
    if queries is not None:
        from ragtune.pairs.querylog import read_query_log
        from ragtune.pairs.served import label_served_queries

        with showing_progress():
            served = label_served_queries(read_query_log(queries), res.chunks, encoder, encoder.window_spec())
        gen.pairs.extend(served.pairs)
        by = ", ".join(f"{k} {v}" for k, v in sorted(served.labelled.items())) or "none"
        served_note = (f"; {len(served.pairs)} from {served.distinct} served questions (labelled by: {by}; "
                       f"{served.uncertain} uncertain left out)")
    save_pairs(out, gen.pairs)
    chunks_out = out.with_name(out.stem + ".chunks.jsonl")
    save_chunks(chunks_out, res.chunks)
    secs = time.perf_counter() - t0
    drops = ", ".join(f"{k} {v}" for k, v in gen.dropped.items()) or "none"
    echo(
        f"{len(res.chunks)} chunks from {len(res.files)} files ({len(res.skipped)} skipped), "
        f"{gen.windows} windows → {gen.generated} generated, {len(gen.pairs)} pairs kept "
        f"(dropped: {drops}); {sum(p.split == 'val' for p in gen.pairs)} held out for validation{served_note}; {secs:.1f} s"
    )
    echo(f"wrote {out} and {chunks_out}")
