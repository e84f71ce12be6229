"""LlamaIndex LLMs from a short ``provider:model`` spec, for every stage that needs one.

Both pair generation (:class:`ragtune.pairs.llm.LLMGenerator`) and evaluation
(the ragas judge in :func:`ragtune.pipeline.stages.rag_metrics`) take an LLM named on
the command line, so the spec parser lives here, below both. The provider
packages are optional extras, imported only when a spec asks for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ragtune.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from llama_index.core.llms import LLM

__all__ = ["llm_from_spec"]

_PROVIDERS: dict[str, tuple[str, str, str]] = {
    # provider: (module, class, pip package)
    "openai": ("llama_index.llms.openai", "OpenAI", "llama-index-llms-openai"),
    "ollama": ("llama_index.llms.ollama", "Ollama", "llama-index-llms-ollama"),
    "openai-like": ("llama_index.llms.openai_like", "OpenAILike", "llama-index-llms-openai-like"),
}
_SPEC_EXAMPLES = "openai:gpt-4o-mini, ollama:llama3.1 or openai-like:MODEL@http://localhost:8000/v1"


def llm_from_spec(spec: str, **kwargs: Any) -> LLM:
    """A LlamaIndex LLM from a CLI spec ``provider:model``.

    ``openai:gpt-4o-mini`` (key from ``OPENAI_API_KEY``), ``ollama:llama3.1``
    (a local Ollama server; model tags with colons such as ``llama3.1:8b``
    work), ``openai-like:MODEL@BASE_URL`` (vLLM, llama.cpp, LM Studio...).
    The provider packages are optional: a missing one raises
    :class:`~ragtune.errors.ConfigError` naming what to install.

    Args:
        spec: ``provider:model``, one of the forms above.
        **kwargs: passed to the LLM class (``temperature=...``).

    Returns:
        The LlamaIndex ``LLM`` instance.

    Example::

        from ragtune.llm import llm_from_spec

        llm = llm_from_spec("ollama:llama3.1:8b", temperature=0.2)
        llm = llm_from_spec("openai-like:qwen2.5@http://localhost:8000/v1")
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError(f"llm spec {spec!r}: expected provider:model, e.g. {_SPEC_EXAMPLES}")
    provider, _, model = spec.partition(":")
    provider, model = provider.strip().lower(), model.strip()
    if provider not in _PROVIDERS:
        raise ConfigError(
            f"llm spec {spec!r}: unknown provider {provider!r}; choose from {', '.join(_PROVIDERS)} "
            f"(e.g. {_SPEC_EXAMPLES}), or build a LlamaIndex LLM in Python and pass it to LLMGenerator"
        )
    if provider == "openai-like":
        model, _, base_url = model.partition("@")
        model, base_url = model.strip(), base_url.strip()
        if not base_url:
            raise ConfigError(
                f"llm spec {spec!r}: openai-like needs MODEL@BASE_URL, e.g. qwen2.5@http://localhost:8000/v1"
            )
    if not model:
        raise ConfigError(
            f"llm spec {spec!r}: no model name after '{provider}:'; e.g. {_SPEC_EXAMPLES}"
        )
    cls = _import_provider(provider)
    if provider == "openai-like":
        kwargs.setdefault("api_base", base_url)
        kwargs.setdefault("is_chat_model", True)
        kwargs.setdefault("api_key", _env_or("OPENAI_API_KEY", "unused"))  # local servers need none
    return cls(model=model, **kwargs)


def _import_provider(provider: str) -> Callable[..., LLM]:
    module_name, class_name, package = _PROVIDERS[provider]
    try:
        import importlib

        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"the {provider!r} LLM provider needs {package}, which is not installed: "
            f'pip install "ragtune[llm]" (or pip install {package})'
        ) from exc
    return getattr(module, class_name)


def _env_or(name: str, default: str) -> str:
    import os

    return os.environ.get(name) or default
