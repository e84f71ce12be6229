"""Errors ragtune raises on purpose: each names the file or field at fault and the fix.

The CLI turns a :class:`RagtuneError` into a one-line message and a non-zero
exit; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class RagtuneError(Exception):
    """An error caused by input or configuration, with a message fit for a user."""


class InputError(RagtuneError):
    """A path, file or dataset that cannot be used as given."""


class ConfigError(RagtuneError):
    """A configuration value out of range or inconsistent with another."""


class IndexMismatchError(RagtuneError):
    """A Qdrant collection built with another model or dimension than the one asked for."""
