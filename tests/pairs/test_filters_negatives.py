"""Round-trip filtering, near-duplicate queries and hard-negative mining on the tiny tram corpus.

All retrieval is real: BM25 through ``bm25s`` and the bundled all-MiniLM-L6-v2.
"""

from __future__ import annotations

import pytest

from ragtune.corpus.reader import Chunk
from ragtune.encoders.encoder import Encoder
from ragtune.encoders.windows import WindowSpec
from ragtune.errors import ConfigError, InputError
from ragtune.pairs.filters import (
    BM25ChunkIndex,
    DenseChunkIndex,
    DuplicateFilter,
    LengthFilter,
    NearDuplicateFilter,
    RoundTripFilter,
    apply_filters,
    bm25_tokens,
)
from ragtune.pairs.negatives import mine_hard_negatives
from ragtune.pairs.schema import Pair

NIGHT_Q = "How often does the night tram run after 23:00?"
PASS_Q = "What does a monthly Harbor Line pass cost?"
BIKE_Q = "Can bicycles be taken on board the trams?"

#: a query per chunk that names what only that chunk says (checked for BM25 and the base model)
CLEAR = {
    NIGHT_Q: "night tram runs every 30 minutes",
    PASS_Q: "monthly Harbor Line pass costs",
    "Which depot maintains the tram fleet?": "Eastfield depot",
    BIKE_Q: "Bicycles can be taken",
    "Where are lost items kept and for how long?": "Items left on a tram",
    "Are the platforms level with the tram floor for wheelchairs?": "wheelchair spaces",
    "When was the line extended to Lighthouse Point?": "extended by 3.2 kilometres",
}


def chunk_for(chunks: list[Chunk], needle: str) -> Chunk:
    return next(c for c in chunks if needle in c.text)


def pair(query: str, chunk: Chunk) -> Pair:
    return Pair(query=query, positive=chunk.text, positive_id=chunk.id, doc_id=chunk.doc_id)


def ids_of(p: Pair) -> set[str]:
    return {n["id"] for n in p.negatives}


def mirrored(chunks: list[Chunk], original: Chunk, text: str) -> tuple[list[Chunk], Chunk]:
    """The corpus plus a near-identical copy of ``original`` from another document."""
    mirror = Chunk(id="mirror", text=text, doc_id="mirror.txt#0", source="mirror.txt")
    return [*chunks, mirror], mirror


@pytest.fixture(scope="module")
def encoder(st_model) -> Encoder:
    return Encoder(st_model)


@pytest.fixture(scope="module")
def by_query(tiny_chunks) -> dict[str, Chunk]:
    return {q: chunk_for(tiny_chunks, needle) for q, needle in CLEAR.items()}


@pytest.fixture(scope="module")
def crossed(by_query) -> tuple[list[Pair], list[Pair]]:
    """(consistent pairs, the same queries paired with the next query's chunk)."""
    qs = list(by_query)
    good = [pair(q, by_query[q]) for q in qs]
    bad = [pair(q, by_query[qs[(i + 1) % len(qs)]]) for i, q in enumerate(qs)]
    return good, bad


@pytest.fixture(scope="module")
def dense(tiny_chunks, encoder) -> DenseChunkIndex:
    return DenseChunkIndex(tiny_chunks, encoder)


# --- round trip ----------------------------------------------------------------------


@pytest.mark.parametrize("retriever", ["bm25", "model"])
def test_round_trip_keeps_consistent_and_drops_crossed_pairs(retriever, tiny_chunks, st_model, crossed):
    good, bad = crossed
    # model mode takes a bare SentenceTransformer too, and indexes the chunks by window once
    f = RoundTripFilter(tiny_chunks, retriever=retriever, encoder=st_model if retriever == "model" else None, k=1)
    assert f.name == "round_trip" and f.retriever == retriever
    assert isinstance(f.index, BM25ChunkIndex if retriever == "bm25" else DenseChunkIndex)
    mixed = [p for g, b in zip(good, bad) for p in (g, b)]
    assert f(mixed) == good
    kept, dropped = apply_filters(mixed, [LengthFilter(), f])
    assert kept == good
    assert dropped == {"length": 0, "round_trip": len(bad)}


def test_round_trip_k_is_the_rank_the_source_chunk_must_reach(tiny_chunks, dense, by_query):
    # the daytime timetable is the second-best chunk for the night question, for BM25 and the model
    daytime = chunk_for(tiny_chunks, "## Daytime service")
    second = pair(NIGHT_Q, daytime)
    for index_kw in ({"chunks": tiny_chunks}, {"index": dense}):
        assert RoundTripFilter(**index_kw, k=1)([second]) == []
        assert RoundTripFilter(**index_kw, k=2)([second]) == [second]
    assert RoundTripFilter(index=dense).retriever == "model"
    assert RoundTripFilter(tiny_chunks, k=1)([]) == []


def test_round_trip_drops_a_query_sharing_no_word_with_any_chunk(tiny_chunks, by_query):
    p = pair("zyxxy quokka flibbertigibbet", by_query[PASS_Q])
    assert RoundTripFilter(tiny_chunks, k=len(tiny_chunks))([p]) == []


def test_round_trip_errors_name_the_field(tiny_chunks, by_query):
    with pytest.raises(ConfigError, match="retriever='bm2'"):
        RoundTripFilter(tiny_chunks, retriever="bm2")
    with pytest.raises(ConfigError, match="encoder"):
        RoundTripFilter(tiny_chunks, retriever="model")
    with pytest.raises(ConfigError, match="k=0"):
        RoundTripFilter(tiny_chunks, k=0)
    with pytest.raises(ConfigError, match="chunks"):
        RoundTripFilter()
    stray = Pair(query=PASS_Q, positive="x", positive_id="not-a-chunk")
    with pytest.raises(InputError, match=r"positive_id.*not-a-chunk"):
        RoundTripFilter(tiny_chunks)([stray])
    dup = tiny_chunks[:1] * 2
    with pytest.raises(InputError, match="appears twice"):
        BM25ChunkIndex(dup)


# --- near duplicates -----------------------------------------------------------------


def test_near_duplicates_only_within_a_chunk(st_model, by_query):
    fares, bikes = by_query[PASS_Q], by_query[BIKE_Q]
    pairs = [
        pair(PASS_Q, fares),
        pair("How much does a monthly Harbor Line pass cost?", fares),  # paraphrase, same chunk: dropped
        pair("What does a single ticket cost?", fares),  # another question on the chunk: kept
        pair("How much does a monthly Harbor Line pass cost?", bikes),  # same words, other chunk: kept
    ]
    f = NearDuplicateFilter(st_model, threshold=0.95)
    kept, dropped = apply_filters(pairs, [f])
    assert kept == [pairs[0], pairs[2], pairs[3]]
    assert dropped == {"near_duplicates": 1}
    # the exact-wording filter, by contrast, compares across chunks
    assert apply_filters(pairs, [DuplicateFilter()])[1] == {"duplicates": 1}
    with pytest.raises(ConfigError, match=r"threshold=1.5"):
        NearDuplicateFilter(st_model, threshold=1.5)


# --- hard negatives ------------------------------------------------------------------


def test_negatives_are_ranked_chunks_never_the_positive(tiny_chunks, dense, by_query):
    pairs = [pair(q, c) for q, c in by_query.items()]
    res = mine_hard_negatives(pairs, dense_index=dense, num_negatives=2, rank_range=(1, 5))
    assert res.retrievers == ["model"]
    ids = {c.id: c for c in tiny_chunks}
    for before, after in zip(pairs, res.pairs):
        assert before.negatives == []  # the input is not modified
        assert 1 <= len(after.negatives) <= 2
        for neg in after.negatives:
            assert set(neg) == {"id", "text"}
            assert neg["id"] != after.positive_id
            assert neg["text"] == ids[neg["id"]].text  # short chunks: one window, the whole text
    assert res.with_negatives == len(pairs)
    assert res.record()["with_negatives"] == len(pairs)


def test_guard_skips_a_near_identical_copy_of_the_positive(tiny_chunks, encoder, by_query):
    fares = by_query[PASS_Q]
    chunks, mirror = mirrored(tiny_chunks, fares, fares.text.replace("Fares and passes", "Fares"))
    p = pair(PASS_Q, fares)
    index = DenseChunkIndex(chunks, encoder)
    # without a margin the copy (ranked first, scoring just below the positive) is mined ...
    loose = mine_hard_negatives([p], dense_index=index, rank_range=(1, 1), margin=0.0)
    assert ids_of(loose.pairs[0]) == {mirror.id} and loose.skipped_false_negatives == 0
    # ... with the default margin it is recognised as a likely second positive
    guarded = mine_hard_negatives([p], dense_index=index, rank_range=(1, 5), num_negatives=5)
    assert mirror.id not in ids_of(guarded.pairs[0])
    assert guarded.skipped_false_negatives >= 1
    assert guarded.pairs[0].negatives  # genuinely different chunks remain
    assert guarded.record()["skipped_false_negatives"] == guarded.skipped_false_negatives


def test_bm25_guard_is_relative_to_the_positive_score(tiny_chunks, encoder, by_query):
    fares = by_query[PASS_Q]
    # a longer copy: BM25 length normalisation scores it ~6 % below the positive
    chunks, mirror = mirrored(tiny_chunks, fares, fares.text + "\n\nThis page is a copy kept for the archive.")
    p = pair(PASS_Q, fares)
    bm25 = BM25ChunkIndex(chunks)
    loose = mine_hard_negatives([p], bm25_index=bm25, rank_range=(1, 1), bm25_margin=0.0)
    assert ids_of(loose.pairs[0]) == {mirror.id}
    assert loose.pairs[0].negatives[0]["text"] == mirror.text  # no encoder: the whole chunk
    res = mine_hard_negatives([p], bm25_index=bm25, rank_range=(1, 5), num_negatives=5)
    assert res.retrievers == ["bm25"]
    assert mirror.id not in ids_of(res.pairs[0]) and res.skipped_false_negatives >= 1
    both = mine_hard_negatives([p], chunks, encoder=encoder, bm25=True, rank_range=(1, 5), num_negatives=5)
    assert both.retrievers == ["model", "bm25"]
    assert both.pairs[0].negatives and not ids_of(both.pairs[0]) & {mirror.id, p.positive_id}


def test_bm25_alone_cannot_vouch_for_candidates_of_a_wordless_positive(tiny_chunks, dense, by_query):
    # the query shares no word with its (fares) positive, but "tram" with most other chunks
    p = pair("How expensive is a four-week travelcard for the tram?", by_query[PASS_Q])
    alone = mine_hard_negatives([p], tiny_chunks, bm25=True, rank_range=(1, 5))
    assert alone.pairs[0].negatives == [] and alone.without_candidates == 1
    assert alone.skipped_false_negatives >= 1
    both = mine_hard_negatives([p], tiny_chunks, bm25=True, dense_index=dense, rank_range=(1, 5), num_negatives=5)
    # next to the model, BM25 abstains: chunks that share "tram" are mined when the model says they are wrong
    assert any("tram" in bm25_tokens(n["text"]) for n in both.pairs[0].negatives)


def test_same_document_chunks_can_be_excluded(tiny_chunks, dense, by_query):
    night = by_query[NIGHT_Q]
    sibling = next(c for c in tiny_chunks if c.doc_id == night.doc_id and c.id != night.id)
    p = pair(NIGHT_Q, night)
    wide = dict(dense_index=dense, rank_range=(1, len(tiny_chunks)), num_negatives=len(tiny_chunks), margin=0.0)
    assert sibling.id in {n["id"] for n in mine_hard_negatives([p], **wide).pairs[0].negatives}
    res = mine_hard_negatives([p], exclude_same_doc=True, **wide)
    assert sibling.id not in {n["id"] for n in res.pairs[0].negatives}
    assert res.skipped_same_doc == 1


def test_mining_is_deterministic_per_seed_and_independent_of_order(dense, by_query):
    pairs = [pair(q, c) for q, c in by_query.items()]
    kw = dict(dense_index=dense, rank_range=(1, 6), num_negatives=2)
    a = mine_hard_negatives(pairs, seed=7, **kw).pairs
    b = mine_hard_negatives(pairs, seed=7, **kw).pairs
    assert [p.negatives for p in a] == [p.negatives for p in b]
    rev = mine_hard_negatives(pairs[::-1], seed=7, **kw).pairs[::-1]
    assert [p.negatives for p in a] == [p.negatives for p in rev]
    seeds = {tuple(n["id"] for p in mine_hard_negatives(pairs, seed=s, **kw).pairs for n in p.negatives)
             for s in range(6)}
    assert len(seeds) > 1  # the seed does change the sample


def test_rank_range_and_existing_negatives(dense, by_query):
    p = pair(PASS_Q, by_query[PASS_Q])
    full = dense.search(dense.encode_queries([PASS_Q]), top_k=len(dense))[0]
    order = [cid for cid, _ in full if cid != p.positive_id]
    res = mine_hard_negatives([p], dense_index=dense, rank_range=(3, 3), margin=0.0)
    assert [n["id"] for n in res.pairs[0].negatives] == [order[2]]
    given = Pair(query=PASS_Q, positive="x", positive_id=p.positive_id, negatives=[{"id": "g", "text": "given"}])
    kept = mine_hard_negatives([given], dense_index=dense)
    assert kept.pairs[0].negatives == given.negatives and kept.kept_existing == 1
    redone = mine_hard_negatives([given], dense_index=dense, rank_range=(1, 5), overwrite=True)
    assert redone.pairs[0].negatives != given.negatives


def test_long_chunks_give_the_best_window_as_negative_text(encoder):
    filler = " ".join(f"Clause {i} covers routine paperwork for the office." for i in range(12))
    chunks = [
        Chunk(id="pos", text="The monthly pass costs 58 euros for adults.", doc_id="a", source="a"),
        Chunk(id="long", text=filler + " Students pay 29 euros for a monthly pass with a card. " + filler,
              doc_id="b", source="b"),
        Chunk(id="other", text="The depot trains new drivers every spring.", doc_id="c", source="c"),
    ]
    p = Pair(query="How much is the monthly pass?", positive=chunks[0].text, positive_id="pos")
    index = DenseChunkIndex(chunks, encoder, spec=WindowSpec(size=24, stride=16))
    assert len(index.spans[1]) > 1
    res = mine_hard_negatives([p], dense_index=index, rank_range=(1, 1))
    neg = res.pairs[0].negatives[0]
    assert neg["id"] == "long"
    assert neg["text"] in chunks[1].text and len(neg["text"]) < len(chunks[1].text)
    assert "monthly pass" in neg["text"]
    whole = mine_hard_negatives([p], chunks, encoder=encoder, spec=WindowSpec(size=24, stride=16),
                                rank_range=(1, 1), negative_text="chunk")
    assert whole.pairs[0].negatives == [{"id": "long", "text": chunks[1].text}]
    assert whole.record()["negative_text"] == "chunk"


def test_mining_errors_name_the_field(tiny_chunks, dense, by_query):
    p = pair(PASS_Q, by_query[PASS_Q])
    with pytest.raises(ConfigError, match=r"encoder=.*bm25=True"):
        mine_hard_negatives([p], tiny_chunks)
    with pytest.raises(ConfigError, match="rank_range"):
        mine_hard_negatives([p], dense_index=dense, rank_range=(5, 2))
    with pytest.raises(ConfigError, match="num_negatives=0"):
        mine_hard_negatives([p], dense_index=dense, num_negatives=0)
    with pytest.raises(ConfigError, match="bm25_margin"):
        mine_hard_negatives([p], dense_index=dense, bm25_margin=1.0)
    with pytest.raises(ConfigError, match="chunks"):
        mine_hard_negatives([p], bm25=True)
    with pytest.raises(ConfigError, match="negative_text='span'"):
        mine_hard_negatives([p], dense_index=dense, negative_text="span")
    with pytest.raises(InputError, match="positive_id"):
        mine_hard_negatives([Pair(query=PASS_Q, positive="x", positive_id="nope")], dense_index=dense)
