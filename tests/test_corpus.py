"""Corpus ingestion through the real LlamaIndex readers, and its error paths."""

from __future__ import annotations

import logging

import pytest

from ragtune.corpus import ChunkConfig, html_to_text, load_corpus
from ragtune.errors import ConfigError, InputError


def test_every_format_is_read(tiny_corpus):
    res = load_corpus(tiny_corpus, ChunkConfig(chunk_size=128, chunk_overlap=16))
    sources = {c.source for c in res.chunks}
    assert sources == {"timetable.md", "fares.txt", "depot.html", "faq.jsonl", "history.pdf"}
    assert not res.skipped
    text = " ".join(c.text for c in res.chunks)
    assert "1998 opening ceremony" in text  # PDF page text
    assert "Eastfield depot" in text  # HTML body
    assert "# Bicycles on board" in text  # JSONL title kept as a heading
    pdf_pages = {c.metadata.get("page_label") for c in res.chunks if c.source == "history.pdf"}
    assert pdf_pages == {"1", "2"}


def test_chunk_ids_are_stable_uuids(tiny_corpus):
    import uuid

    a = load_corpus(tiny_corpus, ChunkConfig(chunk_size=128, chunk_overlap=16)).chunks
    b = load_corpus(tiny_corpus, ChunkConfig(chunk_size=128, chunk_overlap=16)).chunks
    assert [c.id for c in a] == [c.id for c in b]
    assert len({c.id for c in a}) == len(a)
    uuid.UUID(a[0].id)


def test_long_documents_are_split(tmp_path):
    (tmp_path / "long.txt").write_text(" ".join(f"Sentence number {i} is here." for i in range(400)))
    res = load_corpus(tmp_path, ChunkConfig(chunk_size=64, chunk_overlap=8))
    assert len(res.chunks) > 5


def test_corrupt_file_is_skipped_with_warning(tiny_corpus, tmp_path, caplog):
    import shutil

    folder = tmp_path / "c"
    shutil.copytree(tiny_corpus, folder)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4\n this is not really a pdf \x00\x01")
    (folder / "bad.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with caplog.at_level(logging.WARNING):
        res = load_corpus(folder, ChunkConfig(chunk_size=128, chunk_overlap=16))
    assert set(res.skipped) == {"broken.pdf", "bad.jsonl"}
    assert "broken.pdf" in caplog.text and "bad.jsonl" in caplog.text
    assert {c.source for c in res.chunks} >= {"timetable.md", "history.pdf"}


def test_missing_path_names_it(tmp_path):
    with pytest.raises(InputError, match="nope"):
        load_corpus(tmp_path / "nope")


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(InputError, match="empty"):
        load_corpus(tmp_path)


def test_folder_without_supported_files(tmp_path):
    (tmp_path / "image.xyz").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match="no supported documents"):
        load_corpus(tmp_path)


def test_all_files_unreadable_is_an_error(tmp_path):
    (tmp_path / "a.pdf").write_bytes(b"garbage")
    with pytest.raises(InputError, match="no text could be read"):
        load_corpus(tmp_path)


def test_bad_chunk_config():
    with pytest.raises(ConfigError, match="chunk_overlap"):
        ChunkConfig(chunk_size=100, chunk_overlap=100)


def test_html_keeps_headings_and_lists():
    text = html_to_text("<h1>Title</h1><p>Body text.</p><h2>Part</h2><ul><li>one</li><li>two</li></ul><script>x=1</script>")
    assert "# Title" in text and "## Part" in text
    assert "- one" in text and "x=1" not in text
