"""Hosted-embedding baseline (issue 18): ``--baseline URL`` scored beside base and tuned.

ragtune's own OpenAI-compatible server runs on 127.0.0.1 as the "hosted" model
(the bundled model, so the baseline must score what base scores), behind an
ASGI wrapper that counts the requests the server receives: the second,
cached run must make none. Nothing leaves loopback.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import FACTS, run_inprocess

pytest.importorskip("openai")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from ragtune.encoders.hosted import BASELINE, HostedEncoder, is_hosted_spec, parse_baseline  # noqa: E402
from ragtune_server import create_app  # noqa: E402
from ragtune_server.server import uvicorn_config  # noqa: E402

KEY = "baseline-key"
MODEL = "all-MiniLM-L6-v2"


#: the Authorization header of every request the server received (None: none sent), in order
seen_authorizations: list[str | None] = []


class Counting:
    """ASGI middleware (the outermost layer of the server app): counts the HTTP requests it receives, by path,
    and notes their Authorization headers in :data:`seen_authorizations`."""

    def __init__(self, app: Any, hits: Counter) -> None:
        self.app, self.hits = app, hits

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.hits[scope["path"]] += 1
            seen_authorizations.append(dict(scope["headers"]).get(b"authorization", b"").decode() or None)
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def server(model_path) -> Iterator[tuple[str, Counter]]:
    """The server (bundled model, an API key) under uvicorn in a thread: (``/v1`` URL, request counter)."""
    hits: Counter = Counter()
    app = create_app(model_path, model_name=MODEL, api_key=KEY)
    app.add_middleware(Counting, hits=hits)
    srv = uvicorn.Server(uvicorn_config(app, "127.0.0.1", 0, "warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not srv.started:  # bounded poll for the start-up flag
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    port = srv.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1", hits
    finally:
        srv.should_exit = True
        thread.join(60)


@pytest.fixture()
def keyed(monkeypatch) -> None:
    monkeypatch.setenv("RAGTUNE_BASELINE_KEY", KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture(scope="module")
def qa(tmp_path_factory, tiny_chunks) -> Path:
    """A labelled set over the tiny corpus: the five facts, each answered by its document's chunk."""
    path = tmp_path_factory.mktemp("qa") / "qa.json"
    by_source = {c.source: c.id for c in tiny_chunks}
    path.write_text(json.dumps({
        "queries": {f"q{i}": q for i, q in enumerate(FACTS)},
        "corpus": {c.id: c.text for c in tiny_chunks},
        "relevant_docs": {f"q{i}": [by_source[src]] for i, src in enumerate(FACTS.values())},
    }))
    return path


def test_evaluate_scores_the_baseline_and_a_cached_rerun_makes_no_request(server, keyed, qa, model_path, tmp_path, capsys):
    url, hits = server
    spec = f"{url}#{MODEL}"
    cache = tmp_path / "cache"
    args = ("evaluate", "--model", model_path, "--data", str(qa), "--baseline", spec, "--cache", str(cache))
    before = hits.copy()
    code, _, err = run_inprocess(capsys, *args, "--out", str(tmp_path / "r1"))
    assert code == 0, err
    sent = hits - before
    r1 = json.loads((tmp_path / "r1" / "report.json").read_text())

    # three models in plain mode, windows and BM25 fusion for the local two only; the baseline at its own width
    assert list(r1["metrics"]) == ["base", "tuned", BASELINE, "base+long", "tuned+long", "bm25", "base+hybrid",
                                   "tuned+hybrid"]
    assert r1["models"][BASELINE] == spec
    assert abs(r1["metrics"][BASELINE]["384"]["ndcg@10"] - r1["metrics"]["base"]["384"]["ndcg@10"]) < 1e-3  # same model
    assert r1["eval_seconds"][BASELINE]["encode_corpus_s"] >= 0
    h = r1["hosted"][BASELINE]
    n_texts = len(json.loads(qa.read_text())["corpus"]) + len(FACTS)
    assert (h["texts"], h["fetched"], h["from_cache"], h["model"], h["dimension"]) == (n_texts, n_texts, 0, MODEL, 384)
    assert h["requests"] == sent["/v1/embeddings"] == sum(sent.values()) >= 2  # corpus, then queries
    assert h["tokens"] > n_texts and h["tokens_source"] == "usage"  # the server's usage field
    assert h["cost_usd"] is None and h["price_date"] is None  # a local model has no list price
    for page in ("report.md", "report.html"):
        text = (tmp_path / "r1" / page).read_text()
        assert f"{BASELINE} ({MODEL} at {url})" in text and "no list price known" in text

    # the re-run: every vector from the cache, not one request, the same figures
    before = sum(hits.values())
    code, _, err = run_inprocess(capsys, *args, "--out", str(tmp_path / "r2"))
    assert code == 0, err
    assert sum(hits.values()) == before
    r2 = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert r2["metrics"][BASELINE] == r1["metrics"][BASELINE]
    h2 = r2["hosted"][BASELINE]
    assert (h2["fetched"], h2["requests"], h2["from_cache"], h2["tokens"]) == (0, 0, n_texts, h["tokens"])
    assert (cache / "embeddings.sqlite").is_file()


def test_a_baseline_url_gets_the_baseline_key_never_openais(server, tmp_path, monkeypatch):
    """OPENAI_API_KEY set (here: the very key the server wants) is not sent to a --baseline URL; RAGTUNE_BASELINE_KEY is."""
    from ragtune.errors import InputError

    url, _ = server
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("RAGTUNE_BASELINE_KEY", raising=False)
    del seen_authorizations[:]
    enc = HostedEncoder(f"{url}#{MODEL}", cache_dir=tmp_path / "a", max_retries=0)
    with pytest.raises(InputError, match="the embeddings request failed"):  # the server's 401
        enc.encode_queries(["a tram"])
    enc.close()
    assert seen_authorizations == ["Bearer unused"]

    monkeypatch.setenv("RAGTUNE_BASELINE_KEY", KEY)
    del seen_authorizations[:]
    enc = HostedEncoder(f"{url}#{MODEL}", cache_dir=tmp_path / "b", max_retries=0)
    assert enc.encode_queries(["a tram"]).shape == (1, 384)
    enc.close()
    assert seen_authorizations == [f"Bearer {KEY}"]


def test_pipeline_stage_caches_in_the_run_directory(server, keyed, qa, tmp_path):
    """stage_evaluate: a URL without #MODEL asks /v1/models once; vectors go to RUN/cache/embeddings."""
    from ragtune.evaluation import load_eval_dataset
    from ragtune.pipeline.rundir import RunDir
    from ragtune.pipeline.stages import stage_evaluate

    url, hits = server
    dataset = load_eval_dataset(qa)
    before = hits.copy()
    report = stage_evaluate(RunDir(tmp_path / "run"), dataset, "default", None, long_chunks=False, baseline=url)
    assert list(report["metrics"]) == ["base", BASELINE, "bm25", "base+hybrid"]  # no hybrid of a hosted baseline
    assert hits["/v1/models"] - before["/v1/models"] == 1
    assert report["hosted"][BASELINE]["model"] == MODEL
    assert (tmp_path / "run" / "cache" / "embeddings" / "embeddings.sqlite").is_file()
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["stages"]["evaluate"]["hosted"][BASELINE]["fetched"] > 0

    again = RunDir(tmp_path / "run2")  # a fresh run directory with the first one's cache
    (again.cache).mkdir(parents=True)
    (again.cache / "embeddings").symlink_to(tmp_path / "run" / "cache" / "embeddings")
    count = sum(hits.values())
    report = stage_evaluate(again, dataset, "default", None, long_chunks=False, baseline=url)
    assert sum(hits.values()) == count and report["hosted"][BASELINE]["from_cache"] > 0


def test_cost_comes_from_tokens_and_the_price_table(tmp_path, monkeypatch):
    """Batches of batch_size, duplicates sent once, vectors normalised, cost = tokens × list price."""
    sent: list[list[str]] = []

    def fake(self, texts, kind):
        sent.append(list(texts))
        return np.full((len(texts), 8), 3.0, dtype=np.float32), 1000.0 * len(texts)

    monkeypatch.setattr(HostedEncoder, "_fetch", fake)
    enc = HostedEncoder("http://127.0.0.1:9/v1#text-embedding-3-small", cache_dir=tmp_path, batch_size=2)
    vecs = enc.encode_documents(["a", "b", "c", "a", "d", "e"])
    assert [len(b) for b in sent] == [2, 2, 1] and vecs.shape == (6, 8)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0)
    u = enc.usage()
    assert (u["tokens"], u["usd_per_1m_tokens"], u["cost_usd"], u["price_date"]) == (5000, 0.02, 0.0001, "2025-01")
    enc.close()
    again = HostedEncoder("http://127.0.0.1:9/v1#text-embedding-3-small", cache_dir=tmp_path)
    again.encode_queries(["e", "d"])  # a query is a document to OpenAI: the cache serves it
    assert len(sent) == 3 and again.usage()["cost_usd"] == 0 and again.usage()["cost_usd_uncached"] == 0.00004


def test_specs():
    assert [is_hosted_spec(v) for v in ("openai:m", "https://x/v1", "default", "org/model", "none")] == [True, True, False, False, False]
    p = parse_baseline("http://127.0.0.1:8000/v1/#bge")
    assert (p.provider, p.model, p.endpoint) == ("openai", "bge", "http://127.0.0.1:8000/v1")


@pytest.mark.parametrize(
    ("baseline", "needle"),
    [
        ("nosuch:model", "unknown provider 'nosuch'"),
        ("openai:text-embedding-3-small", "OPENAI_API_KEY"),
        ("http://#m", "no host"),
        ("ollama:nomic-embed-text", "pip install llama-index-embeddings-ollama"),
        ("openai:", "expected provider:model"),
    ],
)
def test_bad_baseline_is_one_line_before_any_work(baseline, needle, qa, tmp_path, tiny_corpus, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("RAGTUNE_BASELINE_KEY", raising=False)
    if "ollama" in baseline and _importable("llama_index.embeddings.ollama"):
        pytest.skip("llama-index-embeddings-ollama is installed here")
    def never(*_: Any, **__: Any) -> None:
        raise AssertionError("long work started before the baseline was checked")

    monkeypatch.setattr("ragtune.encoders.loading.load_model", never)
    monkeypatch.setattr("ragtune.evaluation.load_eval_dataset", never)
    for args in (
        ("evaluate", "--model", "default", "--data", str(qa), "--out", str(tmp_path / "r"), "--baseline", baseline),
        ("run", str(tiny_corpus), "--workdir", str(tmp_path / "w"), "--baseline", baseline),
    ):
        code, _, err = run_inprocess(capsys, *args)
        assert code == 1 and err.strip().count("\n") == 0 and err.startswith("error:") and needle in err, err
    assert not (tmp_path / "r").exists() and not (tmp_path / "w").exists()


def _importable(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False
