"""LLM pair generation: an LLM writes the questions each window of the corpus answers.

One concept per module: :mod:`~ragtune.pairs.llm.config` (settings and
counters), :mod:`~ragtune.pairs.llm.parsing` (questions out of an answer) and
:mod:`~ragtune.pairs.llm.generator` (requests, cache, pairs). The names below
are re-exported so ``from ragtune.pairs.llm import LLMGenerator`` works; the
LLM itself comes from :func:`ragtune.providers.llm_from_spec` or any LlamaIndex
``LLM``.

Example::

    from ragtune.providers import llm_from_spec
    from ragtune.pairs.llm import LLMConfig, LLMGenerator

    generator = LLMGenerator(llm_from_spec("openai:gpt-4o-mini"), LLMConfig(cache_dir="llm-cache"))
    pairs = generator(chunks, tokenizer, spec)
"""

from ragtune.pairs.llm.config import DEFAULT_PROMPT, FEW_SHOT_PROMPT, LLMConfig, LLMStats
from ragtune.pairs.llm.generator import CACHE_VERSION, LLMGenerator, llm_identity
from ragtune.pairs.llm.parsing import (
    QUESTION_STARTS,
    parse_questions,
    screen_questions,
    split_candidates,
)

__all__ = [
    "CACHE_VERSION",
    "DEFAULT_PROMPT",
    "FEW_SHOT_PROMPT",
    "QUESTION_STARTS",
    "LLMConfig",
    "LLMGenerator",
    "LLMStats",
    "llm_identity",
    "parse_questions",
    "screen_questions",
    "split_candidates",
]
