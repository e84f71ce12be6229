"""Classification on frozen embeddings: labelled texts, a logistic-regression probe (the MTEB way), bootstrap intervals.

A labelled set is a JSONL or CSV file with ``text`` and ``label`` fields (and
optionally ``split``: ``train`` / ``test``; ``validation`` rows are left out),
or a folder whose top-level subfolders are the labels. A corpus folder such as
``examples/sample_corpus`` is such a folder: its files are read and chunked by
:mod:`ragtune.corpus.reader`, each chunk labelled by its folder, and the split keeps a
document's chunks together, so no document is on both sides.

Each model encodes the texts once through :class:`ragtune.encoders.encoder.Encoder`; a
scikit-learn ``LogisticRegression`` is fitted on the train part
``n_experiments`` times, each time on a different subsample of at most
``samples_per_label`` texts per label (MTEB's protocol), and predicts the test
part. Accuracy and macro-F1 are averaged over the experiments; their 95%
intervals resample test texts, and ``tuned - base`` is a paired bootstrap (both
models' predictions of a resampled text move together), as
:func:`ragtune.evaluation.metrics.paired_bootstrap` does for queries; both read the
interval and p-value off the resamples with :func:`~ragtune.evaluation.metrics.bootstrap_difference`.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ragtune.encoders.encoder import Encoder
from ragtune.errors import InputError
from ragtune.evaluation.metrics import bootstrap_difference, interval
from ragtune.progress import task

log = logging.getLogger(__name__)

#: what ``ragtune evaluate`` / ``ragtune train`` take as ``--task``
TASKS = ("retrieval", "classification")
#: the held-out share and seed of the fixed split; ``train --task classification``
#: learns only from the train part of the same split that evaluation holds out
TEST_FRACTION = 0.3
SPLIT_SEED = 0
#: a ``split`` column's values: these two are used, these others left out
_SPLITS = ("train", "test")
_OTHER_SPLITS = ("validation", "valid", "val", "dev")
_FORMATS = "a .jsonl or .csv file with 'text' and 'label' fields, or a folder whose subfolders are the labels"


@dataclass
class LabelledTexts:
    """Texts with one label each; ``splits`` (``train``/``test``) when the data fixes them, ``groups``
    (the document of each text, for a folder) so that a split keeps a document on one side.

    Args:
        texts: the texts.
        labels: one label per text (strings).
        name: a short name for reports.
        source: where the set was read from.
        kind: ``jsonl``, ``csv``, ``folder`` or ``custom``.
        splits: ``train`` or ``test`` per text, or None for a split made by :func:`split_indices`.
        groups: the document each text came from, or None (every text its own).
        info: facts for the report (counts, chunk size).

    Example:
        >>> data = LabelledTexts(["great", "awful", "superb", "dreadful"], ["pos", "neg", "pos", "neg"])
        >>> data.classes
        ['neg', 'pos']
    """

    texts: list[str]
    labels: list[str]
    name: str = "labelled texts"
    source: str = ""
    kind: str = "custom"
    splits: list[str] | None = None
    groups: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def classes(self) -> list[str]:
        """The labels, sorted (a label's index here is its class id)."""
        return sorted(set(self.labels))

    def subset(self, idx: Sequence[int] | np.ndarray) -> LabelledTexts:
        """The texts at ``idx``, with their labels, splits and groups."""
        pick = [int(i) for i in idx]

        def sel(xs: list[str] | None) -> list[str] | None:
            return None if xs is None else [xs[i] for i in pick]

        return replace(self, texts=[self.texts[i] for i in pick], labels=[self.labels[i] for i in pick],
                       splits=sel(self.splits), groups=sel(self.groups), info=dict(self.info))

    def split(self, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED) -> tuple[LabelledTexts, LabelledTexts]:
        """(train part, test part) of :func:`split_indices`."""
        train, test = split_indices(self, test_fraction, seed)
        return self.subset(train), self.subset(test)


def load_labelled(path: str | Path, chunk_size: int = 256) -> LabelledTexts:
    """Read a labelled set: JSONL / CSV (``text``, ``label``, optional ``split``) or a folder of label subfolders.

    A folder's files are read with :class:`ragtune.corpus.reader.CorpusReader` (any
    format it reads) and chunked at ``chunk_size`` tokens (a short file is one
    text); files directly in the folder have no label and are left out. A label
    with a single text (or document) cannot be both learned and tested, so it is
    left out with a warning.

    Args:
        path: the file or folder.
        chunk_size: tokens per text for a folder's documents (the encoder reads 256 by default).

    Raises:
        InputError: naming the file, line or field at fault (one line).

    Example:
        >>> data = load_labelled("examples/sample_corpus")  # doctest: +SKIP
        >>> data.classes[:2]  # doctest: +SKIP
        ['billing-and-warranty', 'installation']
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"{p}: no such labelled set (give {_FORMATS})")
    suffix = p.suffix.lower()
    if p.is_dir():
        data = _read_folder(p, chunk_size)
    elif suffix == ".jsonl":
        data = _from_rows(p, _jsonl_rows(p), "jsonl")
    elif suffix in (".csv", ".tsv"):
        data = _from_rows(p, _csv_rows(p, "\t" if suffix == ".tsv" else ","), "csv")
    else:
        raise InputError(f"{p}: not a labelled set (give {_FORMATS})")
    return _checked(data)


def _jsonl_rows(p: Path) -> list[tuple[int, Mapping[str, Any]]]:
    rows = []
    try:
        with p.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"{p}:{n}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise InputError(f"{p}:{n}: not a JSON object with 'text' and 'label' fields")
                rows.append((n, row))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot be read ({exc})") from None
    return rows


def _csv_rows(p: Path, delimiter: str) -> list[tuple[int, Mapping[str, Any]]]:
    try:
        with p.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh, delimiter=delimiter)
            columns = [c.strip() for c in reader.fieldnames or []]
            for need in ("text", "label"):
                if need not in columns:
                    raise InputError(f"{p}: no '{need}' column (columns: {', '.join(columns) or 'none'}; need 'text' and 'label')")
            reader.fieldnames = columns
            return [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{p}: cannot be read as CSV ({exc})") from None


def _from_rows(p: Path, rows: list[tuple[int, Mapping[str, Any]]], kind: str) -> LabelledTexts:
    texts, labels, splits = [], [], []
    has_split = any(str(r.get("split") or "").strip() for _, r in rows)
    for n, row in rows:
        text, label = row.get("text"), row.get("label")
        if not isinstance(text, str) or not text.strip():
            raise InputError(f"{p}:{n}: no 'text' (every row needs a non-empty 'text' and a 'label')")
        if label is None or isinstance(label, (dict, list)) or not str(label).strip():
            raise InputError(f"{p}:{n}: no 'label' (every row needs a 'text' and a non-empty 'label')")
        split = str(row.get("split") or "").strip().lower()
        if has_split and split in _OTHER_SPLITS:
            continue
        if has_split and split not in _SPLITS:
            raise InputError(f"{p}:{n}: split={row.get('split')!r}; use 'train' or 'test' (or leave the column out)")
        texts.append(text)
        labels.append(str(label).strip())
        splits.append(split)
    return LabelledTexts(texts, labels, name=p.stem, source=str(p), kind=kind, splits=splits if has_split else None)


def _read_folder(p: Path, chunk_size: int) -> LabelledTexts:
    from ragtune.corpus.reader import ChunkConfig, CorpusReader

    if not any(d.is_dir() and not d.name.startswith(".") for d in p.iterdir()):
        raise InputError(f"{p}: no subfolders; a labelled folder holds one subfolder per label (each file in it a text)")
    texts, labels, groups, loose = [], [], [], set()
    reader = CorpusReader(p, ChunkConfig(chunk_size=chunk_size))
    for chunk in reader:
        parts = PurePosixPath(chunk.source).parts
        if len(parts) < 2:
            loose.add(chunk.source)
            continue
        texts.append(chunk.text)
        labels.append(parts[0])
        groups.append(chunk.source)
    if loose:
        log.warning("%s: %d file(s) outside a label subfolder left out (%s)", p, len(loose), ", ".join(sorted(loose)[:3]))
    if not texts:
        raise InputError(f"{p}: no text in any label subfolder (each subfolder of the folder is a label)")
    info = {"chunk_size": chunk_size, "documents": len(set(groups))}
    return LabelledTexts(texts, labels, name=p.name, source=str(p), kind="folder", groups=groups, info=info)


def _checked(data: LabelledTexts) -> LabelledTexts:
    """Leave out labels that cannot be both learned and tested; refuse a set with fewer than two labels."""
    src = data.source or data.name
    if data.splits is None:
        units = data.groups or range(len(data))
        per_label = Counter(lbl for lbl, _ in set(zip(data.labels, units)))
        single = sorted(lbl for lbl, n in per_label.items() if n < 2)
        if single:
            what = "document" if data.groups else "text"
            log.warning("%s: label(s) %s have a single %s and are left out", src, ", ".join(map(repr, single)), what)
            data = data.subset([i for i, lbl in enumerate(data.labels) if lbl not in single])
    classes = data.classes
    if len(classes) < 2:
        raise InputError(f"{src}: {len(classes)} usable label(s) {classes}; classification needs at least two, each with two texts")
    if data.splits is not None:
        train = {lbl for lbl, s in zip(data.labels, data.splits) if s == "train"}
        if len(train) < 2 or "test" not in data.splits:
            raise InputError(f"{src}: the 'split' column needs 'train' rows of at least two labels and some 'test' rows")
    counts = Counter(data.labels)
    data.info = {"texts": len(data), "labels": len(classes), **data.info,
                 "per label": ", ".join(f"{k} {counts[k]}" for k in classes)}
    return data


def split_indices(data: LabelledTexts, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: the data's own ``split`` column, else a fixed stratified split.

    With ``groups`` (a folder's documents) the split is a stratified group fold
    (about ``test_fraction`` of the documents held out, a document's chunks on one
    side); otherwise ``train_test_split(stratify=labels)``.

    Args:
        data: the labelled texts.
        test_fraction: share held out for testing.
        seed: the split's random state (the same seed gives the same split).

    Example:
        >>> data = LabelledTexts(["a", "b", "c", "d"], ["x", "y", "x", "y"])
        >>> [len(i) for i in split_indices(data, 0.5)]
        [2, 2]
    """
    y = np.asarray(data.labels)
    if data.splits is not None:
        s = np.asarray(data.splits)
        return np.flatnonzero(s == "train"), np.flatnonzero(s == "test")
    if data.groups is not None:
        from sklearn.model_selection import StratifiedGroupKFold

        folds = StratifiedGroupKFold(n_splits=_folds(test_fraction), shuffle=True, random_state=seed)
        train, test = next(folds.split(np.zeros(len(y)), y, np.asarray(data.groups)))
    else:
        from sklearn.model_selection import train_test_split

        k = len(set(data.labels))
        n_test = max(k, int(np.ceil(test_fraction * len(y))))
        if len(y) - n_test < k:
            raise InputError(f"{data.source or data.name}: {len(y)} texts are too few to hold out a test text per label and keep one to learn from")
        train, test = train_test_split(np.arange(len(y)), test_size=n_test, stratify=y, random_state=seed)
    return np.sort(train), np.sort(test)


def _folds(test_fraction: float) -> int:
    """Folds of a grouped split whose one held-out fold is nearest ``test_fraction``."""
    return max(2, round(1 / test_fraction))


def undersample(y: np.ndarray, samples_per_label: int | None, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``samples_per_label`` texts per label, in a random order (MTEB's undersampling)."""
    order = rng.permutation(len(y))
    if samples_per_label is None:
        return order
    seen: Counter[int] = Counter()
    keep = []
    for i in order:
        if seen[int(y[i])] < samples_per_label:
            seen[int(y[i])] += 1
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def probe_predictions(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, n_experiments: int = 3,
    samples_per_label: int | None = 32, seed: int = 0, max_iter: int = 1000,
) -> np.ndarray:
    """``(n_experiments, len(x_test))`` class predictions of logistic regressions on subsampled train sets.

    Example:
        >>> x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> probe_predictions(x, np.array([0, 0, 1, 1]), x, n_experiments=1).tolist()
        [[0, 0, 1, 1]]
    """
    from sklearn.linear_model import LogisticRegression

    out = np.empty((n_experiments, len(x_test)), dtype=np.int64)
    for e in range(n_experiments):
        idx = undersample(y_train, samples_per_label, np.random.default_rng(seed + e))
        out[e] = LogisticRegression(max_iter=max_iter).fit(x_train[idx], y_train[idx]).predict(x_test)
    return out


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro-F1 over the last axis (broadcast over the others), as scikit-learn's ``f1_score(average="macro")``:
    the mean F1 of the classes present in either ``y_true`` or ``y_pred``.

    Example:
        >>> float(macro_f1(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2))
        0.7333333333333334
    """
    f1, present = [], []
    for c in range(n_classes):
        t, p = y_true == c, y_pred == c
        tp = (t & p).sum(-1)
        denom = t.sum(-1) + p.sum(-1)
        f1.append(np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0))
        present.append(denom > 0)
    f1s, have = np.stack(f1), np.stack(present)
    return (f1s * have).sum(0) / np.maximum(have.sum(0), 1)


def bootstrap_scores(
    y: np.ndarray, preds: Mapping[str, np.ndarray], n_classes: int, n_resamples: int = 1000,
    confidence: float = 0.95, seed: int = 0,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Accuracy and macro-F1 per model with bootstrap intervals over test texts, and paired ``tuned - base``.

    Args:
        y: test labels (class ids).
        preds: model label → ``(n_experiments, len(y))`` predictions.
        n_classes: number of classes.
        n_resamples: bootstrap resamples of the test texts (the same for every model: paired).
        confidence: interval coverage.
        seed: resampling seed.

    Returns:
        (scores: label → metric values and ``{metric}_ci``; comparison:
        ``"tuned-base"`` → metric → ``{mean_diff, ci_low, ci_high, confidence, p_value, n_texts, test}``).
    """
    rng = np.random.default_rng(seed)
    n = len(y)
    names = ("accuracy", "macro_f1")
    dist: dict[str, dict[str, list[np.ndarray]]] = {k: {m: [] for m in names} for k in preds}
    block = max(1, 4_000_000 // max(1, n * max(p.shape[0] for p in preds.values())))
    for start in range(0, n_resamples, block):
        idx = rng.integers(0, n, size=(min(block, n_resamples - start), n))
        yb = y[idx]
        for k, p in preds.items():
            pb = p[:, idx]  # (experiments, resamples, texts)
            dist[k]["accuracy"].append((pb == yb).mean(axis=(0, 2)))
            dist[k]["macro_f1"].append(macro_f1(yb, pb, n_classes).mean(0))
    scores: dict[str, dict[str, Any]] = {}
    for k, p in preds.items():
        per = {"accuracy": (p == y).mean(axis=1), "macro_f1": macro_f1(y, p, n_classes)}
        s: dict[str, Any] = {}
        for m in names:
            d = np.concatenate(dist[k][m])
            s[m] = round(float(per[m].mean()), 6)
            s[f"{m}_ci"] = [round(v, 6) for v in interval(d, confidence)]
        s["per_experiment"] = {m: [round(float(v), 6) for v in per[m]] for m in names}
        scores[k] = s
    comparison: dict[str, dict[str, Any]] = {}
    if "tuned" in preds and "base" in preds:
        same = bool(np.array_equal(preds["tuned"], preds["base"]))
        comparison["tuned-base"] = {}
        for m in names:
            diff = np.concatenate(dist["tuned"][m]) - np.concatenate(dist["base"][m])
            comparison["tuned-base"][m] = bootstrap_difference(
                diff, round(scores["tuned"][m] - scores["base"][m], 6), confidence, identical=same, count=("n_texts", n)
            )
    return scores, comparison


def evaluate_classification(
    data: LabelledTexts,
    models: Mapping[str, Any],
    test_fraction: float = TEST_FRACTION,
    seed: int = SPLIT_SEED,
    n_experiments: int = 3,
    samples_per_label: int | None = 32,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    max_iter: int = 1000,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Score each model's frozen embeddings with a logistic-regression probe; the report's ``classification`` record.

    Args:
        data: the labelled texts (:func:`load_labelled`).
        models: label (``base``, ``tuned``) → an :class:`~ragtune.encoders.encoder.Encoder`, a loaded
            ``SentenceTransformer`` or a model name.
        test_fraction: share held out when the data has no ``split`` column.
        seed: the split's seed; experiment ``e`` subsamples with ``seed + e``.
        n_experiments: probes fitted on different train subsamples, averaged (MTEB: 10).
        samples_per_label: train texts per label in each experiment (None: all; MTEB: 8).
        n_resamples: bootstrap resamples of the test texts.
        confidence: interval coverage.
        max_iter: ``LogisticRegression`` iterations.
        batch_size: encoding batch size.

    Returns:
        ``{labels, train, test, split, protocol, metrics, comparison, seconds}``; ``metrics``
        holds ``accuracy``, ``macro_f1`` with ``*_ci`` and ``per_class_f1`` per model.

    Example:
        >>> data = load_labelled("labelled.jsonl")  # doctest: +SKIP
        >>> r = evaluate_classification(data, {"base": "default", "tuned": "runs/x/model"})  # doctest: +SKIP
        >>> r["comparison"]["tuned-base"]["accuracy"]["mean_diff"]  # doctest: +SKIP
        0.12
    """
    train, test = split_indices(data, test_fraction, seed)
    classes = data.classes
    ids = {c: i for i, c in enumerate(classes)}
    y = np.asarray([ids[lbl] for lbl in data.labels], dtype=np.int64)
    used = np.concatenate([train, test])
    preds: dict[str, np.ndarray] = {}
    seconds: dict[str, dict[str, float]] = {}
    with task("Classification probes", total=len(models), unit="models") as t:
        for label, model in models.items():
            enc = model if isinstance(model, Encoder) else Encoder(model, batch_size)
            t0 = time.perf_counter()
            x = np.empty((len(data), enc.dimension), dtype=np.float32)
            x[used] = enc.encode_documents([data.texts[i] for i in used])
            t1 = time.perf_counter()
            preds[label] = probe_predictions(x[train], y[train], x[test], n_experiments, samples_per_label, seed, max_iter)
            seconds[label] = {"encode_s": round(t1 - t0, 3), "probe_s": round(time.perf_counter() - t1, 3)}
            t.advance()
    scores, comparison = bootstrap_scores(y[test], preds, len(classes), n_resamples, confidence, seed)
    for label, p in preds.items():
        per_class = np.mean([_per_class_f1(y[test], row, len(classes)) for row in p], axis=0)
        scores[label]["per_class_f1"] = {c: round(float(v), 4) for c, v in zip(classes, per_class)}
    if data.splits is not None:
        how = "the data's own split column"
    elif data.groups is not None:
        how = f"stratified by label, whole documents held out (1 in {_folds(test_fraction)}), seed {seed}"
    else:
        how = f"stratified by label, {test_fraction:.0%} held out, seed {seed}"
    return {
        "labels": classes,
        "train": len(train),
        "test": len(test),
        "split": how,
        "protocol": {
            "probe": "scikit-learn LogisticRegression on frozen, normalised embeddings",
            "max_iter": max_iter, "n_experiments": n_experiments, "samples_per_label": samples_per_label,
            "bootstrap_resamples": n_resamples, "confidence": confidence,
        },
        "metrics": scores,
        "comparison": comparison,
        "seconds": seconds,
    }


def _per_class_f1(y: np.ndarray, p: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros(n_classes)
    for c in range(n_classes):
        t, q = y == c, p == c
        denom = t.sum() + q.sum()
        out[c] = 2 * (t & q).sum() / denom if denom else 0.0
    return out
