"""The admin API: what the CLI's ``retry`` and ``send`` commands call on the running daemon.

    POST /admin/messages/{id}/retry    a failed or queued message is attempted again now
    POST /admin/send                   {"from": ext, "to": number, "text": ..., "account": ...}

Two locks, both required: the client must be on loopback (and not relayed by a local reverse
proxy, which would make every carrier look local), and it must present the configured bearer
token. Without ``[admin] token`` the routes do not exist (404). Answers are JSON; an error is
``{"error": "<plain words>"}``. Nothing here ever returns or logs a secret.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from pydantic import SecretStr

from bridge.numbers import is_ascii_digits
from bridge.providers.base import constant_time_equal
from bridge.secrets import reveal
from bridge.web.decode import json_problem

log = logging.getLogger("bridge.web.admin")

# Headers a reverse proxy adds: a request carrying one came from elsewhere, via the proxy.
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
MAX_REQUEST_BYTES = 64 * 1024
# Message ids are SQLite rowids: a larger number names no message (and overflows the driver).
MAX_MESSAGE_ID = 2**63 - 1


class Outcome(Protocol):
    @property
    def message_id(self) -> int | None: ...

    @property
    def refusal(self) -> str | None: ...


class AdminActions(Protocol):
    """The core's side (``bridge.core.Bridge``)."""

    def retry(self, message_id: int) -> Awaitable[Outcome]: ...

    def submit(self, extension: str, to: str, text: str,
               account: str | None = None) -> Awaitable[Outcome]: ...


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, reason: str, **extra: Any) -> web.Response:
    return web.json_response({"error": reason, **extra}, status=status)


def is_local_client(request: web.Request) -> bool:
    if any(h in request.headers for h in PROXY_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


class AdminApi:
    def __init__(self, token: SecretStr, actions: AdminActions) -> None:
        self._token = token
        self.actions = actions

    def __repr__(self) -> str:
        return "<AdminApi>"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/admin/messages/{id}/retry", self._guard(self._retry))
        app.router.add_post("/admin/send", self._guard(self._send))

    def _guard(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if not is_local_client(request):
                log.warning("admin request from %s refused: not a loopback client",
                            request.remote)
                return _error(404, "not found")
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not constant_time_equal(
                    given.strip(), reveal(self._token)):
                log.warning("admin request %s refused: wrong or missing token", request.path)
                return web.json_response({"error": "a valid bearer token is required"},
                                         status=401, headers={"WWW-Authenticate": "Bearer"})
            return await handler(request)

        return guarded

    async def _retry(self, request: web.Request) -> web.Response:
        raw = request.match_info["id"]
        if not is_ascii_digits(raw) or len(raw) > 19:
            return _error(400, "the message id must be a number")
        message_id = int(raw)
        if message_id > MAX_MESSAGE_ID:
            return _error(404, "no such message")
        outcome = await self.actions.retry(message_id)
        if outcome.message_id is None:
            return _error(404, outcome.refusal or "no such message")
        if outcome.refusal:
            return _error(409, outcome.refusal, id=outcome.message_id)
        return web.json_response({"id": outcome.message_id, "state": "queued"})

    async def _send(self, request: web.Request) -> web.Response:
        body = await request.read()  # the server's client_max_size caps it first
        if len(body) > MAX_REQUEST_BYTES:
            return _error(413, "request too large")
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return _error(400, "the body must be a JSON object")
        if not isinstance(data, dict):
            return _error(400, "the body must be a JSON object")
        fields = {k: data.get(k) for k in ("from", "to", "text", "account")}
        missing = [k for k in ("from", "to", "text") if not isinstance(fields[k], str)
                   or not fields[k]]
        if missing:
            return _error(400, f"missing or not a string: {', '.join(missing)}")
        if fields["account"] is not None and not isinstance(fields["account"], str):
            return _error(400, "account must be a string")
        problem = json_problem(fields)
        if problem is not None:  # a lone surrogate or NUL: it cannot be stored or sent
            return _error(400, problem)
        outcome = await self.actions.submit(fields["from"], fields["to"], fields["text"],
                                            fields["account"])
        if outcome.message_id is None:
            return _error(400, outcome.refusal or "not accepted")
        if outcome.refusal:
            # stored as rejected, like the same text sent from the phone
            return _error(422, outcome.refusal, id=outcome.message_id, state="rejected")
        return web.json_response({"id": outcome.message_id, "state": "queued"}, status=202)
