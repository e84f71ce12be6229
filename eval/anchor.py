"""The comparison anchor: LlamaIndex's deprecated ``SentenceTransformersFinetuneEngine``.

Installed for benchmarks only (``pip install -r eval/requirements-anchor.txt``:
``llama-index-finetuning`` and ``mistralai<2``, which it needs to import). It
is run as LlamaIndex's fine-tuning guide does: MNRL, batch 10, 2 epochs. Current
sentence-transformers requires a ``val_dataset`` for its ``fit`` path, so the
training set itself is passed as one (evaluation steps are left at the
engine's default).
"""

from __future__ import annotations

import time
from pathlib import Path


def available() -> bool:
    try:
        import llama_index.finetuning  # noqa: F401
    except Exception:  # noqa: BLE001 - it fails to import in several ways (mistralai, pydantic)
        return False
    return True


def train_anchor(train_json: Path, out_dir: Path, base: str, epochs: int = 2, batch_size: int = 10) -> float:
    """Fine-tune ``base`` with the LlamaIndex engine; returns wall seconds (load to saved model)."""
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import contextlib
    import tempfile

    from llama_index.finetuning import (
        EmbeddingQAFinetuneDataset,
        SentenceTransformersFinetuneEngine,
    )

    out_dir = Path(out_dir).resolve()
    t0 = time.perf_counter()
    ds = EmbeddingQAFinetuneDataset.from_json(str(train_json))
    engine = SentenceTransformersFinetuneEngine(
        ds,
        model_id=base,
        model_output_path=str(out_dir),
        batch_size=batch_size,
        epochs=epochs,
        val_dataset=ds,
        evaluation_steps=10**9,
        show_progress_bar=False,
    )
    # sentence-transformers' fit writes "checkpoints/" into the working directory
    with tempfile.TemporaryDirectory() as scratch, contextlib.chdir(scratch):
        engine.finetune()
    return time.perf_counter() - t0
