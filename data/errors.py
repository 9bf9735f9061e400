"""Errors a user can act on, raised before any training starts."""


class DataUnavailableError(RuntimeError):
    """A data set is not on disk and cannot be fetched; the message says what to fetch and
    where to put it."""
