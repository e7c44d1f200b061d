"""Log lines that an outage would otherwise repeat at every request or call.

With Redis or PostgreSQL down, a warning written per request (and a traceback per request)
buried everything else in the log: 40 requests, 40 lines saying the same. `Every` writes its
line at most once per interval in a process, and says how many it left out since.

And `WithoutCredentials`, the handlers' filter that keeps the Google Ads credentials out of
every line, the libraries' included.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

INTERVAL_S = 60.0
# How WithoutCredentials writes a line whose arguments do not fit its message.
UNFORMATTABLE = "unformattable log line"
_ALL: weakref.WeakSet[Every] = weakref.WeakSet()


def reset_all() -> None:
    """Every line may be written at once again (tests: each starts with none written)."""
    for every in list(_ALL):
        every.reset()


class Every:
    """One call site's line, at most once per `interval_s` in this process."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._next = 0.0
        self._left_out = 0
        _ALL.add(self)

    def reset(self) -> None:
        with self._lock:
            self._next, self._left_out = 0.0, 0

    def admit(self) -> int | None:
        """None when the line is to be left out; else how many were left out before it."""
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                self._left_out += 1
                return None
            left_out, self._left_out, self._next = self._left_out, 0, now + self.interval_s
        return left_out

    def log(self, logger: logging.Logger, level: int, message: str, *args: Any) -> None:
        left_out = self.admit()
        if left_out is None:
            return
        logger.log(level, message + _left_out(left_out), *args)

    def warning(self, logger: logging.Logger, message: str, *args: Any) -> None:
        self.log(logger, logging.WARNING, message, *args)

    def error(self, logger: logging.Logger, message: str, *args: Any) -> None:
        self.log(logger, logging.ERROR, message, *args)


class Sparse(logging.Filter):
    """A logging filter: its logger's records once a minute, without their tracebacks.

    For a logger that an outside party can make write at will (Django's DisallowedHost, for
    every scanner's request): the first line still says what is wrong.
    """

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self._every = Every()

    def filter(self, record: logging.LogRecord) -> bool:
        left_out = self._every.admit()
        if left_out is None:
            return False
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        if left_out:
            record.msg, record.args = record.getMessage() + _left_out(left_out), ()
        return True


class WithoutCredentials(logging.Filter):
    """A handler's filter: the Google Ads credentials taken out of every line it writes, from
    its message (arguments included) and its traceback, as the client takes them out of its
    own errors (google_ads.without_credentials).

    For the lines the project does not write itself: google-ads' `Request made: ...` and gRPC's
    traceback of a failed AuthMetadataPluginCallback carried the token endpoint's answer, which
    may repeat the form it was sent (client_secret, refresh_token). A line that holds no
    credential, nearly every one (the web's too), costs a few substring checks and is left as
    it is (google_ads.may_hold_credentials).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        # Here, not at the top: google_ads imports this module (through its rate limit).
        from ads_sync.integrations import google_ads

        try:
            message = record.getMessage()
        except Exception:
            # Arguments that do not fit the message: the handler would print both as they are
            # (logging's handleError). The line says so, without the credentials.
            try:
                message = f"{UNFORMATTABLE}: {record.msg!r} % {record.args!r}"
            except Exception:
                message = UNFORMATTABLE
            record.msg, record.args = message, ()
        try:
            if google_ads.may_hold_credentials(message):
                record.msg, record.args = google_ads.without_credentials(message), ()
            if record.exc_info and not record.exc_text:
                # As the handler's formatter would, which then writes this text.
                record.exc_text = _TRACEBACKS.formatException(record.exc_info)
            if record.exc_text and google_ads.may_hold_credentials(record.exc_text):
                record.exc_text = google_ads.without_credentials(record.exc_text)
            if record.stack_info and google_ads.may_hold_credentials(record.stack_info):
                record.stack_info = google_ads.without_credentials(record.stack_info)
        except Exception:  # noqa: S110 (a filter that raises would raise in the logging call)
            pass
        return True


_TRACEBACKS = logging.Formatter()


def _left_out(count: int) -> str:
    """What a line says of the lines left out before it (none: nothing)."""
    return f" (and {count} time(s) since the last such line)" if count else ""
