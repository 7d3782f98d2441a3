"""One error type per domain, all deriving from :class:`PushgenError` so the CLI can report them cleanly."""

from __future__ import annotations


class PushgenError(Exception):
    """Base class of every error pushgen raises on purpose (bad input, missing model, bad template)."""


class DataError(PushgenError):
    """A row of an input file does not satisfy its contract.

    The message always names the file, the 1-based data row and the field.
    """

    def __init__(self, path: str, row: int | None, field: str | None, problem: str):
        self.path, self.row, self.field, self.problem = str(path), row, field, problem
        where = self.path
        if row is not None:
            where += f", row {row}"
        if field:
            where += f", field '{field}'"
        super().__init__(f"{where}: {problem}")


class ModelNotAvailable(PushgenError):
    """A named model's package is not installed, or a local/hub model cannot be found offline."""


class ScorerError(PushgenError):
    """A scorer cannot be loaded, or was asked to rank with bad input."""


class TemplateError(PushgenError):
    """A prompt template is missing, invalid, or was rendered with missing/unknown variables."""
