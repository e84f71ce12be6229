"""``ragtune export``: the model as ONNX / OpenVINO (fp32 or int8), or a distilled static student."""

from __future__ import annotations

from pathlib import Path

import typer

from ragtune import progress
from ragtune.cli import options as o
from ragtune.cli.output import echo, showing_progress
from ragtune.encoders.runtime import FORMATS
from ragtune.errors import RagtuneError


def export(
    model: Path = typer.Argument(..., help="A model folder (what ragtune train or run wrote)."),
    formats: str = typer.Option(..., "--format", "-f", help=f"Comma-separated: {', '.join(FORMATS)}."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Folder to write (default: inside MODEL, where sentence-transformers looks)."),
    calibration: Path | None = typer.Option(
        None, "--calibration",
        help="Texts for openvino-int8: chunks.jsonl, pairs.jsonl or a corpus folder (default: the run's chunks.jsonl beside MODEL).",
    ),
    pairs: Path | None = typer.Option(
        None, "--pairs", help="Training pairs for the static student (default: the run's pairs.jsonl beside MODEL)."
    ),
) -> None:
    """Write the model as ONNX / OpenVINO (fp32 or int8), or distil a static student, for faster CPU inference."""
    from ragtune.encoders.export import export_model
    from ragtune.encoders.runtime import static_folder

    wanted = o.formats(formats)
    texts = _calibration_texts(calibration, model) if "openvino-int8" in wanted else None
    with showing_progress():
        for fmt in progress.track(wanted, "Exporting", unit="forms"):
            if fmt == "static":
                from ragtune.pairs import load_pairs
                from ragtune.train.static import distill_static

                path = distill_static(model, load_pairs(_beside(pairs, model, "pairs.jsonl")), out or static_folder(model))
                echo(f"static: {path} (a sentence-transformers folder: --model {path})")
                continue
            path = export_model(model, fmt, out, calibration=texts)
            echo(f"{fmt}: {path} ({path.stat().st_size / 2**20:.1f} MB)")


def _calibration_texts(path: Path | None, model: Path) -> list[str]:
    """The texts int8 calibration sees: chunks or pairs of a run, or a corpus folder read as chunks."""
    from ragtune.corpus.reader import load_chunks, load_corpus
    from ragtune.pairs import load_pairs

    path = _beside(path, model, "chunks.jsonl")
    if path.is_dir():
        return [c.text for c in load_corpus(path).chunks]
    if path.name.endswith("pairs.jsonl"):
        return [p.positive for p in load_pairs(path)]
    return [c.text for c in load_chunks(path)]


def _beside(path: Path | None, model: Path, name: str) -> Path:
    """``path``, or the run's ``name`` beside the model folder; a missing one is a one-line error."""
    path = path or Path(model).parent / name
    if not path.exists():
        raise RagtuneError(f"{path}: no such file; pass the run's {name} (or another) explicitly")
    return path
