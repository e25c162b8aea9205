"""Log lines that are safe to share: one filter on every handler.

- Secrets from the config, and every derived form of them (``bridge.redact``), are masked in
  each line and in any traceback attached to it.
- Webhook URL tokens are masked wherever a path is named, aiohttp's own loggers included.
- aiohttp logs a malformed request (a header byte that is not UTF-8, an 8 KB request line,
  too many headers) and a client that went away as ERROR with a traceback: that is the
  client's doing, not ours, so it becomes one WARNING line with the client's address and the
  reason, and cannot be used to fill the log with tracebacks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiohttp.http_exceptions import HttpProcessingError

from bridge.redact import Redactor, mask_paths

# Raised at aiohttp's edge by what a client sent or did, never by our code.
CLIENT_FAULTS: tuple[type[BaseException], ...] = (HttpProcessingError, ConnectionError)
_FORMATTER = logging.Formatter()


class SafeLogFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._redact = Redactor(secrets)

    def clean(self, text: str) -> str:
        return self._redact(mask_paths(text))

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        message = record.getMessage()
        if record.name.startswith("aiohttp") and isinstance(exc, CLIENT_FAULTS):
            reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            message = f"{message}: {type(exc).__name__}: {str(reason).splitlines()[0][:200]}"
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        elif record.exc_info:
            record.exc_text = self.clean(_FORMATTER.formatException(record.exc_info))
        record.msg, record.args = self.clean(message), ()
        return True


def install(handlers: Iterable[logging.Handler], secrets: Iterable[str]) -> SafeLogFilter:
    """Put the filter on each handler (a handler filter sees every logger's records)."""
    safe = SafeLogFilter(secrets)
    for handler in handlers:
        handler.addFilter(safe)
    return safe
