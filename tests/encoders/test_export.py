"""Exported forms of a model (ONNX, ONNX int8, OpenVINO, OpenVINO int8) on ragtune's own stack.

Each form is exported from a copy of the bundled model (seconds), loaded with
``load_model(backend=...)`` and compared with the torch model's vectors; then
the same forms run behind RagtuneEmbedding, ``ragtune index/query/evaluate``
and the server.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.helpers import FACTS

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")

TEXTS = [
    "How often does the Harbor Line tram run at night?",
    "A monthly Harbor Line pass costs 58 euros; students pay 29 euros with a valid card.",
    "The tram fleet is maintained at the Eastfield depot, which opened in 2004. " * 6,
]
#: int8 forms stay this close to fp32 (cosine), fp32 forms closer still
MIN_COSINE = {"onnx": 0.9999, "onnx-int8": 0.97, "openvino": 0.999, "openvino-int8": 0.97}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, model_path, tiny_chunks):
    from ragtune.encoders.export import export_model
    from ragtune.encoders.runtime import TRANSFORMER_FORMATS

    folder = tmp_path_factory.mktemp("exported") / "model"
    shutil.copytree(model_path, folder)
    calibration = [c.text for c in tiny_chunks] * 4
    return folder, {fmt: export_model(folder, fmt, calibration=calibration) for fmt in TRANSFORMER_FORMATS}


def test_exports_are_laid_out_as_sentence_transformers_looks_for_them(exported):
    folder, files = exported
    assert files["onnx"] == folder / "onnx" / "model.onnx"
    assert files["onnx-int8"].parent == folder / "onnx" and files["onnx-int8"].name.startswith("model_qint8_")
    assert files["openvino"] == folder / "openvino" / "openvino_model.xml"
    assert files["openvino-int8"] == folder / "openvino" / "openvino_model_qint8_quantized.xml"
    assert files["onnx-int8"].stat().st_size < files["onnx"].stat().st_size / 2  # int8 weights


@pytest.mark.parametrize("fmt", ["onnx", "onnx-int8", "openvino", "openvino-int8"])
def test_each_form_gives_the_torch_models_vectors(exported, st_model, fmt):
    from ragtune.encoders.encoder import Encoder
    from ragtune.encoders.loading import load_model, model_fingerprint
    from ragtune.encoders.runtime import backend_of

    folder, files = exported
    model = load_model(folder, backend=backend_of(fmt), file=files[fmt])
    enc = Encoder(model)
    got = enc.encode_documents(TEXTS)
    ref = st_model.encode(TEXTS, normalize_embeddings=True)
    cos = (got * ref).sum(axis=1)
    assert cos.min() >= MIN_COSINE[fmt], (fmt, cos)
    # the same weights fingerprint: an index built with torch is searched with any form
    assert model_fingerprint(model) == model_fingerprint(st_model)


def test_missing_export_names_the_command(model_path, tmp_path):
    from ragtune.encoders.loading import load_model
    from ragtune.errors import InputError

    folder = tmp_path / "m"
    shutil.copytree(model_path, folder)
    with pytest.raises(InputError, match="ragtune export MODEL_DIR --format onnx"):
        load_model(folder, backend="onnx")


def test_llama_index_and_cli_run_on_an_exported_form(exported, tiny_corpus, tmp_path):
    """The README's LlamaIndex lines with backend="onnx" (default file: the int8 one), then
    ragtune index / query with --backend openvino in a subprocess."""
    from llama_index.embeddings.ragtune import RagtuneEmbedding
    from llama_index.vector_stores.ragtune import build_vector_index
    from tests.helpers import cli

    folder, files = exported
    emb = RagtuneEmbedding(model_path=str(folder), backend="onnx")
    assert emb.encoder.model.ragtune_backend["file"] == str(files["onnx-int8"])
    index = build_vector_index(tiny_corpus, emb, location=tmp_path / "li", chunk_size=128)
    nodes = index.as_retriever(similarity_top_k=3).retrieve("Which depot maintains the tram fleet?")
    assert nodes[0].node.metadata["source"] == "depot.html"
    index.vector_store.close()

    q = str(tmp_path / "q")
    cli("index", str(tiny_corpus), "--model", str(folder), "--qdrant", q, "--collection", "c", "--chunk-size", "128",
        "--backend", "openvino")
    question, source = next(iter(FACTS.items()))
    out = cli("query", question, "--model", str(folder), "--qdrant", q, "--collection", "c", "--json",
              "--backend", "openvino", "--backend-file", str(files["openvino"])).stdout
    assert json.loads(out.splitlines()[0])["source"] == source


def test_server_serves_an_exported_form(exported):
    """The server on the int8 ONNX form: its vectors are the exported model's own (1e-3 cosine)."""
    import httpx

    from ragtune.encoders.encoder import Encoder
    from ragtune.encoders.loading import load_model
    from ragtune_server import create_app
    from tests.helpers import running

    folder, files = exported
    app = create_app(str(folder), model_name="mini-int8", backend="onnx", backend_file=str(files["onnx-int8"]))
    with running(app) as r:
        resp = httpx.post(f"{r.url}/v1/embeddings", json={"input": TEXTS, "model": "mini-int8"}, timeout=60)
    assert resp.status_code == 200
    got = np.asarray([d["embedding"] for d in resp.json()["data"]])
    ref = Encoder(load_model(folder, backend="onnx", file=files["onnx-int8"])).encode_documents(TEXTS)
    assert (got * ref).sum(axis=1).min() >= 1 - 1e-3


def test_evaluate_on_an_exported_form(exported, tiny_chunks, tmp_path):
    """ragtune evaluate --backend onnx: the report names the form, and its figures match the
    torch model's within int8 noise on a labelled set made from the tiny corpus."""
    from tests.helpers import cli

    folder, files = exported
    data = tmp_path / "qa.json"
    corpus = {c.id: c.text for c in tiny_chunks}
    queries = {f"q{i}": q for i, q in enumerate(FACTS)}
    by_source = {c.source: c.id for c in tiny_chunks}
    relevant = {f"q{i}": [by_source[src]] for i, src in enumerate(FACTS.values())}
    data.write_text(json.dumps({"queries": queries, "corpus": corpus, "relevant_docs": relevant}))
    cli("evaluate", "--model", str(folder), "--data", str(data), "--out", str(tmp_path / "r"), "--baseline", "default",
        "--no-long", "--backend", "onnx", "--backend-file", str(files["onnx-int8"]))
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert "onnx" in report["models"]["tuned"]
    tuned, base = report["metrics"]["tuned"]["384"], report["metrics"]["base"]["384"]
    assert abs(tuned["ndcg@10"] - base["ndcg@10"]) <= 0.05  # the same model, int8 against torch


def test_static_student_is_a_sentence_transformers_folder_that_retrieves(model_path, tiny_pairs, tiny_chunks, tmp_path):
    """model2vec distils the (here: bundled) model's token vectors, the run's pairs tune them
    in float32, and the folder loads as any model: Encoder, RagtuneEmbedding, whole chunks read."""
    pytest.importorskip("model2vec")
    from sentence_transformers import SentenceTransformer

    from llama_index.embeddings.ragtune import RagtuneEmbedding
    from ragtune.encoders.encoder import Encoder
    from ragtune.encoders.loading import READS_ALL
    from ragtune.train.static import STATIC_CARD, StaticSettings, distill_static

    out = distill_static(model_path, tiny_pairs, tmp_path / "static",
                         StaticSettings(pca_dims=64, epochs=1, matryoshka_dims=(64, 32)))
    card = json.loads((out / STATIC_CARD).read_text())
    assert card["steps"] >= 1 and card["train_pairs"] == len(tiny_pairs)
    st = SentenceTransformer(str(out))
    assert st[0].embedding.weight.dtype.is_floating_point and str(st[0].embedding.weight.dtype) == "torch.float32"
    enc = Encoder(st)
    assert enc.max_seq_length == READS_ALL and len(enc.encode_windows([tiny_chunks[0].text]).vectors) == 1
    docs = enc.encode_documents([c.text for c in tiny_chunks])
    hits = 0
    for question, source in FACTS.items():
        scores = docs @ enc.encode_queries([question])[0]
        top = [tiny_chunks[i].source for i in np.argsort(-scores)[:3]]
        hits += source in top
    assert hits >= 4, hits
    emb = RagtuneEmbedding(model_path=str(out))
    assert len(emb.get_query_embedding("tram fares")) == 64
