"""Stage 1 — corpus files to chunks, through LlamaIndex readers and node parsers.

A corpus is a file or a folder (symlinks are followed while they stay inside
it; :class:`ChunkConfig`'s ``follow_symlinks`` reads those that leave it). Each file is
read and chunked on its own so that one unreadable, corrupt or unsplittable file
is skipped with a warning instead of ending the run.
Chunks follow LlamaIndex's defaults (``SentenceSplitter``, 1024 tokens, 200
overlap) so they match what users already index; a chunk may be far longer than
the encoder reads, which :mod:`ragtune.encoders.windows` handles downstream.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePath
from typing import Any

from ragtune._io import read_jsonl, sha256_file, sha256_text, write_jsonl
from ragtune.errors import ConfigError, InputError
from ragtune.progress import track

log = logging.getLogger(__name__)

#: Namespace for chunk ids: uuid5(namespace, source + ordinal + text hash) is
#: stable across runs, so re-indexing the same corpus updates points in place.
CHUNK_NAMESPACE = uuid.UUID("5b0d6c0e-7a51-4c43-9d1e-2f7f2b6a9c10")

#: Reader metadata that describes the copy on disk rather than the document
#: (absolute paths, sizes, dates). Dropped before splitting: LlamaIndex's
#: splitter counts metadata against the chunk size, so keeping them would make
#: chunk boundaries (and ids) depend on where and when a file was read.
VOLATILE_METADATA = frozenset(
    {"file_path", "file_size", "file_type", "creation_date", "last_modified_date", "last_accessed_date"}
)

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".rst", ".text"}
HTML_SUFFIXES = {".html", ".htm"}
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | {".pdf", ".jsonl", ".docx", ".pptx", ".epub", ".csv"}

#: Longest text handed to NLTK's sentence tokenizer in one call, in characters.
#: NLTK runs punkt's regular expressions under a 5 s wall-clock limit
#: (``nltk.redos``), which a multi-megabyte paragraph (a dump without blank
#: lines) exceeds or not depending on CPU load. Far above any real paragraph,
#: so ordinary documents split exactly as LlamaIndex splits them.
MAX_SENTENCE_SPAN = 100_000
#: Where a longer paragraph is cut, best first (see :func:`bounded_pieces`).
_CUTS = ("\n\n", "\n", ". ", " ")


@dataclass
class Chunk:
    """One retrievable unit of text. ``id`` is a UUID string, stable for the same input."""

    id: str
    text: str
    doc_id: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Chunk:
        return cls(
            id=str(d["id"]),
            text=d["text"],
            doc_id=str(d.get("doc_id", d["id"])),
            source=str(d.get("source", "")),
            metadata=dict(d.get("metadata") or {}),
        )


@dataclass
class ChunkConfig:
    """How documents become chunks. Defaults are LlamaIndex's ``SentenceSplitter`` defaults."""

    chunk_size: int = 1024
    #: None: a fifth of the chunk, at most 200 tokens (LlamaIndex's 200 at its default 1024)
    chunk_overlap: int | None = None
    recursive: bool = True
    #: a larger file is skipped with a warning (None: no limit): chunking plain
    #: text takes roughly 0.6 s and 11 MB of memory per MB of file
    max_file_mb: float | None = 256
    #: read files and folders that symlinks inside the corpus point to outside it (default: such
    #: a link is skipped with a warning, so a link to ``/etc/passwd`` is not indexed and served)
    follow_symlinks: bool = False

    def __post_init__(self) -> None:
        if self.chunk_overlap is None:
            self.chunk_overlap = min(200, self.chunk_size // 5)
        if self.chunk_size < 16:
            raise ConfigError(f"chunk_size={self.chunk_size}: must be at least 16 tokens")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ConfigError(
                f"chunk_overlap={self.chunk_overlap}: must be >= 0 and below chunk_size={self.chunk_size}"
            )
        if self.max_file_mb is not None and self.max_file_mb <= 0:
            raise ConfigError(f"max_file_mb={self.max_file_mb}: must be positive (or None for no limit)")


@dataclass
class CorpusResult:
    """What ingestion produced and what it had to skip (and why)."""

    chunks: list[Chunk]
    files: dict[str, str]  # relative path -> sha256
    skipped: dict[str, str]  # relative path -> reason
    documents: int


def list_files(path: str | Path, recursive: bool = True, follow_symlinks: bool = False) -> tuple[Path, list[Path]]:
    """Resolve a corpus path to (root, files) (see :func:`scan_files`). Raises :class:`InputError` on a bad path."""
    p = Path(path).expanduser()
    try:
        p.stat()
    except FileNotFoundError:
        raise InputError(f"{p}: no such file or directory (give a document or a folder of documents)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    if p.is_file():
        return p.parent, [p]
    if not p.is_dir():
        raise InputError(f"{p}: neither a file nor a folder (give a document or a folder of documents)")
    files = sorted(scan_files(p, recursive, follow_symlinks=follow_symlinks))
    if not files:
        raise InputError(f"{p}: the folder is empty (expected documents: {_suffix_list()})")
    supported = [f for f in files if f.suffix.lower() in SUPPORTED_SUFFIXES]
    if not supported:
        raise InputError(f"{p}: no supported documents among {len(files)} files (supported: {_suffix_list()})")
    for f in files:
        if f.suffix.lower() not in SUPPORTED_SUFFIXES:
            log.warning("%s: skipped, unsupported file type %r", f, f.suffix)
    return p, supported


def scan_files(
    folder: Path,
    recursive: bool,
    parents: frozenset[str] = frozenset(),
    *,
    follow_symlinks: bool = False,
    root: str | None = None,
) -> Iterator[Path]:
    """Regular files under ``folder``, hidden ones left out, following symlinks that stay inside it.

    Hand-written because ``Path.glob("**")`` silently skips symlinked folders
    (Python 3.10-3.12; 3.13 only adds an opt-in). Skipped, each with a warning
    that says why: a symlink whose target lies outside the corpus folder
    (``root``, the real path of the folder first given), unless ``follow_symlinks``;
    a broken symlink; a link back to a folder that holds it (a loop: ``parents``
    are the real paths of the folders above); anything that is not a regular
    file or folder (a device such as ``/dev/zero``, a FIFO, a socket), which a
    reader could block on or read without end.
    """
    root = root or os.path.realpath(folder)
    here = parents | {os.path.realpath(folder)}
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        log.warning("%s: skipped, cannot list the folder (%s)", folder, exc.strerror or exc)
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        f = folder / entry.name
        try:
            link = entry.is_symlink()
            if link and not os.path.exists(f):
                log.warning("%s: skipped, a broken symlink (its target does not exist)", f)
                continue
            mode = f.stat().st_mode  # follows a symlink
        except OSError as exc:
            log.warning("%s: skipped, cannot be read (%s)", f, exc.strerror or exc)
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            log.warning("%s: skipped, not a regular file (a device, FIFO or socket)", f)
            continue
        target = os.path.realpath(f) if link else None
        if target is not None and not follow_symlinks and os.path.commonpath([root, target]) != root:
            log.warning("%s: skipped, a symlink to %s, outside the corpus folder "
                        "(follow_symlinks / --follow-symlinks reads it)", f, target)
            continue
        if stat.S_ISREG(mode):
            yield f
        else:  # a folder
            if not recursive:
                continue
            if os.path.realpath(f) in here:
                log.warning("%s: skipped, a symlink to a folder that contains it (a loop)", f)
                continue
            yield from scan_files(f, recursive, here, follow_symlinks=follow_symlinks, root=root)


class CorpusReader:
    """A corpus read one file at a time: iterate it for chunks, read what was skipped afterwards.

    Only one file's documents are in memory at a time, so a corpus larger than
    RAM streams through ``ragtune index`` (:meth:`ragtune.index.chunk_index.ChunkIndex.sync`
    consumes the chunks in bounded batches). One file that cannot be read is
    logged and skipped; if no file yields text, the iteration ends with
    :class:`InputError` naming the path.

    Example:
        >>> reader = CorpusReader("examples/sample_corpus")  # doctest: +SKIP
        >>> n = sum(1 for _ in reader); reader.skipped  # doctest: +SKIP
        {}
    """

    def __init__(self, path: str | Path, config: ChunkConfig | None = None) -> None:
        self.path = path
        self.config = config or ChunkConfig()
        self.root, self.paths = list_files(path, self.config.recursive, self.config.follow_symlinks)
        #: the file or folder read, as an absolute path (what a collection records it follows)
        self.corpus = Path(path).expanduser().resolve()
        self.files: dict[str, str] = {}  # relative path -> sha256
        self.skipped: dict[str, str] = {}  # relative path -> reason
        self.documents = 0
        self.chunks = 0

    def source(self, f: Path) -> str:
        """File ``f``'s chunks' ``source``: its path relative to the corpus folder (its name for a single file)."""
        single = f.parent == self.root and self.root == Path(self.path).expanduser().parent
        return f.name if single else f.relative_to(self.root).as_posix()

    def sources(self) -> list[str]:
        """The ``source`` of every file this reader will read, known before any is read."""
        return [self.source(f) for f in self.paths]

    def __iter__(self) -> Iterator[Chunk]:
        path, limit = self.path, self.config.max_file_mb
        for f in track(self.paths, "Reading documents", unit="files"):
            rel = self.source(f)
            step = "read"
            try:
                if limit is not None and (mb := f.stat().st_size / 2**20) > limit:
                    reason = f"too large: {mb:.0f} MB, over chunk.max_file_mb={limit:g}"
                    log.warning("%s: skipped, %s (raise the limit to read it)", f, reason)
                    self.skipped[rel] = reason
                    continue
                docs = [d for d in read_file(f) if d.text and d.text.strip()]
                if not docs:
                    log.warning("%s: skipped, no text could be extracted", f)
                    self.skipped[rel] = "no text extracted"
                    continue
                digest = sha256_file(f)
                step = "chunked"
                chunks = chunk_documents(docs, self.config, source=rel)
            except Exception as exc:  # noqa: BLE001 - a reader or splitter may raise anything on a bad file
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                log.warning("%s: skipped, could not be %s (%s)", f, step, reason)
                self.skipped[rel] = reason
                continue
            self.files[rel] = digest
            self.documents += len(docs)
            self.chunks += len(chunks)
            yield from chunks
        if not self.chunks:
            detail = "; ".join(f"{k}: {v}" for k, v in list(self.skipped.items())[:3])
            raise InputError(f"{path}: no text could be read from any file ({detail})")


def load_corpus(
    path: str | Path,
    config: ChunkConfig | None = None,
) -> CorpusResult:
    """Read every supported file under ``path`` and split it into chunks (all in memory; see :class:`CorpusReader`).

    One file that cannot be read is logged and skipped; if no file yields text
    the corpus is unusable and :class:`InputError` names the path.
    """
    reader = CorpusReader(path, config)
    chunks = list(reader)
    return CorpusResult(chunks=chunks, files=reader.files, skipped=reader.skipped, documents=reader.documents)


def chunk_documents(
    documents: Sequence[Any],
    config: ChunkConfig | None = None,
    *,
    source: str | None = None,
    root: str | Path | None = None,
) -> list[Chunk]:
    """Split LlamaIndex ``Document``s into chunks with ragtune's one id recipe.

    Every route into ragtune (a path through :func:`load_corpus`, or
    ``Document``s handed to the LlamaIndex helpers) ends here, so the same file
    gives the same chunk ids whichever way it came in, and indexing it both ways
    updates points instead of duplicating them. For that, a ``Document`` another
    reader made is taken as ragtune reads its file (:func:`as_ragtune_reads`:
    line ends as ``\n``, HTML as text, JSONL as one document per row).

    A chunk id is ``uuid5(CHUNK_NAMESPACE, "{source}#{part}:{ordinal}:{sha256(text)}")``:
    ``source`` is the file's path relative to the corpus root (its name for a
    single file), ``part`` the document's place among that file's documents (a
    PDF's pages), ``ordinal`` the chunk's place in its document.

    A chunk's ``doc_id`` is the id of the ``Document`` it came from (what
    LlamaIndex calls the node's ``ref_doc_id``, and ``index.delete_ref_doc``
    deletes by); with ``source`` (ragtune's own reader, whose ``Document``
    objects live only while a file is read) it is the stable ``source#part``.

    Args:
        documents: LlamaIndex ``Document`` objects, in reading order.
        config: chunk size and overlap (LlamaIndex's defaults when omitted).
        source: the source of *all* documents (``load_corpus`` passes each
            file's relative path). Without it each document's source comes from
            its ``file_path`` metadata relative to ``root``, else its
            ``file_name``, else its ``doc_id``.
        root: folder that ``file_path`` metadata is taken relative to (default:
            the deepest folder holding every document's file).

    Example:
        >>> from llama_index.core import SimpleDirectoryReader
        >>> docs = SimpleDirectoryReader("examples/sample_corpus").load_data()  # doctest: +SKIP
        >>> chunks = chunk_documents(docs)  # same ids as load_corpus("examples/sample_corpus")  # doctest: +SKIP
    """
    from llama_index.core import Document
    from llama_index.core.node_parser import SentenceSplitter

    config = config or ChunkConfig()
    splitter = SentenceSplitter(
        chunk_size=config.chunk_size, chunk_overlap=config.chunk_overlap, chunking_tokenizer_fn=_sentences()
    )
    sources = [source] * len(documents) if source is not None else _document_sources(documents, root)
    parts: dict[str, int] = {}
    chunks: list[Chunk] = []
    for given, src in zip(documents, sources):
        for doc in [given] if source is not None else as_ragtune_reads(given, src):
            text = doc.text or ""
            if not text.strip():
                continue
            part = parts.get(src, 0)
            parts[src] = part + 1
            meta = {k: v for k, v in (doc.metadata or {}).items() if k not in VOLATILE_METADATA and _jsonable(v)}
            meta.setdefault("file_name", PurePath(src).name)
            doc_key = f"{src}#{part}"
            doc_id = doc_key if source is not None else str(given.doc_id)
            # a fresh Document: the splitter sees the same metadata (and no reader's
            # excluded-keys lists) whichever reader made the original
            for ordinal, node in enumerate(splitter.get_nodes_from_documents([Document(text=text, metadata=meta)])):
                piece = node.get_content()
                if piece.strip():
                    chunks.append(Chunk(id=chunk_id(doc_key, ordinal, piece), text=piece, doc_id=doc_id, source=src,
                                        metadata=dict(meta)))
    return chunks


def _unix_lines(text: str) -> str:
    """``\r\n`` and ``\r`` line ends as ``\n``, as Python's text mode reads a file."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def as_ragtune_reads(doc: Any, source: str) -> list[Any]:
    """``doc`` as :func:`read_file` would have read its file, when another reader kept the file raw.

    ``SimpleDirectoryReader`` reads bytes (a Windows file keeps its ``\r\n``),
    and an ``.html`` file's markup and a ``.jsonl`` file's lines as one text;
    ragtune reads text files in Python's text mode (``\n``), the page's text and
    each row as a document. Any other document is returned as it is.
    """
    from llama_index.core import Document

    suffix = PurePath(source).suffix.lower()
    text = _unix_lines(doc.text or "")
    meta = dict(doc.metadata or {})
    if suffix in HTML_SUFFIXES and text.lstrip().startswith("<"):
        return [Document(text=html_to_text(text), metadata=meta)]
    if suffix == ".jsonl":
        with contextlib.suppress(ValueError):  # not JSON Lines of records: text someone wrote
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            if rows:
                return _jsonl_documents(rows, PurePath(source).name, meta)
    return [doc] if text == doc.text else [Document(text=text, metadata=meta)]


def _sentences() -> Callable[[str], list[str]]:
    """LlamaIndex's sentence tokenizer (NLTK punkt), fed at most :data:`MAX_SENTENCE_SPAN` characters a call."""
    from llama_index.core.node_parser.text.utils import split_by_sentence_tokenizer

    punkt = split_by_sentence_tokenizer()

    def split(text: str) -> list[str]:
        if len(text) <= MAX_SENTENCE_SPAN:
            return punkt(text)
        return [s for piece in bounded_pieces(text, MAX_SENTENCE_SPAN) for s in punkt(piece)]

    return split


def bounded_pieces(text: str, limit: int) -> Iterator[str]:
    """``text`` as consecutive pieces of at most ``limit`` characters that join back into it.

    Each cut falls after the last paragraph break in the second half of the
    window, else the last line break, sentence end or space there; a run of
    ``limit // 2`` characters with none of them is cut where the window ends.
    """
    start = 0
    while len(text) - start > limit:
        end = start + limit
        cut = next((i + len(sep) for sep in _CUTS if (i := text.rfind(sep, start + limit // 2, end)) >= 0), end)
        yield text[start:cut]
        start = cut
    yield text[start:]


def chunk_id(doc_key: str, ordinal: int, text: str) -> str:
    """The stable UUID of chunk ``ordinal`` of document ``doc_key`` (``source#part``) with ``text``."""
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{doc_key}:{ordinal}:{sha256_text(text)}"))


def _document_sources(documents: Sequence[Any], root: str | Path | None) -> list[str]:
    """Each document's source: ``file_path`` relative to ``root``, else ``file_name``, else its id."""
    paths = [(d.metadata or {}).get("file_path") for d in documents]
    located = [Path(p).expanduser().absolute() for p in paths if p]
    if root is not None:
        base: Path | None = Path(root).expanduser().absolute()
    elif located:
        base = Path(os.path.commonpath([p.parent for p in located]))
    else:
        base = None
    out = []
    for doc, p in zip(documents, paths):
        meta = doc.metadata or {}
        if p and base is not None:
            full = Path(p).expanduser().absolute()
            out.append(full.relative_to(base).as_posix() if full.is_relative_to(base) else full.name)
        else:
            out.append(str(meta.get("file_name") or doc.doc_id))
    return out


def read_file(path: Path) -> list[Any]:
    """Read one file into LlamaIndex ``Document`` objects with the reader for its type."""
    from llama_index.core import Document

    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return [Document(text=read_text(path), metadata={"file_name": path.name})]
    if suffix in HTML_SUFFIXES:
        return [Document(text=html_to_text(read_text(path)), metadata={"file_name": path.name})]
    if suffix == ".jsonl":
        return _read_jsonl_docs(path)
    if suffix == ".pdf":
        from llama_index.readers.file import PDFReader

        # one Document per page (LlamaIndex's default), so page labels survive
        return PDFReader(return_full_document=False).load_data(path)
    from llama_index.core import SimpleDirectoryReader

    return SimpleDirectoryReader(input_files=[str(path)], raise_on_error=True).load_data()


def read_text(path: Path) -> str:
    """A text file as UTF-8, else in the encoding charset-normalizer detects (with a warning naming it)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        from charset_normalizer import from_path

        best = from_path(path).best()
        # short Western texts tie among many single-byte code pages (cp1250 reads "à"
        # as "ŕ"): take cp1252, the commonest one, wherever it reads the bytes as cleanly
        western = from_path(path, cp_isolation=["cp1252"]).best()
        if western is not None and (best is None or western.chaos <= best.chaos):
            best = western
        if best is None:
            raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start}) and no other text encoding fits") from None
        log.warning("%s: not valid UTF-8, decoded as %s", path, best.encoding)
        # read again rather than str(best): read_text's newline handling, as for UTF-8 files
        return path.read_text(encoding=best.encoding)


def html_to_text(html: str) -> str:
    """HTML to plain text that keeps headings as Markdown ``#`` lines and list items.

    Headings matter downstream: the offline pair generator turns them into queries.
    """
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "nav", "footer"]):
        tag.decompose()
    for level in range(1, 7):
        for h in soup.find_all(f"h{level}"):
            h.replace_with(f"\n\n{'#' * level} {h.get_text(' ', strip=True)}\n\n")
    for li in soup.find_all("li"):
        li.insert_before("\n- ")
    for tr in soup.find_all("tr"):
        cells = [c.get_text(" ", strip=True) for c in tr.find_all(["td", "th"])]
        tr.replace_with("\n| " + " | ".join(cells) + " |")
    for block in soup.find_all(["p", "div", "br", "table", "ul", "ol", "section", "article"]):
        block.insert_after("\n\n")
    text = soup.get_text()
    lines = [" ".join(line.split()) for line in text.splitlines()]
    out, blank = [], False
    for line in lines:
        if not line:
            if not blank and out:
                out.append("")
            blank = True
            continue
        out.append(line)
        blank = False
    return "\n".join(out).strip()


def _read_jsonl_docs(path: Path) -> list[Any]:
    return _jsonl_documents(read_jsonl(path), path.name)


def _jsonl_documents(rows: Sequence[Any], file_name: str, metadata: dict[str, Any] | None = None) -> list[Any]:
    """One ``Document`` per JSON Lines row: its text (``text``, ``content`` or ``body``), titled, and
    the row's other fields as metadata over ``metadata``; a row that is not a record raises ``ValueError``."""
    from llama_index.core import Document

    docs = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"line {i + 1} is not a JSON object")  # noqa: TRY004 - bad input, not a bad call
        text = next((row[k] for k in ("text", "content", "body") if isinstance(row.get(k), str)), None)
        if text is None:
            raise ValueError(f"line {i + 1} has no 'text' field (also accepted: 'content', 'body')")
        title = row.get("title")
        full = f"# {title}\n\n{text}" if isinstance(title, str) and title.strip() else text
        meta = {k: v for k, v in row.items() if k not in ("text", "content", "body") and _jsonable(v)}
        meta["file_name"] = file_name
        meta["line"] = i + 1
        for k, v in (metadata or {}).items():
            meta.setdefault(k, v)
        docs.append(Document(text=full, metadata=meta))
    return docs


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def _suffix_list() -> str:
    return ", ".join(sorted(SUPPORTED_SUFFIXES))


def save_chunks(path: str | Path, chunks: Iterable[Chunk]) -> int:
    """Write ``chunks.jsonl`` atomically."""
    return write_jsonl(path, (c.to_dict() for c in chunks))


def load_chunks(path: str | Path) -> list[Chunk]:
    """Read ``chunks.jsonl``; a row without ``id``/``text`` raises :class:`InputError`."""
    try:
        rows = read_jsonl(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read chunks ({exc})") from exc
    out = []
    for i, r in enumerate(rows, 1):
        if "id" not in r or "text" not in r:
            raise InputError(f"{path}:{i}: a chunk needs 'id' and 'text' fields")
        out.append(Chunk.from_dict(r))
    return out
