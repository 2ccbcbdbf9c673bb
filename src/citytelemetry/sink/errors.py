"""Typed write failures, sorted by what the caller must do about them."""

from __future__ import annotations


class WriteError(Exception):
    """Base of every failure to write a batch."""


class RetryableWriteError(WriteError):
    """Transient (network, timeout, 429, 5xx, auth being fixed): retry the same batch later."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BatchTooLargeError(WriteError):
    """413: split the batch and write the halves."""


class RejectedLinesError(WriteError):
    """400/422: the server refused some line(s) of the batch; the message is the server's."""


def classify_status(status: int, body: str, retry_after: str | None) -> WriteError:
    """Map a non-2xx HTTP answer of an InfluxDB write endpoint to the error the caller acts on."""
    text = body.strip()[:500]
    if status == 413:
        return BatchTooLargeError(f"HTTP 413: {text}")
    if status in (400, 422):
        return RejectedLinesError(text or f"HTTP {status}")
    delay: float | None = None
    if retry_after is not None:
        try:
            delay = max(0.0, float(retry_after))
        except ValueError:
            delay = None
    # 401/403/404 are operator problems (credentials, missing database): nothing is wrong with the
    # data, so keep it and retry until the operator fixes the setup; the log says what to fix.
    return RetryableWriteError(f"HTTP {status}: {text}", retry_after_s=delay)
