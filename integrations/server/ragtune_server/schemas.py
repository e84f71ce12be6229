"""Request and response bodies (pydantic), in OpenAI's shapes where OpenAI has one.

Requests are validated strictly (``"5"`` is not an integer, ``123`` is not a
string): a client that sends the wrong type has a bug it should hear about,
not a silent coercion. Unknown fields are refused (400, naming the field):
:func:`ragtune_server.limits.check_json` refuses them before the body is
parsed, reading the field names from these models, and ``extra="forbid"`` says
so here and in the OpenAPI schema. The validators' messages name
the item at fault and say what to send instead; ``errors.validation_message``
prefixes them with the field.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, StrictStr

# The validators raise ValueError even for a wrong type (ruff's TRY004 would have
# TypeError): pydantic turns only ValueError/AssertionError into a validation
# error, which the app answers with a 400 naming the field.


def json_type(value: Any) -> str:
    """The JSON name of a Python value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


#: a lone UTF-16 surrogate: JSON's "\\ud800" decodes to one, but it is no character, and
#: the tokenizer, the store and orjson all refuse it
_SURROGATE = re.compile("[\ud800-\udfff]")
#: a Qdrant payload key (JSON path), as Qdrant's parser (lib/segment/src/json_path/parse.rs)
#: reads it: a key of letters, digits, '_', '-' or a "quoted key", then any of .key, ."quoted",
#: [N] (an array item), [] (every item)
_KEY = r'(?:[\w-]+|"[^"\\]*")'
_PAYLOAD_KEY = re.compile(rf"{_KEY}(?:\.{_KEY}|\[[0-9]*\])*")
_INT64 = range(-(2**63), 2**63)


def check_unicode(text: str, where: str) -> None:
    """Refuse a string holding a lone surrogate, naming where and at what position."""
    bad = _SURROGATE.search(text)
    if bad:
        raise ValueError(
            f"{where} holds an unpaired surrogate (\\u{ord(bad.group()):04x}) at position "
            f"{bad.start()}: not valid Unicode; send UTF-8 text"
        )


def is_blank(text: str) -> bool:
    """True when ``text`` holds nothing the model reads: only whitespace and control or format
    characters (NUL, zero-width space, ...), which tokenizers drop."""
    return all(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in text)


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, list):
        if not value:
            raise ValueError("the list is empty; send at least one string")
        if all(_is_int(x) or isinstance(x, list) for x in value):
            raise ValueError(
                "token-id input (integers or lists of integers) is not supported; send the text "
                "itself, as a string or a list of strings (LangChain: "
                "OpenAIEmbeddings(..., check_embedding_ctx_length=False))"
            )
        for i, item in enumerate(value):
            if not isinstance(item, str):
                got = json_type(item)
                raise ValueError(f"item {i} is {got}; every item must be a string")  # noqa: TRY004
        texts = value
    else:
        got = json_type(value)
        raise ValueError(f"expected a string or a list of strings, got {got}")  # noqa: TRY004
    for i, text in enumerate(texts):
        where = f"item {i}" if isinstance(value, list) else "the text"
        if is_blank(text):
            what = "empty" if not text else "blank (only whitespace or control characters)"
            raise ValueError(f"{where} is {what}; send non-empty text")
        check_unicode(text, where)
    return texts


def _query(value: Any) -> str:
    if not isinstance(value, str):
        got = json_type(value)
        raise ValueError(f"expected the question as a string, got {got}")  # noqa: TRY004
    if is_blank(value):
        raise ValueError("the question is empty; send a non-empty string")
    check_unicode(value, "the question")
    return value


def _filter(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(  # noqa: TRY004
            'expected an object of payload key → value, e.g. {"source": "faq.md"}, '
            f"got {json_type(value)}"
        )
    for key, v in value.items():
        if not key:
            raise ValueError("a key is empty; keys are payload fields such as 'source' or 'doc_id'")
        check_unicode(key, f"key {key!r}")
        if not _PAYLOAD_KEY.fullmatch(key):
            raise ValueError(
                f"{key!r} is not a payload key: use letters, digits, '_' and '-', a dotted path "
                "(meta.author), an array item (tags[] or tags[0]), or quote other characters "
                '("my key")'
            )
        for x in v if isinstance(v, list) else [v]:
            if isinstance(x, str):
                check_unicode(x, f"{key!r}")
            elif _is_int(x) and x not in _INT64:
                raise ValueError(f"{key!r}: {x} is out of range; integers are 64-bit")
        if isinstance(v, list):
            if not v:
                raise ValueError(f"{key!r} is an empty list; give at least one value to match")
            if not (all(isinstance(x, str) for x in v) or all(_is_int(x) for x in v)):
                raise ValueError(
                    f"{key!r}: a list must hold only strings or only integers (any of them matches)"
                )
        elif not isinstance(v, (str, bool)) and not _is_int(v):
            raise ValueError(
                f"{key!r} is {json_type(v)}; exact match takes a string, an integer, a boolean, "
                "or a list of strings or integers"
                + ("; floats cannot be matched exactly" if isinstance(v, float) else "")
            )
    return value


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbeddingRequest(_Request):
    """OpenAI's embeddings request, plus ``input_type`` to pick the query encoder."""

    input: Annotated[list[str], BeforeValidator(_texts)] = Field(
        description="A string or a list of strings (token-id arrays are not supported)."
    )
    model: StrictStr | None = Field(
        None, description="Accepted for compatibility; the served model answers."
    )
    dimensions: StrictInt | None = Field(
        None, description="Matryoshka truncation: 1..model width, re-normalised."
    )
    encoding_format: Literal["float", "base64"] | None = Field(
        None, description="float (default) or base64 of little-endian float32, as OpenAI."
    )
    input_type: Literal["query", "document"] | None = Field(
        None, description="Extension: 'query' uses the query encoder; default 'document'."
    )
    user: StrictStr | None = Field(None, description="Accepted and ignored (a string, as OpenAI's).")


class SearchRequest(_Request):
    """A question, answered by the nearest chunks of the served collection."""

    query: Annotated[str, BeforeValidator(_query)]
    top_k: Annotated[StrictInt, Field(ge=1, le=100)] = 5
    filter: Annotated[dict[str, Any] | None, BeforeValidator(_filter)] = Field(
        None, description="Payload key → value (exact) or list of values (any); all must match."
    )
    mode: Literal["hybrid", "dense", "sparse", "plain", "windows"] = Field(
        "hybrid",
        description=(
            "hybrid (default): each chunk's best window fused with BM25 at the model's fitted weight; "
            "dense (or windows): best window only; sparse: BM25 only; plain: the first-window vector."
        ),
    )
    two_stage: StrictBool = Field(
        False,
        description="Find candidates on the small Matryoshka vectors, rescore on the full ones.",
    )


class FeedbackRequest(_Request):
    """What a user said about a logged search's results (``ragtune serve --log-queries``)."""

    query_id: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        description="The search's ``query_id``, as /v1/search returned it."
    )
    chosen: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=100)] = Field(
        default_factory=list, description="Ids of results that answered the question."
    )
    rejected: Annotated[list[Annotated[str, Field(min_length=1, max_length=200)]], Field(max_length=100)] = Field(
        default_factory=list, description="Ids of results that did not."
    )
    rating: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] | None = Field(
        None, description="How good the results were overall, 0 (useless) to 1 (answered)."
    )


# responses (documentation: the handlers build the JSON directly for speed) ----
class EmbeddingObject(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingObject]
    model: str
    usage: Usage


class SearchHit(BaseModel):
    id: str
    score: float
    text: str
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    results: list[SearchHit]
    model: str
    collection: str
    usage: Usage


class ModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "ragtune"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelObject]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
