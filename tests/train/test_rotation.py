"""PCA rotation before Matryoshka training: cosines at full width unchanged, variance moved to the front."""

from __future__ import annotations

import numpy as np

from ragtune.train.rotation import insert_rotation, pca_rotation


def test_rotation_keeps_full_width_cosines_and_front_loads_variance(tiny_chunks, model_path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path)
    texts = [c.text for c in tiny_chunks] + [s for c in tiny_chunks for s in c.text.split(". ")]
    before = model.encode(texts, normalize_embeddings=True)
    rot = pca_rotation(model, texts)
    assert np.allclose(rot.T @ rot, np.eye(rot.shape[0]), atol=1e-6)  # orthogonal
    insert_rotation(model, rot)
    after = model.encode(texts, normalize_embeddings=True)
    assert np.allclose(before @ before.T, after @ after.T, atol=1e-5)  # same cosines at full width
    var = after.var(axis=0)
    assert var[:16].sum() > 2 * before.var(axis=0)[:16].sum()  # the first coordinates carry more


def test_rotated_model_saves_and_reloads(tmp_path, model_path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path)
    insert_rotation(model, np.linalg.qr(np.random.default_rng(0).normal(size=(384, 384)))[0])
    v = model.encode(["night trams"], normalize_embeddings=True)
    model.save(str(tmp_path / "m"))
    again = SentenceTransformer(str(tmp_path / "m"))
    assert [type(m).__name__ for m in again] == ["Transformer", "Pooling", "Dense", "Normalize"]
    assert np.allclose(again.encode(["night trams"], normalize_embeddings=True), v, atol=1e-6)
