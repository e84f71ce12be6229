"""Corpus ingestion through the real LlamaIndex readers, and its error paths."""

from __future__ import annotations

import hashlib
import logging
import os

import pytest

from ragtune.corpus.reader import ChunkConfig, bounded_pieces, html_to_text, load_corpus
from ragtune.errors import ConfigError, InputError
from tests.helpers import SAMPLE_CORPUS


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


@pytest.mark.parametrize("name", ["nope", "file.txt/inside"])
def test_missing_path_names_it(tmp_path, name):
    (tmp_path / "file.txt").write_text("text")
    with pytest.raises(InputError) as err:
        load_corpus(tmp_path / name)
    assert str(tmp_path / name) in str(err.value) and "\n" not in str(err.value)


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


# sha256 of the chunk ids, one a line, computed before long paragraphs were cut
# for the sentence splitter: ids hash source, ordinal and text, so any change in
# how ordinary documents chunk (here or in a LlamaIndex upgrade) shows up here
SAMPLE_CHUNK_IDS = {
    (1024, None): (57, "e9cc205a2d79b763ed12f13eeffbf8fe8128add63fa4e51bd5614c31f1cd0042"),
    (128, 16): (381, "6af256a2b2268d76715816a26cabf845b7377597fccfac00cdb1c4ba7b66dcc0"),
}


@pytest.mark.parametrize(("size", "overlap"), list(SAMPLE_CHUNK_IDS))
def test_sample_corpus_chunks_are_unchanged(size, overlap):
    chunks = load_corpus(SAMPLE_CORPUS, ChunkConfig(chunk_size=size, chunk_overlap=overlap)).chunks
    digest = hashlib.sha256("\n".join(c.id for c in chunks).encode()).hexdigest()
    assert (len(chunks), digest) == SAMPLE_CHUNK_IDS[size, overlap]


def test_bounded_pieces_cut_at_breaks_and_join_back():
    text = "First paragraph. " * 40 + "\n\n" + "Second one, a single line. " * 80 + "x" * 3000
    pieces = list(bounded_pieces(text, 1000))
    assert "".join(pieces) == text
    assert all(len(p) <= 1000 for p in pieces)
    assert pieces[0].endswith("\n\n")  # the paragraph break, not the last space before 1000
    assert all(p.endswith(". ") for p in pieces[1:-4])  # sentence ends inside the paragraph
    assert list(bounded_pieces("short", 1000)) == ["short"]


def test_huge_single_paragraph_among_good_files(tiny_corpus, tmp_path, monkeypatch):
    """11 MB without a blank line: NLTK's regex time limit used to end the run, depending on load."""
    import shutil

    import nltk.redos

    # a tighter limit than NLTK's 5 s makes the old failure certain rather than load-dependent;
    # each bounded piece takes a few hundredths of a second
    monkeypatch.setattr(nltk.redos, "DEFAULT_TIMEOUT", 1.0)
    folder = tmp_path / "c"
    shutil.copytree(tiny_corpus, folder)
    sentence = "The quick brown fox jumps over the lazy dog near the river bank, number {}. "
    (folder / "big.txt").write_text("".join(sentence.format(i) for i in range(140_000)))
    assert (folder / "big.txt").stat().st_size > 11_000_000
    res = load_corpus(folder)
    assert not res.skipped
    sources = {c.source for c in res.chunks}
    assert sources >= {"timetable.md", "fares.txt", "history.pdf", "big.txt"}
    big = [c.text for c in res.chunks if c.source == "big.txt"]
    assert "number 0." in big[0] and "number 139999." in big[-1]


def test_file_that_fails_to_chunk_is_skipped(tiny_corpus, tmp_path, monkeypatch, caplog):
    import shutil

    import ragtune.corpus.reader as corpus

    folder = tmp_path / "c"
    shutil.copytree(tiny_corpus, folder)
    real = corpus.chunk_documents

    def chunk_documents(docs, config=None, *, source=None, root=None):
        if source == "fares.txt":
            raise TimeoutError("regular-expression match exceeded its 5.0s time limit")
        return real(docs, config, source=source, root=root)

    monkeypatch.setattr(corpus, "chunk_documents", chunk_documents)
    with caplog.at_level(logging.WARNING):
        res = load_corpus(folder, ChunkConfig(chunk_size=128, chunk_overlap=16))
    assert set(res.skipped) == {"fares.txt"} and "TimeoutError" in res.skipped["fares.txt"]
    assert "fares.txt" in caplog.text and "could not be chunked" in caplog.text
    assert "fares.txt" not in res.files and "timetable.md" in {c.source for c in res.chunks}


def test_file_over_the_size_limit_is_skipped(tmp_path, caplog):
    (tmp_path / "good.md").write_text("# Good\n\nThe tram runs every six minutes.\n")
    (tmp_path / "big.txt").write_text("Too long a text. " * 2000)  # 34 kB
    with caplog.at_level(logging.WARNING):
        res = load_corpus(tmp_path, ChunkConfig(max_file_mb=0.01))
    assert set(res.skipped) == {"big.txt"} and "too large" in res.skipped["big.txt"]
    assert "big.txt" in caplog.text and "max_file_mb" in caplog.text
    assert {c.source for c in res.chunks} == {"good.md"}
    with pytest.raises(ConfigError, match="max_file_mb"):
        ChunkConfig(max_file_mb=0)


@pytest.mark.parametrize("name", ["menu.txt", "menu.md"])
def test_latin1_text_is_decoded_with_warning(tmp_path, caplog, name):
    (tmp_path / name).write_bytes("Le café ouvre à 8h. Crème brûlée près de la fenêtre.\n".encode("latin-1"))
    with caplog.at_level(logging.WARNING):
        res = load_corpus(tmp_path)
    assert not res.skipped
    assert "Le café ouvre à 8h. Crème brûlée près de la fenêtre." in res.chunks[0].text
    assert name in caplog.text and "not valid UTF-8, decoded as cp1252" in caplog.text


def test_symlinked_folder_is_followed_and_loops_are_cut(tmp_path, caplog):
    corpus, shared = tmp_path / "corpus", tmp_path / "shared"
    (corpus / "sub").mkdir(parents=True)
    shared.mkdir()
    (corpus / "a.md").write_text("# A\n\nThe depot is at Eastfield.\n")
    (shared / "b.md").write_text("# B\n\nThe night tram runs every 30 minutes.\n")
    try:
        (corpus / "linked").symlink_to(shared, target_is_directory=True)
    except OSError:
        pytest.skip("this filesystem cannot make symlinks")
    (shared / "back").symlink_to(corpus, target_is_directory=True)  # corpus/linked/back -> corpus
    (corpus / "sub" / "up").symlink_to(corpus / "sub", target_is_directory=True)
    (corpus / "gone").symlink_to(tmp_path / "missing")
    with caplog.at_level(logging.WARNING):
        res = load_corpus(corpus, ChunkConfig(follow_symlinks=True))  # "linked" leaves the corpus folder
    assert {c.source for c in res.chunks} == {"a.md", "linked/b.md"}
    for name in (os.path.join("linked", "back"), os.path.join("sub", "up")):
        assert f"{name}: skipped, a symlink to a folder that contains it" in caplog.text
    assert "gone: skipped, a broken symlink" in caplog.text


def test_symlinks_out_of_the_corpus_and_special_files_are_skipped(tmp_path, caplog):
    """A link to a file or folder outside the corpus is not read unless follow_symlinks; a link
    to a device, and a FIFO, are skipped as what they are (not "a broken symlink"); a link
    that stays inside the corpus is read."""
    corpus, outside = tmp_path / "corpus", tmp_path / "outside"
    (corpus / "sub").mkdir(parents=True)
    outside.mkdir()
    (corpus / "a.md").write_text("# A\n\nThe depot is at Eastfield.\n")
    (outside / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (outside / "notes.md").write_text("# Private\n\nThe safe code is 1234.\n")
    try:
        (corpus / "passwd.txt").symlink_to(outside / "passwd")
    except OSError:
        pytest.skip("this filesystem cannot make symlinks")
    (corpus / "private").symlink_to(outside, target_is_directory=True)
    (corpus / "sub" / "again.md").symlink_to(corpus / "a.md")  # inside the corpus: read
    (corpus / "zero.txt").symlink_to("/dev/zero")
    os.mkfifo(corpus / "pipe.txt")
    with caplog.at_level(logging.WARNING):
        res = load_corpus(corpus)
    assert {c.source for c in res.chunks} == {"a.md", "sub/again.md"}
    for name, target in (("passwd.txt", outside / "passwd"), ("private", outside)):
        assert f"{name}: skipped, a symlink to {target}, outside the corpus folder" in caplog.text
    assert "--follow-symlinks" in caplog.text
    for name in ("zero.txt", "pipe.txt"):
        assert f"{name}: skipped, not a regular file (a device, FIFO or socket)" in caplog.text
    assert "broken symlink" not in caplog.text
    followed = load_corpus(corpus, ChunkConfig(follow_symlinks=True))
    assert {c.source for c in followed.chunks} == {"a.md", "sub/again.md", "passwd.txt", "private/notes.md"}
