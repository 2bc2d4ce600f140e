"""The data error, apart from the loaders: modules that only read prepared splits raise it without
importing the loaders (and, through them, the bundled examples)."""

from __future__ import annotations


class DataError(ValueError):
    """Data cannot be read or does not fit the model; the message says what to do."""
