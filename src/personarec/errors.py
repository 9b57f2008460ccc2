"""User-facing errors. The CLI prints these as one clear message, never a traceback."""

from __future__ import annotations


class PersonarecError(Exception):
    """Base class for errors caused by the user's input or setup, not by a bug."""


class DataError(PersonarecError):
    """Bad or missing input data. Names the file and line when it knows them."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}" + (f", line {line}" if line is not None else "") + ": "
        super().__init__(where + message)
        self.path = path
        self.line = line


class ConfigError(PersonarecError):
    """An invalid configuration file or flag."""


class EmptyDatasetError(DataError):
    """Filtering left nothing; the message names the filter that emptied the data."""
