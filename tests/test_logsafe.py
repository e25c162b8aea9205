"""The log filter: aiohttp's tracebacks for a client's fault become one WARNING line; our
own tracebacks stay, with secrets and URL tokens masked in them too (text and JSON logs)."""

from __future__ import annotations

import io
import json
import logging

from aiohttp.http_exceptions import BadHttpMessage

from bridge import logsafe
from bridge.cli import _JsonFormatter

SECRET = "planted-secret-0123456789"


def _logger(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    logsafe.install([handler], [SECRET])
    logger = logging.getLogger(f"logsafe-test-{id(out)}")
    logger.propagate = False
    logger.addHandler(handler)
    return logger, out


def test_a_client_fault_in_aiohttp_is_one_warning_line():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logsafe.install([handler], [SECRET])
    server = logging.getLogger("aiohttp.server")
    server.addHandler(handler)
    try:
        try:
            raise BadHttpMessage("Invalid header value char")
        except BadHttpMessage:
            server.exception("Error handling request from %s", "192.0.2.7")
    finally:
        server.removeHandler(handler)
    assert out.getvalue() == ("WARNING aiohttp.server: Error handling request from 192.0.2.7: "
                              "BadHttpMessage: Invalid header value char\n")


def test_our_tracebacks_keep_their_lines_but_lose_secrets_and_tokens():
    for formatter in (logging.Formatter("%(levelname)s %(message)s"), _JsonFormatter()):
        logger, out = _logger(formatter)
        try:
            raise ValueError(f"carrier said {SECRET} for /webhooks/flowroute/tok123")
        except ValueError:
            logger.exception("failed serving %s", "/webhooks/flowroute/tok123")
        text = out.getvalue()
        if isinstance(formatter, _JsonFormatter):
            entry = json.loads(text)
            text = entry["message"] + entry["exception"]
        assert "Traceback" in text and "ValueError" in text
        assert SECRET not in text and "tok123" not in text
        assert "/webhooks/flowroute/<webhook_token>" in text
