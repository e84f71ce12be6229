"""Typed run configuration from a file, command-line options and ``--set`` overrides.

Every stage has one config dataclass (``ChunkConfig``, ``GenerationConfig``,
``TrainConfig`` with its ``LoraSettings`` ...), gathered in the pipeline's
``RunConfig``. This module turns plain data into that tree, so every field of
every stage is reachable from the command line:

- a config file: TOML (``[train]`` / ``[train.lora]`` tables), or a previous
  run's ``run.json`` (its ``config`` is replayed);
- the CLI's own options (``--epochs``, ``--lr`` ...);
- ``--set section.field=value`` (values parsed as JSON where they parse:
  ``--set train.lora.rank=16``, ``--set train.matryoshka_dims=[384,64]``).

Later sources win. Unknown keys are refused with the nearest valid name, and
values are checked and converted by pydantic against the dataclasses' own
annotations (``Literal`` choices, numbers, nested settings), then by their
``__post_init__`` checks.

Example:
    >>> from ragtune.pipeline.stages import RunConfig
    >>> cfg = build_config(RunConfig, merge({"corpus": "docs"}, parse_sets(["train.lora.rank=16"])))
    >>> cfg.train.lora.rank
    16
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ragtune.errors import ConfigError, InputError

T = TypeVar("T")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A TOML config file, or a ``run.json`` whose recorded ``config`` is replayed."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"--config {path}: cannot read ({exc.strerror or exc})") from exc
    if path.suffix == ".json":
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise InputError(f"--config {path}: not valid JSON ({exc})") from exc
        return dict(data.get("config", data)) if isinstance(data, dict) else {}
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"--config {path}: not valid TOML ({exc})") from exc


def parse_sets(items: Iterable[str]) -> dict[str, Any]:
    """``["train.lora.rank=16", ...]`` → ``{"train": {"lora": {"rank": 16}}}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: write section.field=value, e.g. --set train.epochs=1")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out = merge(out, dotted(key.strip(), value))
    return out


def dotted(key: str, value: Any) -> dict[str, Any]:
    """``dotted("train.lora.rank", 16)`` → ``{"train": {"lora": {"rank": 16}}}``."""
    node: Any = value
    for part in reversed(key.split(".")):
        node = {part: node}
    return node


def merge(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Deep-merge mappings; later layers win, nested tables merge key by key."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
                out[key] = merge(out[key], value)
            else:
                out[key] = dict(value) if isinstance(value, Mapping) else value
    return out


def build_config(cls: type[T], data: Mapping[str, Any]) -> T:
    """Validate ``data`` against dataclass ``cls`` (nested) and build it; errors name the field."""
    from pydantic import TypeAdapter, ValidationError

    check_keys(cls, data)
    try:
        return TypeAdapter(cls).validate_python(dict(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "tagged-")))
        raise ConfigError(f"{where}: {err['msg']} (got {err.get('input')!r})") from None


def check_keys(cls: type, data: Mapping[str, Any], prefix: str = "") -> None:
    """Refuse keys that are not fields of ``cls`` (recursively), naming the nearest field."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key, value in data.items():
        if key not in fields:
            near = difflib.get_close_matches(key, list(fields), n=1)
            hint = f"; did you mean {prefix}{near[0]}?" if near else f"; fields: {', '.join(fields)}"
            raise ConfigError(f"{prefix}{key}: no such setting{hint}")
        sub = _dataclass_in(hints.get(key))
        if sub is not None and isinstance(value, Mapping):
            check_keys(sub, value, f"{prefix}{key}.")


def to_data(config: Any) -> dict[str, Any]:
    """A config dataclass as plain data (what ``run.json`` records and ``--config`` replays)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass in ``hint`` (``X``, ``X | None``, ``Optional[X]``), if any."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg) and isinstance(arg, type):
                return arg
    return None
