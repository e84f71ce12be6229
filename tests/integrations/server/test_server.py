"""The HTTP server (issue 7): the real uvicorn server on 127.0.0.1, called by the
official ``openai`` client and by plain httpx.

One server (bundled model, an on-disk Qdrant collection of the tiny corpus,
an API key) serves the module; a few tests start their own. Nothing leaves
loopback. The micro-batcher also has model-free unit tests with a fake encoder.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from ragtune.corpus.reader import Chunk  # noqa: E402
from ragtune.encoders.encoder import Encoder, truncate  # noqa: E402
from ragtune.errors import ConfigError, IndexMismatchError, InputError  # noqa: E402
from ragtune.index.chunk_index import ChunkIndex, connect, open_for_model  # noqa: E402
from ragtune_server import BatchConfig, Limits, create_app, serve  # noqa: E402
from ragtune_server.batching import (  # noqa: E402
    BatcherClosedError,
    Encoded,
    MicroBatcher,
    QueueFullError,
)
from ragtune_server.hosts import HostPolicy  # noqa: E402
from tests.helpers import Running, running  # noqa: E402

KEY = "test-key-123"
COLLECTION = "tram"
DEPOT_Q = "Which depot maintains the tram fleet?"
BODY_LIMIT = 100_000
# a wide batching window: requests released together in the concurrency test
# must land in one window even on a loaded CI machine
WAIT_MS = 50.0


def _index(loc: Path, chunks: list[Any], st_model: Any) -> None:
    """Write ``chunks`` into the collection at ``loc`` and close the folder again."""
    client = connect(loc)
    try:
        open_for_model(client, COLLECTION, st_model, "all-MiniLM-L6-v2").upsert(
            chunks, Encoder(st_model)
        )
    finally:
        client.close()


@pytest.fixture(scope="module")
def qdrant_dir(tmp_path_factory, tiny_chunks, st_model) -> Path:
    """An on-disk Qdrant folder holding the tiny corpus, indexed by the bundled model."""
    loc = tmp_path_factory.mktemp("server") / "qdrant"
    _index(loc, tiny_chunks, st_model)
    return loc


@pytest.fixture(scope="module")
def srv(qdrant_dir, model_path) -> Iterator[Running]:
    """The module's server: loads the model itself from its folder, as ``ragtune serve`` does."""
    app = create_app(
        model_path,
        model_name="all-MiniLM-L6-v2",
        qdrant=str(qdrant_dir),
        collection=COLLECTION,
        api_key=KEY,
        limits=Limits(max_body_bytes=BODY_LIMIT),
        batching=BatchConfig(max_wait_ms=WAIT_MS),
    )
    with running(app) as r:
        yield r


@pytest.fixture()
def http(srv) -> Iterator[Any]:
    with httpx.Client(
        base_url=srv.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60
    ) as c:
        yield c


def _expected(st_model, texts: list[str]) -> np.ndarray:
    return st_model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)


def _tokens(st_model, texts: list[str]) -> int:
    ids = st_model.tokenizer(texts, truncation=True, max_length=st_model.max_seq_length)[
        "input_ids"
    ]
    return sum(len(x) for x in ids)


def _b64(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<f4")


def _status(srv: Running) -> dict[str, Any]:
    """GET /v1/status with the module's key: the model, the collection, the batcher's counters."""
    r = httpx.get(f"{srv.url}/v1/status", headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _assert_error(
    resp: Any, status: int, param: str | None = None, code: str | None = None
) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}, body
    err = body["error"]
    assert set(err) == {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert err["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    return err


# 1. the official openai client ---------------------------------------------------------
@pytest.fixture()
def oai(srv):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{srv.url}/v1", api_key=KEY, max_retries=0, timeout=60)


def test_openai_client_string_float(oai, st_model):
    res = oai.embeddings.create(
        model="text-embedding-3-small", input=DEPOT_Q, encoding_format="float"
    )
    assert res.model == "all-MiniLM-L6-v2"
    assert [d.index for d in res.data] == [0]
    np.testing.assert_allclose(res.data[0].embedding, _expected(st_model, [DEPOT_Q])[0], atol=1e-5)
    assert res.usage.prompt_tokens == res.usage.total_tokens == _tokens(st_model, [DEPOT_Q])


def test_openai_client_list_float_and_base64(oai, st_model):
    texts = ["tram fares", "The depot opened in 2004.", "bicycles on board " * 50]
    want = _expected(st_model, texts)
    floats = oai.embeddings.create(model="m", input=texts, encoding_format="float")
    np.testing.assert_allclose([d.embedding for d in floats.data], want, atol=1e-5)
    raw = oai.embeddings.create(model="m", input=texts, encoding_format="base64")
    assert all(isinstance(d.embedding, str) for d in raw.data)
    np.testing.assert_allclose(np.stack([_b64(d.embedding) for d in raw.data]), want, atol=1e-5)
    # the client's own default: it asks for base64 and decodes it itself
    default = oai.embeddings.create(model="m", input=texts)
    np.testing.assert_allclose([d.embedding for d in default.data], want, atol=1e-5)
    assert floats.usage.prompt_tokens == _tokens(st_model, texts)


def test_openai_client_dimensions(oai, st_model):
    texts = ["tram fares", "night service"]
    want = truncate(_expected(st_model, texts), 128)
    for fmt in ("float", "base64"):
        res = oai.embeddings.create(model="m", input=texts, dimensions=128, encoding_format=fmt)
        got = np.stack(
            [_b64(d.embedding) if fmt == "base64" else np.asarray(d.embedding) for d in res.data]
        )
        assert got.shape == (2, 128)
        np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_query_input_type_and_models(oai, http, st_model):
    r = http.post("/v1/embeddings", json={"input": [DEPOT_Q], "input_type": "query"})
    assert r.status_code == 200, r.text
    want = st_model.encode_query([DEPOT_Q], normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(r.json()["data"][0]["embedding"], want[0], atol=1e-5)
    assert [m.id for m in oai.models.list().data] == ["all-MiniLM-L6-v2"]
    assert oai.models.retrieve("all-MiniLM-L6-v2").owned_by == "ragtune"


def test_openai_client_errors_are_typed(srv):
    openai = pytest.importorskip("openai")
    bad = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="wrong", max_retries=0, timeout=60)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.embeddings.create(model="m", input="x")
    assert info.value.code == "invalid_api_key"
    good = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=KEY, max_retries=0, timeout=60)
    with pytest.raises(openai.BadRequestError) as info:
        good.embeddings.create(model="m", input="x", dimensions=999)
    assert info.value.param == "dimensions" and "384" in info.value.message


# 2. search over plain HTTP -------------------------------------------------------------
def test_search_finds_the_depot_chunk(http):
    r = http.post("/v1/search", json={"query": DEPOT_Q, "top_k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "all-MiniLM-L6-v2" and body["collection"] == COLLECTION
    top = body["results"][0]
    assert "Eastfield depot" in top["text"]
    assert top["metadata"]["source"] == "depot.html"
    assert set(top) == {"id", "score", "text", "metadata"} and 0 < top["score"] <= 1.0001
    assert len(body["results"]) == 3
    assert [h["score"] for h in body["results"]] == sorted(
        (h["score"] for h in body["results"]), reverse=True
    )
    plain = http.post("/v1/search", json={"query": DEPOT_Q, "top_k": 1, "mode": "plain"}).json()
    assert plain["results"][0]["metadata"]["source"] == "depot.html"


def test_search_payload_filter(http):
    one = http.post(
        "/v1/search", json={"query": DEPOT_Q, "top_k": 5, "filter": {"source": "fares.txt"}}
    ).json()
    assert one["results"] and {h["metadata"]["source"] for h in one["results"]} == {"fares.txt"}
    anyof = {"source": ["fares.txt", "faq.jsonl"]}
    two = http.post("/v1/search", json={"query": DEPOT_Q, "top_k": 10, "filter": anyof}).json()
    assert {h["metadata"]["source"] for h in two["results"]} == {"fares.txt", "faq.jsonl"}
    none = http.post("/v1/search", json={"query": DEPOT_Q, "filter": {"source": "nope.md"}}).json()
    assert none["results"] == []
    # Qdrant's payload-key syntax: dotted paths, array items, quoted keys
    paths = {"meta.author": "x", "tags[]": "y", "pages[0]": 3, '"odd key".b': True}
    r = http.post("/v1/search", json={"query": DEPOT_Q, "filter": paths})
    assert r.status_code == 200 and r.json()["results"] == [], r.text


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def test_search_shows_no_server_paths(tmp_path, st_model):
    """Metadata holding absolute paths (an index written by LlamaIndex's readers, or an older
    ragtune) is answered with paths relative to the corpus root, or file names."""
    corpus = tmp_path / "corpus"
    depot = corpus / "sub" / "depot.md"
    loose = tmp_path / "elsewhere" / "loose.md"
    chunks = [
        Chunk(
            id="6f1c3a52-0000-4000-8000-000000000001",
            text="The Eastfield depot maintains the tram fleet.",
            doc_id="sub/depot.md#0",
            source="sub/depot.md",
            metadata={
                "file_path": str(depot),
                "file_directory": str(depot.parent),
                "origin": {
                    "copies": [str(loose), f"file://{depot}"],
                    "home": "~/corpus/sub/depot.md",
                },
                "windows_path": "C:\\Users\\me\\corpus\\sub\\depot.md",
                "url": "https://example.org/depot",
            },
        ),
        Chunk(  # an absolute source, as some writers leave it
            id="6f1c3a52-0000-4000-8000-000000000002",
            text="Trams are washed at the depot every night.",
            doc_id=f"{loose}#0",
            source=str(loose),
            metadata={"file_path": str(loose)},
        ),
    ]
    loc = tmp_path / "qdrant"
    _index(loc, chunks, st_model)
    app = create_app(st_model, model_name="mini", qdrant=str(loc), collection=COLLECTION)
    with running(app) as r, httpx.Client(base_url=r.url, timeout=60) as c:
        bodies = [
            c.post(S, json={"query": DEPOT_Q, "top_k": 5, "mode": mode}).json()
            for mode in ("windows", "plain")
        ]
    for body in bodies:
        assert len(body["results"]) == 2, body
        for s in _strings(body):
            assert not s.startswith("/") and str(tmp_path) not in s, s
        meta = {h["id"][-1]: h["metadata"] for h in body["results"]}
        assert meta["1"]["file_path"] == meta["1"]["windows_path"] == "sub/depot.md"
        assert meta["1"]["file_directory"] == "sub"
        origin = {"copies": ["loose.md", "sub/depot.md"], "home": "sub/depot.md"}
        assert meta["1"]["origin"] == origin
        assert meta["1"]["url"] == "https://example.org/depot"
        assert meta["2"]["source"] == meta["2"]["file_path"] == "loose.md"


# 3. bad requests -----------------------------------------------------------------------
E, S = "/v1/embeddings", "/v1/search"
BAD_JSON_REQUESTS = [
    # (id, path, json body, status, param, code)
    ("oversized-input", E, {"input": "y" * 32_001}, 413, "input[0]", "input_too_large"),
    ("oversized-item", E, {"input": ["ok", "y" * 32_001]}, 413, "input[1]", "input_too_large"),
    ("too-many-inputs", E, {"input": ["y"] * 257}, 400, "input", "too_many_inputs"),
    ("input-number", E, {"input": 123}, 400, "input", None),
    ("input-object", E, {"input": {"a": 1}}, 400, "input", None),
    ("input-mixed-list", E, {"input": ["a", 3]}, 400, "input", None),
    ("token-ids", E, {"input": [[101, 2054, 102]]}, 400, "input", None),
    ("empty-list", E, {"input": []}, 400, "input", None),
    ("empty-string", E, {"input": ["ok", ""]}, 400, "input", None),
    ("blank-string", E, {"input": "   "}, 400, "input", None),
    ("nul-string", E, {"input": ["ok", "\u0000"]}, 400, "input", None),
    ("invisible-string", E, {"input": "\u200b\t\u0000 "}, 400, "input", None),
    ("missing-input", E, {"model": "m"}, 400, "input", "missing_field"),
    ("dimensions-zero", E, {"input": "x", "dimensions": 0}, 400, "dimensions", None),
    ("dimensions-too-wide", E, {"input": "x", "dimensions": 385}, 400, "dimensions", None),
    ("dimensions-string", E, {"input": "x", "dimensions": "128"}, 400, "dimensions", None),
    ("encoding-format", E, {"input": "x", "encoding_format": "int8"}, 400, "encoding_format", None),
    ("input-type", E, {"input": "x", "input_type": "passage"}, 400, "input_type", None),
    ("top-k-string", S, {"query": "x", "top_k": "x"}, 400, "top_k", None),
    ("top-k-zero", S, {"query": "x", "top_k": 0}, 400, "top_k", None),
    ("top-k-too-big", S, {"query": "x", "top_k": 101}, 400, "top_k", None),
    ("query-number", S, {"query": 5}, 400, "query", None),
    ("query-empty", S, {"query": "  "}, 400, "query", None),
    ("query-nul", S, {"query": "\u0000"}, 400, "query", None),
    ("query-too-long", S, {"query": "q" * 32_001}, 413, "query", "input_too_large"),
    ("filter-float", S, {"query": "x", "filter": {"page": 1.5}}, 400, "filter", None),
    ("filter-list", S, {"query": "x", "filter": ["source"]}, 400, "filter", None),
    ("filter-bad-key", S, {"query": "x", "filter": {"a..b[]": "x"}}, 400, "filter", None),
    ("filter-key-space", S, {"query": "x", "filter": {"my key": "x"}}, 400, "filter", None),
    ("filter-key-bracket", S, {"query": "x", "filter": {"tags[x]": "x"}}, 400, "filter", None),
    ("filter-int-range", S, {"query": "x", "filter": {"page": 2**64}}, 400, "filter", None),
    ("mode", S, {"query": "x", "mode": "fuzzy"}, 400, "mode", None),
]


@pytest.mark.parametrize(
    "path,body,status,param,code",
    [c[1:] for c in BAD_JSON_REQUESTS],
    ids=[c[0] for c in BAD_JSON_REQUESTS],
)
def test_bad_request_gets_openai_error(http, path, body, status, param, code):
    _assert_error(http.post(path, json=body), status, param, code)
    assert http.post(E, json={"input": "still serving"}).status_code == 200


INVALID_UNICODE = [
    # (id, path, raw JSON body, param): lone surrogates, as JSON escapes or as UTF-8-encoded bytes
    ("input", E, rb'{"input": "\ud800"}', "input"),
    ("input-item", E, rb'{"input": ["ok", "a\udfffb"]}', "input"),
    ("query", S, rb'{"query": "tram \ud83d"}', "query"),
    ("filter-key", S, rb'{"query": "x", "filter": {"\ud800": "x"}}', "filter"),
    ("filter-value", S, rb'{"query": "x", "filter": {"source": ["a", "\ud800"]}}', "filter"),
    ("utf8-surrogate", E, b'{"input": "\xed\xa0\x80"}', "input"),
    ("invalid-utf8", E, b'{"input": "\xff"}', None),
]


@pytest.mark.parametrize(
    "path,content,param", [c[1:] for c in INVALID_UNICODE], ids=[c[0] for c in INVALID_UNICODE]
)
def test_invalid_unicode_is_a_400(http, path, content, param):
    err = _assert_error(
        http.post(path, content=content, headers={"content-type": "application/json"}), 400, param
    )
    assert "Traceback" not in err["message"]
    if param is not None:
        assert "surrogate" in err["message"], err
    # a surrogate pair is one valid character (U+1F68B, a tram)
    pair = rb'{"input": "\ud83d\ude8b"}'
    ok = http.post(E, content=pair, headers={"content-type": "application/json"})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    "content,ctype,status,code",
    [
        (b'{"input": "x",', "application/json", 400, "invalid_json"),
        (b"", "application/json", 400, "invalid_json"),
        (b'["x"]', "application/json", 400, "invalid_json"),
        (b"input=x", "text/plain", 415, "unsupported_media_type"),
        (b'{"input": "x"}', "text/plain", 415, "unsupported_media_type"),
        (b'{"input": "x"}', None, 415, "unsupported_media_type"),
    ],
    ids=["truncated-json", "empty-body", "array-body", "not-json", "json-as-text", "no-type"],
)
def test_malformed_body(http, content, ctype, status, code):
    headers = {"content-type": ctype} if ctype else {}
    _assert_error(http.post(E, content=content, headers=headers), status, None, code)
    assert http.post(E, json={"input": "still serving"}).status_code == 200


@pytest.mark.parametrize(
    "headers,code",
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Bearer wrong"}, "invalid_api_key"),
        ({"Authorization": f"Basic {KEY}"}, "invalid_api_key"),
        ({"Authorization": "Bearer"}, "invalid_api_key"),
    ],
    ids=["no-key", "wrong-key", "wrong-scheme", "empty-token"],
)
def test_api_key_is_required(srv, headers, code):
    for method, path, body in [
        ("POST", E, {"input": "x"}),
        ("POST", S, {"query": "x"}),
        ("GET", "/v1/models", None),
        ("GET", "/v1/status", None),
        ("POST", "/v1/release", None),
        ("POST", "/v1/reload", None),
    ]:
        r = httpx.request(method, srv.url + path, json=body, headers=headers, timeout=30)
        _assert_error(r, 401, None, code)
        assert r.headers["www-authenticate"] == "Bearer"
    # checked before the body is parsed: a malformed body without a key is still a 401
    r = httpx.post(
        srv.url + E,
        content=b"{",
        headers={**headers, "content-type": "application/json"},
        timeout=30,
    )
    _assert_error(r, 401, None, code)
    assert httpx.get(srv.url + "/health", timeout=30).status_code == 200  # open, for probes


def test_body_size_limit(http):
    big = b'{"input": "' + b"y" * (BODY_LIMIT + 10) + b'"}'
    _assert_error(
        http.post(E, content=big, headers={"content-type": "application/json"}),
        413,
        None,
        "body_too_large",
    )

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts while the body streams
        yield b'{"input": "'
        for _ in range(12):
            yield b"y" * 10_000
        yield b'"}'

    _assert_error(
        http.post(E, content=chunks(), headers={"content-type": "application/json"}),
        413,
        None,
        "body_too_large",
    )
    assert http.post(E, json={"input": "still serving"}).status_code == 200


def _memory_kb(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, which runs the test servers."""
    status = Path("/proc/self/status").read_text()
    found = re.search(rf"^{field}:\s+(\d+) kB", status, re.M)
    assert found, status
    return int(found.group(1))


def test_body_limit_is_derived_and_holds_memory_down(st_model):
    """48 MB of filler in the ignored ``user`` field: refused with 413 by its declared length
    (nothing read) and, sent chunked, once the derived limit is crossed; 31.5 MB of empty
    lists in it, within the limit: refused before it is parsed (parsed, they took 800 MB);
    the small routes' limits are their own; memory stays flat."""
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to read the process's memory")
    limits = Limits()
    # every input at its longest, 4 UTF-8 bytes a character, plus 1 MiB for the rest of the JSON
    assert limits.body_bytes == 256 * 32_000 * 4 + 2**20 < 48_000_000
    filler = b"y" * 1_000_000
    head, tail = b'{"input": "x", "user": "', b'"}'

    def body() -> Iterator[bytes]:  # streamed: the client holds 1 MB of it at a time
        yield head
        for _ in range(48):
            yield filler
        yield tail

    size = len(head) + 48 * len(filler) + len(tail)
    with (
        running(create_app(st_model, model_name="mini", limits=limits)) as r,
        httpx.Client(base_url=r.url, timeout=120) as c,
    ):
        assert c.post(E, json={"input": "warm up"}).status_code == 200
        idle = _memory_kb("VmRSS")
        try:  # reset the peak (Linux clear_refs); without it only the end state is measured
            Path("/proc/self/clear_refs").write_text("5")
            peak_field = "VmHWM"
        except OSError:
            peak_field = "VmRSS"
        for headers in ({"content-length": str(size)}, {}):  # declared; chunked
            headers = {"content-type": "application/json", **headers}
            resp = c.post(E, content=body(), headers=headers)
            _assert_error(resp, 413, None, "body_too_large")
            assert str(limits.body_bytes) in resp.json()["error"]["message"]
        junk = b"[]," * 350_000

        def junk_body() -> Iterator[bytes]:  # 31.5 MB of empty lists, streamed
            yield b'{"input": "x", "user": ['
            for _ in range(30):
                yield junk
            yield b"[]]}"

        assert 30 * len(junk) < limits.body_bytes
        resp = c.post(E, content=junk_body(), headers={"content-type": "application/json"})
        _assert_error(resp, 413, "user", "too_many_values")
        # a search or an admin call has no use for megabytes: their own, smaller limits
        query = json.dumps({"query": "x", "filter": {"source": ["f" * 100] * 2000}})
        assert 192_000 < len(query) < limits.body_bytes
        _assert_error(c.post(S, content=query, headers={"content-type": "application/json"}),
                      413, None, "body_too_large")
        _assert_error(c.post("/v1/release", json={"pad": "x" * 2000}), 413, None, "body_too_large")
        peak, after = _memory_kb(peak_field), _memory_kb("VmRSS")
        assert c.post(E, json={"input": "still serving"}).status_code == 200
    print(f"RSS idle {idle / 1024:.1f} MiB, peak {peak / 1024:.1f}, after {after / 1024:.1f}")
    assert peak - idle < 100 * 1024, (idle, peak)
    assert after - idle < 100 * 1024, (idle, after)


JUNK_TAIL = b', "tail": [1, 2, 3] this is not JSON'  # a parser that reached it would say so


@pytest.mark.parametrize(
    "path,head,status,param,code",
    [
        (E, b'{"input": "x", "user": [' + b"[], " * 400, 413, "user", "too_many_values"),
        (E, b'{"input": [' + b'"x", ' * 400, 413, "input", "too_many_values"),
        (E, b'{"input": "x", "metadata": [' + b"[], " * 20, 400, "metadata", "unknown_field"),
        (S, b'{"query": "x", "filter": {"page": [' + b"1, " * 1100, 413, "filter", "too_many_values"),
        (S, b'{"query": "x", "user": [' + b"[], " * 20, 400, "user", "unknown_field"),
        ("/v1/release", b'{"force": [' + b"[], " * 5, 400, "force", "unknown_field"),
    ],
    ids=["junk-user", "too-many-inputs", "unknown-field", "big-filter", "search-user", "admin-field"],
)
def test_junk_is_refused_before_the_body_is_parsed(http, path, head, status, param, code):
    """Unknown fields and more JSON values than a route takes are refused by a scan that stops
    at the offence: the bodies below end in invalid JSON, which a full parse would report."""
    body = head + JUNK_TAIL
    assert len(body) < BODY_LIMIT
    resp = http.post(path, content=body, headers={"content-type": "application/json"})
    err = _assert_error(resp, status, param, code)
    assert repr(param) in err["message"] and path in err["message"], err
    assert http.post(E, json={"input": "x", "user": "u-1", "model": "m"}).status_code == 200


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket timeout: it did not)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _raw_error(raw: bytes, status: int, code: str) -> None:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), raw
    err = json.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == code, err
    assert err["type"] == "invalid_request_error"


def test_silent_and_slow_connections_are_closed(st_model):
    """Short timeouts; each socket's own timeout (10 s) fails the test if the server holds on."""
    limits = Limits(header_timeout_s=0.5, body_timeout_s=0.5, keep_alive_s=0.5)
    request = b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    with running(create_app(st_model, model_name="mini", limits=limits)) as r:
        address = ("127.0.0.1", int(r.url.rsplit(":", 1)[1]))

        def connect_() -> socket.socket:
            return socket.create_connection(address, timeout=10)

        with connect_() as s:  # connects, never sends a byte
            assert _read_until_closed(s) == b""
        with connect_() as s:  # half the headers
            s.sendall(request)
            _raw_error(_read_until_closed(s), 408, "request_timeout")
        with connect_() as s:  # the headers, then part of the body
            s.sendall(request + b'Content-Length: 100\r\n\r\n{"input": ')
            _raw_error(_read_until_closed(s), 408, "request_timeout")
        with connect_() as s:  # one whole request, then idle on the kept-alive connection
            s.sendall(request + b'Content-Length: 14\r\n\r\n{"input": "x"}')
            assert _read_until_closed(s).startswith(b"HTTP/1.1 200 ")
        with connect_() as s:  # not HTTP at all
            s.sendall(b"\x16\x03\x01 hello\r\n\r\n")
            _raw_error(_read_until_closed(s), 400, "invalid_http")
        assert httpx.post(r.url + E, json={"input": "still serving"}, timeout=60).status_code == 200


def test_unknown_route_and_method(http):
    _assert_error(http.get("/v1/nothing"), 404, None, "unknown_url")
    _assert_error(http.get(E), 405, None, "method_not_allowed")
    _assert_error(http.get("/v1/models/other-model"), 404, "model", "model_not_found")


# 4. concurrency and batching -----------------------------------------------------------
def test_concurrent_requests_are_batched(srv, st_model):
    n = 16
    texts = [f"Question {i}: when does tram number {i} leave Quay Street?" for i in range(n)]
    barrier = threading.Barrier(n)
    results: dict[int, Any] = {}
    before = _status(srv)["batching"]

    def call(i: int) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as c:
            barrier.wait(timeout=60)
            results[i] = c.post(f"{srv.url}{E}", json={"input": texts[i]})

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert sorted(results) == list(range(n))
    want = _expected(st_model, texts)
    for i, r in results.items():
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(
            r.json()["data"][0]["embedding"], want[i], atol=1e-5
        )  # each got its own slice
    after = _status(srv)["batching"]
    requests = after["requests"] - before["requests"]
    calls = after["model_calls"] - before["model_calls"]
    assert requests == n
    assert 1 <= calls < requests, (calls, requests)
    assert after["largest_batch"] > 1


# health, start-up checks, shutdown --------------------------------------------------------
def test_status_reports_model_and_collection(srv, tiny_chunks, qdrant_dir):
    assert srv.health() == {"status": "ok"}
    h = _status(srv)
    assert h["status"] == "ok" and h["model"] == "all-MiniLM-L6-v2" and h["dimension"] == 384
    want = {"name": COLLECTION, "store": str(qdrant_dir), "points": len(tiny_chunks)}
    assert h["collection"] == want
    assert h["batching"]["model_calls"] <= h["batching"]["requests"]


def test_embeddings_only_server(st_model):
    """No --qdrant and no key: embeddings work, search says how to enable it, admin routes are off."""
    with (
        running(create_app(st_model, model_name="mini")) as r,
        httpx.Client(base_url=r.url, timeout=60) as c,
    ):
        ok = c.post(E, json={"input": "x", "model": "whatever"})
        assert ok.status_code == 200 and ok.json()["model"] == "mini"
        err = _assert_error(c.post(S, json={"query": "x"}), 404, None, "search_not_configured")
        assert "--store" in err["message"]
        assert c.get("/health").json() == {"status": "ok"}
        _assert_error(c.post("/v1/reload"), 403, None, "api_key_required")


def test_without_a_key_admin_is_off_and_other_sites_are_refused(qdrant_dir, st_model, tmp_path):
    """``ragtune serve`` on 127.0.0.1 with no key: /v1/release and the others that touch the
    server answer 403; a page on another site (a foreign Origin, or a name rebound to
    127.0.0.1 in Host) is refused; /health says ok and nothing more."""
    loc = tmp_path / "copy"
    shutil.copytree(qdrant_dir, loc)
    app = create_app(st_model, model_name="mini", qdrant=str(loc), collection=COLLECTION)
    with running(app) as r, httpx.Client(base_url=r.url, timeout=60) as c:
        for method, path in [("POST", "/v1/release"), ("POST", "/v1/reload"), ("GET", "/v1/status")]:
            err = _assert_error(c.request(method, path), 403, None, "api_key_required")
            assert "--api-key" in err["message"], err
        assert c.post(S, json={"query": DEPOT_Q}).status_code == 200  # nothing was released
        evil = {"Origin": "http://evil.example"}
        for headers in ({**evil, "content-type": "text/plain"}, evil):  # a form post, a fetch
            resp = c.post("/v1/release", content=b"{}", headers=headers)
            err = _assert_error(resp, 403, None, "origin_not_allowed")
            assert "--allow-origin http://evil.example" in err["message"], err
        _assert_error(c.post(S, json={"query": "x"}, headers=evil), 403, None, "origin_not_allowed")
        _assert_error(c.get("/v1/models", headers={"Origin": "null"}), 403, None, "origin_not_allowed")
        assert c.post(E, json={"input": "x"}, headers={"Origin": r.url}).status_code == 200  # its own
        port = r.url.rsplit(":", 1)[1]
        for host in (f"evil.example:{port}", "localhost.evil.example", ""):  # DNS rebinding
            resp = c.post(S, json={"query": "x"}, headers={"Host": host})
            err = _assert_error(resp, 400, None, "host_not_allowed")
            assert "--allow-host" in err["message"], err
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"LOCALHOST:{port}"):
            assert c.post(E, json={"input": "x"}, headers={"Host": host}).status_code == 200, host
        health = c.get("/health")
        assert health.status_code == 200 and health.json() == {"status": "ok"}


def test_allowed_hosts_and_origins(st_model):
    """--allow-host and --allow-origin: a proxy's name and a web app's origin are served (the app
    with CORS headers, its preflight too); the port counts; bad values are one-line errors."""
    hosts = HostPolicy.for_bind(
        "127.0.0.1", None, allow_hosts=["api.example"], allow_origins=["http://App.example:3000/"]
    )
    app_origin = "http://app.example:3000"
    with running(create_app(st_model, model_name="mini", hosts=hosts)) as r, httpx.Client(
        base_url=r.url, timeout=60
    ) as c:
        ok = c.post(E, json={"input": "x"}, headers={"Origin": app_origin})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == app_origin
        preflight = {"Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"}
        assert c.options(E, headers={"Origin": app_origin, **preflight}).status_code == 200
        for origin in ("http://evil.example", "http://app.example:4000", "https://app.example:3000"):
            resp = c.options(E, headers={"Origin": origin, **preflight})
            _assert_error(resp, 403, None, "origin_not_allowed")
        assert c.post(E, json={"input": "x"}, headers={"Host": "api.example"}).status_code == 200
        resp = c.post(E, json={"input": "x"}, headers={"Host": "api.example.evil"})
        _assert_error(resp, 400, None, "host_not_allowed")
    bound = HostPolicy.for_bind("127.0.0.1", 8000)
    assert bound.host_ok("localhost", 8000) and not bound.host_ok("localhost", 8001)
    assert bound.origin_ok("http://127.0.0.1:8000") and not bound.origin_ok("http://127.0.0.1")
    everywhere = HostPolicy.for_bind("0.0.0.0", 8000, allow_hosts=["ml.internal:443"])
    assert everywhere.host_ok("10.1.2.3", 8000) and everywhere.host_ok("ml.internal", 443)
    assert not everywhere.host_ok("evil.example", 8000)  # rebinding needs a name
    with pytest.raises(ConfigError, match=r"--allow-origin 'app\.example'"):
        HostPolicy.for_bind(allow_origins=["app.example"])
    with pytest.raises(ConfigError, match=r"--allow-host 'a/b'"):
        HostPolicy.for_bind(allow_hosts=["a/b"])


def test_api_key_is_compared_as_utf8_bytes(st_model):
    """A non-ASCII key matches when the client sends it UTF-8 encoded; an empty key is refused."""
    key = "clé-ключ-🔑"
    with pytest.raises(ConfigError, match="API key is empty"):
        create_app(st_model, api_key="")
    with pytest.raises(ConfigError, match="API key is empty"):
        create_app(st_model, api_key="  ")
    with running(create_app(st_model, model_name="mini", api_key=key)) as r:

        def post(authorization: bytes) -> Any:
            headers = {"Authorization": authorization}
            return httpx.post(r.url + E, json={"input": "x"}, headers=headers, timeout=60)

        ok = post(b"Bearer " + key.encode("utf-8"))
        assert ok.status_code == 200, ok.text
        _assert_error(post(b"Bearer " + "clé".encode("latin-1")), 401, None, "invalid_api_key")
        _assert_error(post(b"Bearer " + key.encode("utf-8")[:-1]), 401, None, "invalid_api_key")


_PROBE = (
    "import sys; from ragtune.index.chunk_index import ChunkIndex, connect\n"
    "try:\n    print(ChunkIndex(connect(sys.argv[1]), sys.argv[2]).count())\n"
    "except Exception as e:\n    print(e)"
)


def test_store_is_held_while_serving_and_released_at_shutdown(qdrant_dir, st_model, tmp_path):
    loc = tmp_path / "copy"
    shutil.copytree(qdrant_dir, loc)
    app = create_app(st_model, model_name="mini", qdrant=str(loc), collection=COLLECTION)
    probe = [sys.executable, "-c", _PROBE, str(loc), COLLECTION]
    with running(app) as r:
        assert r.health() == {"status": "ok"}
        # another process cannot open the folder while the server holds it
        out = subprocess.run(probe, capture_output=True, text=True, timeout=120).stdout
        assert "another process holds it" in out
    # the lifespan closed the store: the lock is free again
    out = subprocess.run(probe, capture_output=True, text=True, timeout=120).stdout
    assert out.strip().isdigit() and int(out) > 0, out


def test_reload_serves_a_collection_reindexed_while_released(tmp_path, tiny_chunks, st_model):
    """The embedded folder has one writer at a time: release it, index, reload, see the points."""
    loc = tmp_path / "qdrant"
    depot = [ch for ch in tiny_chunks if ch.source == "depot.html"]
    others = [ch for ch in tiny_chunks if ch.source != "depot.html"]
    assert depot and others
    _index(loc, others, st_model)
    app = create_app(
        st_model, model_name="all-MiniLM-L6-v2", qdrant=str(loc), collection=COLLECTION, api_key=KEY
    )
    probe = [sys.executable, "-c", _PROBE, str(loc), COLLECTION]
    auth = {"Authorization": f"Bearer {KEY}"}
    with running(app) as r, httpx.Client(base_url=r.url, headers=auth, timeout=60) as c:
        top = c.post(S, json={"query": DEPOT_Q, "top_k": 1}).json()["results"][0]
        assert top["metadata"]["source"] != "depot.html"
        for path in ("/v1/reload", "/v1/release"):  # admin endpoints need the key
            _assert_error(httpx.post(r.url + path, timeout=60), 401, None, "missing_api_key")
        want = {"collection": COLLECTION, "status": "open", "points": len(others)}
        assert c.post("/v1/reload").json() == want  # reopens in place
        assert c.post("/v1/release").json() == {"collection": COLLECTION, "status": "released"}
        _assert_error(c.post(S, json={"query": DEPOT_Q}), 503, None, "collection_unavailable")
        assert c.get("/health").status_code == 503
        assert c.post(E, json={"input": "embeddings keep working"}).status_code == 200
        # released means released: another process opens the folder
        out = subprocess.run(probe, capture_output=True, text=True, timeout=120).stdout
        assert out.strip() == str(len(others)), out
        _index(loc, depot, st_model)  # the re-index, while the server serves embeddings only
        reloaded = c.post("/v1/reload")
        assert reloaded.json() == {**want, "points": len(others) + len(depot)}, reloaded.text
        top = c.post(S, json={"query": DEPOT_Q, "top_k": 1}).json()["results"][0]
        assert top["metadata"]["source"] == "depot.html"
        assert r.health() == {"status": "ok"}
        assert _status(r)["collection"]["points"] == len(tiny_chunks)
        # a reload that cannot open the collection is a 409 that says why; search waits meanwhile
        c.post("/v1/release")
        loc.rename(tmp_path / "moved")
        err = _assert_error(c.post("/v1/reload"), 409, None, "reload_failed")
        assert "no such folder" in err["message"]
        _assert_error(c.post(S, json={"query": DEPOT_Q}), 503, None, "collection_unavailable")
        (tmp_path / "moved").rename(loc)
        assert c.post("/v1/reload").json()["points"] == len(tiny_chunks)


_HOLD = (  # opens the folder (taking its lock), says how many points, holds it until stdin closes
    "import sys; from ragtune.index.chunk_index import ChunkIndex, connect\n"
    "c = connect(sys.argv[1]); print(ChunkIndex(c, sys.argv[2]).count(), flush=True)\n"
    "sys.stdin.read(); c.close()"
)


def test_a_locked_store_is_never_served(qdrant_dir, model_path, st_model, tmp_path, tiny_chunks):
    """Another process holds the folder: /v1/reload is a 409 and the server stays released
    (search 503, never the unusable store; /health: "degraded" and nothing else, the reason in
    /v1/status); ``ragtune serve`` on it fails at start-up in one line; freed, it reloads."""
    loc = tmp_path / "copy"
    shutil.copytree(qdrant_dir, loc)
    app = create_app(
        st_model, model_name="all-MiniLM-L6-v2", qdrant=str(loc), collection=COLLECTION, api_key=KEY
    )
    auth = {"Authorization": f"Bearer {KEY}"}
    serve_cmd = [
        sys.executable, "-m", "ragtune_server", "--model", str(model_path), "--store", str(loc),
        "--collection", COLLECTION, "--port", "0", "--log-level", "warning",
    ]
    with running(app) as r, httpx.Client(base_url=r.url, headers=auth, timeout=60) as c:
        assert c.post("/v1/release").status_code == 200
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLD, str(loc), COLLECTION],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == str(len(tiny_chunks))
            err = _assert_error(c.post("/v1/reload"), 409, None, "reload_failed")
            assert "another process holds it" in err["message"], err
            _assert_error(c.post(S, json={"query": DEPOT_Q}), 503, None, "collection_unavailable")
            health = httpx.get(r.url + "/health", timeout=30)
            assert health.status_code == 503 and health.json() == {"status": "degraded"}
            status = c.get("/v1/status").json()
            assert status["status"] == "degraded" and status["collection"]["store"] == str(loc)
            assert status["collection"]["error"], status
            # the CLI fails before it serves (a server that started would run until the timeout)
            proc = subprocess.run(serve_cmd, capture_output=True, text=True, timeout=300)
        finally:
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait(60)
        assert proc.returncode == 1, proc.stderr[-3000:]
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "another process holds it" in errors[0], proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
        assert c.post("/v1/reload").json()["points"] == len(tiny_chunks)  # freed: served again
        assert c.post(S, json={"query": DEPOT_Q}).status_code == 200


def test_serve_refuses_a_collection_of_another_model(tmp_path, st_model):
    loc = tmp_path / "qdrant"
    client = connect(loc)
    ChunkIndex(client, "other").ensure("other-model", "0" * 16, 384)
    client.close()
    with pytest.raises(IndexMismatchError, match="other-model"):
        serve(model=st_model, qdrant=str(loc), collection="other", port=1)
    with pytest.raises(InputError, match="does not exist"):
        serve(model=st_model, qdrant=str(loc), collection="missing", port=1)
    client = connect(loc)  # nothing left locked, nothing created
    assert not ChunkIndex(client, "missing").exists()
    client.close()


def test_serve_refuses_a_missing_folder(tmp_path):
    missing = tmp_path / "no-such-qdrant"
    with pytest.raises(InputError, match="no such folder"):
        serve(model="default", qdrant=str(missing), collection="c", port=1)
    assert not missing.exists()


@pytest.fixture
def ragtune_cli():
    """ragtune's CLI module with ``serve`` registered as the ``ragtune.commands`` entry point
    does (explicitly here: a source checkout's installed metadata may predate the entry point)."""
    from ragtune.cli import app as cli
    from ragtune_server.cli import register

    register(cli.app)
    return cli


def _option_names(help_text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", help_text))


SERVE_OPTIONS = {
    "--model", "--model-name", "--store", "--qdrant", "--collection", "--host", "--port", "--api-key",
    "--qdrant-api-key", "--device", "--threads", "--max-inputs", "--max-input-chars",
    "--max-batch-size", "--max-wait-ms", "--log-level", "--backend", "--backend-file", "--help",
    "--timeout-headers", "--timeout-body", "--timeout-keep-alive",
    "--allow-host", "--allow-origin", "--insecure-no-key", "--log-queries",
}


def test_ragtune_serve_and_python_m_have_the_same_options(ragtune_cli):
    from typer.testing import CliRunner

    env = {"COLUMNS": "200", "TERMINAL_WIDTH": "200", "NO_COLOR": "1"}
    res = CliRunner().invoke(ragtune_cli.app, ["serve", "--help"], env=env)
    assert res.exit_code == 0, res.output
    proc = subprocess.run(
        [sys.executable, "-m", "ragtune_server", "--help"],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env},
    )
    assert proc.returncode == 0, proc.stderr
    assert _option_names(res.output) == _option_names(proc.stdout) == SERVE_OPTIONS


def test_serve_defaults_are_the_servers_own():
    import typer.main

    from ragtune_server.cli import register

    app = typer.Typer()
    register(app)
    register(app)  # replaces, never duplicates
    assert [c.name for c in app.registered_commands] == ["serve"]
    params = {p.name: p.default for p in typer.main.get_command(app).params}
    assert params["max_inputs"] == Limits.max_inputs
    assert params["max_input_chars"] == Limits.max_input_chars
    assert params["max_batch_size"] == BatchConfig.max_batch_size
    assert params["max_wait_ms"] == BatchConfig.max_wait_ms


def test_cli_serve_error_is_one_line(tmp_path, capsys, monkeypatch, ragtune_cli):
    cli = ragtune_cli
    missing = tmp_path / "nope"
    argv = ["ragtune", "serve", "--model", "default", "--qdrant", str(missing), "--port", "1"]
    monkeypatch.setattr("sys.argv", argv)
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --qdrant") and "no such folder" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args,message",
    [
        (["--api-key", ""], "error: the API key is empty"),
        (["--api-key", " "], "error: the API key is empty"),
        (["--host", "0.0.0.0"], "error: --host 0.0.0.0 without an API key"),
        (["--host", "::"], "error: --host :: without an API key"),
        (["--allow-origin", "app.example"], "error: --allow-origin 'app.example'"),
        (["--allow-host", "a/b"], "error: --allow-host 'a/b'"),
        # let through by the flag: the next check (the missing store) speaks
        (["--host", "0.0.0.0", "--insecure-no-key"], "error: --qdrant"),
        (["--host", "0.0.0.0", "--api-key", "k"], "error: --qdrant"),
    ],
    ids=["empty-key", "blank-key", "wildcard-no-key", "v6-no-key", "bad-origin", "bad-host",
         "insecure-no-key", "keyed"],
)
def test_cli_serve_refuses_unsafe_options(tmp_path, capsys, monkeypatch, ragtune_cli, args, message):
    """Checked before the model loads, each in one line (the missing store keeps a server that
    would start anyway from starting)."""
    monkeypatch.delenv("RAGTUNE_API_KEY", raising=False)
    argv = ["ragtune", "serve", "--model", "default", "--store", str(tmp_path / "nope"), "--port", "1"]
    monkeypatch.setattr("sys.argv", [*argv, *args])
    with pytest.raises(SystemExit) as info:
        ragtune_cli.main()
    assert info.value.code == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message) and "Traceback" not in err, err


# the micro-batcher alone (fake encoder, no model) --------------------------------------
class FakeEncoder:
    """Vector of a text = [len(text), kind flag]; records each call's texts."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def __call__(self, texts: list[str], kind: str) -> Encoded:
        self.calls.append(list(texts))
        if self.fail_on in texts:
            raise ValueError(f"cannot encode {self.fail_on!r}")
        flag = 1.0 if kind == "query" else 0.0
        vecs = np.array([[len(t), flag] for t in texts], dtype=np.float32)
        return Encoded(vectors=vecs, tokens=[len(t) for t in texts])


def _batched(fake: FakeEncoder, jobs: list[tuple[list[str], str]], **config: Any) -> list[Any]:
    async def main() -> list[Any]:
        b = MicroBatcher(fake, BatchConfig(**config))
        b.start()
        try:
            return await asyncio.gather(*(b.submit(t, k) for t, k in jobs), return_exceptions=True)
        finally:
            await b.aclose()

    return asyncio.run(main())


def test_batcher_merges_and_slices():
    fake = FakeEncoder()
    jobs = [(["a" * i], "document") for i in range(1, 9)] + [(["bb", "ccc"], "document")]
    out = _batched(fake, jobs, max_wait_ms=0)
    assert len(fake.calls) == 1  # all queued before the collector ran: one call
    for (texts, _), res in zip(jobs, out):
        assert res.vectors[:, 0].tolist() == [len(t) for t in texts] and res.tokens == [
            len(t) for t in texts
        ]


def test_batcher_respects_max_batch_size_and_never_splits_a_request():
    fake = FakeEncoder()
    jobs = [(["x"] * 3, "document") for _ in range(5)]
    out = _batched(fake, jobs, max_batch_size=7, max_wait_ms=0)
    assert [len(c) for c in fake.calls] == [6, 6, 3]
    assert all(len(r.vectors) == 3 for r in out)
    big = FakeEncoder()
    _batched(big, [(["y"] * 10, "document")], max_batch_size=4)
    assert [len(c) for c in big.calls] == [10]  # larger than a batch: encoded alone, whole


def test_batcher_keeps_kinds_apart():
    fake = FakeEncoder()
    out = _batched(
        fake, [(["q1"], "query"), (["d1"], "document"), (["q2"], "query")], max_wait_ms=0
    )
    assert sorted(fake.calls) == [["d1"], ["q1", "q2"]]
    assert [r.vectors[0, 1] for r in out] == [1.0, 0.0, 1.0]


def test_batcher_one_bad_text_fails_only_its_request():
    fake = FakeEncoder(fail_on="boom")
    out = _batched(
        fake, [(["ok1"], "document"), (["boom"], "document"), (["ok2"], "document")], max_wait_ms=0
    )
    assert isinstance(out[1], ValueError)
    assert out[0].vectors[0, 0] == 3 and out[2].vectors[0, 0] == 3


def test_batcher_backpressure_and_close():
    async def main() -> None:
        b = MicroBatcher(FakeEncoder(), BatchConfig(max_queue_texts=4, max_wait_ms=0))
        b.start()
        first = asyncio.ensure_future(b.submit(["a", "b", "c"], "document"))
        await asyncio.sleep(0)  # let submit enqueue (scheduling, not timing)
        with pytest.raises(QueueFullError):
            await b.submit(["d", "e"], "document")
        await first
        await b.aclose()
        with pytest.raises(BatcherClosedError):
            await b.submit(["x"], "document")

    asyncio.run(main())


def test_log_queries_writes_one_line_per_search_and_takes_feedback(tmp_path, tiny_chunks, st_model):
    """--log-queries: one JSONL line per search with the query, returned ids/scores, mode, model
    fingerprint and time, and nothing from the request's headers; /v1/feedback records choices and
    refuses unknown query and result ids (4xx). Without the flag nothing is written."""
    from ragtune.encoders.loading import model_fingerprint
    from ragtune.pairs.querylog import LOG_FILE, read_query_log

    loc, logs = tmp_path / "qdrant", tmp_path / "logs"
    _index(loc, tiny_chunks, st_model)
    app = create_app(st_model, model_name="m", qdrant=str(loc), collection=COLLECTION, api_key=KEY, query_log=logs)
    secret = {"Authorization": f"Bearer {KEY}", "X-Forwarded-For": "203.0.113.9", "Cookie": "session=SECRET"}
    with running(app) as r, httpx.Client(base_url=r.url, headers=secret, timeout=60) as c:
        first = c.post(S, json={"query": DEPOT_Q, "top_k": 3, "mode": "dense"}).json()
        second = c.post(S, json={"query": "night tram interval", "top_k": 2}).json()
        ids = [h["id"] for h in first["results"]]
        ok = c.post("/v1/feedback", json={"query_id": first["query_id"], "chosen": [ids[0]], "rejected": ids[1:]})
        assert ok.status_code == 200 and ok.json()["status"] == "recorded", ok.text
        assert c.post("/v1/feedback", json={"query_id": second["query_id"], "rating": 0.2}).status_code == 200
        assert c.post("/v1/feedback", json={"query_id": "f" * 32, "chosen": [ids[0]]}).status_code == 404
        assert c.post("/v1/feedback", json={"query_id": first["query_id"], "chosen": ["no-such-id"]}).status_code == 422
        assert c.post("/v1/feedback", json={"query_id": first["query_id"]}).status_code == 400
        assert c.post("/v1/feedback", json={"query_id": first["query_id"], "rating": 7}).status_code in (400, 422)
    raw = (logs / LOG_FILE).read_text()
    assert len(raw.splitlines()) == 4  # two searches, two accepted feedbacks
    assert "SECRET" not in raw and "203.0.113.9" not in raw and KEY not in raw and "127.0.0.1" not in raw
    data = read_query_log(logs)
    rec = data.searches[first["query_id"]]
    assert rec["query"] == DEPOT_Q and rec["mode"] == "dense" and rec["top_k"] == 3
    assert [x["id"] for x in rec["results"]] == ids
    assert rec["results"][0]["score"] == pytest.approx(first["results"][0]["score"], abs=1e-5)
    assert rec["model"] == model_fingerprint(st_model) and rec["collection"] == COLLECTION and rec["time"]
    assert data.searches[second["query_id"]]["mode"] == "hybrid"
    assert [f["chosen"] for f in data.feedback] == [[ids[0]], []] and data.feedback[1]["rating"] == 0.2

    app = create_app(st_model, model_name="m", qdrant=str(loc), collection=COLLECTION, api_key=KEY)
    with running(app) as r, httpx.Client(base_url=r.url, headers=secret, timeout=60) as c:
        res = c.post(S, json={"query": DEPOT_Q, "top_k": 1}).json()
        assert "query_id" not in res
        assert c.post("/v1/feedback", json={"query_id": "x", "rating": 1}).status_code == 404
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("queries.jsonl*")] == [Path("logs") / LOG_FILE]
    assert len((logs / LOG_FILE).read_text().splitlines()) == 4  # the server without the flag wrote nothing


def test_query_log_rotates_at_its_cap(tmp_path):
    from ragtune.pairs.querylog import LOG_FILE, QueryLog, read_query_log

    log = QueryLog(tmp_path, max_bytes=2048, backups=2)
    ids = [log.search(f"question number {i} about trams", "hybrid", 1, [(f"c{i}", 0.5)]) for i in range(60)]
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [LOG_FILE, f"{LOG_FILE}.1", f"{LOG_FILE}.2"]
    assert all((tmp_path / f).stat().st_size <= 2048 for f in files)
    kept = read_query_log(tmp_path).searches
    assert list(kept) == ids[-len(kept):] and 0 < len(kept) < 60  # the newest, in order; the oldest dropped
