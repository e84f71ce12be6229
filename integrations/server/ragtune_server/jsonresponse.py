"""A JSON response that serialises numpy vectors fast.

An embeddings response is mostly floats (256 inputs x 384 dims is ~100k of
them); the standard library spends tens of milliseconds on that, orjson a few
and it writes float32 values at their shortest round-trip form. orjson is used
when installed and is not required: the fallback converts arrays to lists.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from starlette.responses import JSONResponse

try:  # optional speed-up
    import orjson
except ImportError:  # pragma: no cover - exercised only where orjson is absent
    orjson = None  # type: ignore[assignment]


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def dumps(content: Any) -> bytes:
    """JSON bytes of ``content``; numpy arrays and scalars become JSON numbers."""
    if orjson is not None:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY, default=_default)
    return json.dumps(
        content, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_default
    ).encode()


class FastJSONResponse(JSONResponse):
    """``JSONResponse`` that accepts numpy arrays inside ``content``."""

    def render(self, content: Any) -> bytes:
        return dumps(content)
