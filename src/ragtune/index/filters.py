"""Engine-neutral payload filters: :class:`Where` of :class:`Condition`.

Built from the server's ``{"key": value}`` form (:func:`where`) or from
LlamaIndex ``MetadataFilters``, and translated into each engine's terms by
:func:`translate_filter`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ragtune.errors import InputError

log = logging.getLogger(__name__)


OPS = ("eq", "ne", "in", "nin", "gt", "gte", "lt", "lte")

@dataclass(frozen=True)
class Condition:
    """``payload[key] <op> value``; ``op`` is one of :data:`OPS` (``in``/``nin`` take a list)."""

    key: str
    op: str
    value: Any

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise InputError(f"filter on {self.key!r}: operator {self.op!r} is not one of {', '.join(OPS)}")


@dataclass(frozen=True)
class Where:
    """All of ``must``, at least one of ``should`` (when given), none of ``must_not``."""

    must: tuple[Condition | Where, ...] = ()
    should: tuple[Condition | Where, ...] = ()
    must_not: tuple[Condition | Where, ...] = ()


def where(spec: Mapping[str, Any] | None) -> Where | None:
    """``{"key": value}`` → a :class:`Where` that all conditions must match.

    A scalar is an exact match, a list matches any of its values.

    Example:
        >>> where({"source": ["a.md", "b.md"], "year": 2023}).must[1]
        Condition(key='year', op='eq', value=2023)
    """
    if not spec:
        return None
    return Where(
        must=tuple(
            Condition(k, "in", list(v)) if isinstance(v, (list, tuple)) else Condition(k, "eq", v)
            for k, v in spec.items()
        )
    )

def translate_filter(flt: Where, field: Callable[[Condition], Any], make: Callable[..., Any]) -> Any:
    """A :class:`Where` in an engine's terms: ``field`` builds one ``eq``/``in``/``nin``/range condition,
    ``make(must, should, must_not)`` a filter; ``ne`` is a ``must_not`` of ``eq``, nested filters recurse."""

    def cond(c: Condition | Where) -> Any:
        if isinstance(c, Where):
            return translate_filter(c, field, make)
        if c.op == "ne":
            return make(None, None, [field(Condition(c.key, "eq", c.value))])
        return field(c)

    return make(*([cond(c) for c in part] or None for part in (flt.must, flt.should, flt.must_not)))

