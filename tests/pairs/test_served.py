"""Pseudo-labelling served queries: feedback first, dense–BM25 agreement otherwise, one pair per question.
Real parts: the bundled model as the dense judge, bm25s, the tiny tram corpus, a query log written by QueryLog."""

from __future__ import annotations

import pytest

from ragtune.errors import ConfigError, InputError
from ragtune.pairs.querylog import QueryLog, read_query_log
from ragtune.pairs.served import ServedConfig, label_served_queries
from tests.helpers import FACTS


def _chunk_of(chunks, file_name: str):
    return next(c for c in chunks if c.source == file_name)


def test_logged_questions_become_pairs_on_the_right_chunks(tmp_path, tiny_chunks, st_model):
    log = QueryLog(tmp_path)
    for q in FACTS:
        log.search(q, "hybrid", 1, [])
    for _ in range(5):  # a frequent question counts once
        log.search("What does a monthly Harbor Line pass cost?", "hybrid", 1, [])
    log.search("hello", "hybrid", 1, [])  # too short to label
    log.close()
    result = label_served_queries(read_query_log(tmp_path), tiny_chunks, st_model)
    rec = result.record()
    assert rec["logged_searches"] == len(FACTS) + 6 and rec["distinct_queries"] == len(FACTS) and rec["too_short"] == 1
    assert len({p.query for p in result.pairs}) == len(result.pairs)  # one pair per question
    assert rec["pairs"] + rec["uncertain"] == len(FACTS) and rec["labelled_by"].get("agreement", 0) == rec["pairs"]
    assert rec["pairs"] >= 3, rec  # these facts are easy: both retrievers agree on most
    by_id = {c.id: c for c in tiny_chunks}
    for p in result.pairs:
        assert by_id[p.positive_id].source == FACTS[p.query], p.query  # pseudo-labels are right here
        assert p.source == "served" and p.split == "train" and p.positive in by_id[p.positive_id].text


def test_feedback_overrides_the_judge_and_rejections_become_negatives(tmp_path, tiny_chunks, st_model):
    fares, depot, faq = (_chunk_of(tiny_chunks, f) for f in ("fares.txt", "depot.html", "faq.jsonl"))
    log = QueryLog(tmp_path)
    q1 = log.search("Where can I buy a ticket for the tram?", "hybrid", 3, [(fares.id, 0.9), (depot.id, 0.5)])
    log.feedback(q1, chosen=[fares.id], rejected=[depot.id])
    q2 = log.search("Are bikes allowed in the trams?", "hybrid", 2, [(faq.id, 0.8), (depot.id, 0.3)])
    log.feedback(q2, rating=0.9)  # a good rating, no choice: the top result is the positive
    q3 = log.search("Which workshop repairs tram wheels?", "hybrid", 1, [(fares.id, 0.4)])
    log.feedback(q3, rating=0.1, chosen=["gone-chunk"])  # a bad rating rejects the top result
    log.close()
    result = label_served_queries(read_query_log(tmp_path), tiny_chunks, st_model)
    pairs = {p.query: p for p in result.pairs}
    assert pairs["Where can I buy a ticket for the tram?"].positive_id == fares.id
    assert [n["id"] for n in pairs["Where can I buy a ticket for the tram?"].negatives] == [depot.id]
    assert pairs["Are bikes allowed in the trams?"].positive_id == faq.id
    assert result.labelled["feedback"] == 1 and result.labelled["rating"] == 1 and result.unknown_ids == 1
    wheels = pairs.get("Which workshop repairs tram wheels?")
    if wheels is not None:  # labelled by agreement, never as the rejected fares chunk
        assert wheels.positive_id != fares.id and fares.id in [n["id"] for n in wheels.negatives]


def test_bad_settings_and_missing_logs_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="agree_k"):
        ServedConfig(agree_k=0)
    with pytest.raises(InputError, match="no such folder"):
        read_query_log(tmp_path / "nope")
    with pytest.raises(InputError, match=r"queries\.jsonl"):
        read_query_log(tmp_path)
