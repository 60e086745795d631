"""Errors raised by data_fetch; each message says what to do next."""


class DataFetchError(RuntimeError):
    """Base class for every error data_fetch raises on purpose."""


class UnknownDatasetError(DataFetchError, KeyError):
    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.args[0]


class SourceUnavailableError(DataFetchError):
    """The requested source cannot be reached (for example: offline with source='opendata')."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason  # a few words on why, e.g. "HTTP 502 for record 63168", "connection refused"


class ChecksumMismatchError(DataFetchError):
    """A downloaded file does not match the size or checksum the record lists."""
