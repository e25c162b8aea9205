"""A local HTTP server that stands in for a carrier's API in tests.

It records every request exactly as received (method, path, query, headers, raw body) and
answers from a queue of canned responses (the carrier's documented success and error bodies),
so a test can check the adapter's request against the carrier's documented wire format.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip()

    def form(self) -> list[tuple[str, str]]:
        return parse_qsl(self.body.decode(), keep_blank_values=True)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class CannedResponse:
    status: int = 200
    body: Any = field(default_factory=dict)  # dict/list -> JSON; str/bytes -> as is
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering, to provoke client timeouts


class CarrierServer:
    """``async with CarrierServer() as srv:`` then point the adapter's api_base at srv.url."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.requests: list[RecordedRequest] = []
        self.responses: deque[CannedResponse] = deque()
        self.default = CannedResponse()
        # When set, computes the answer to each request (after the queued responses run out).
        self.responder: Callable[[RecordedRequest], CannedResponse] | None = None
        self.files: dict[str, tuple[bytes, str]] = {}  # path -> (bytes, content type)
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.arrived = asyncio.Event()

    def respond(self, *responses: CannedResponse) -> None:
        self.responses.extend(responses)

    def host_file(self, path: str, data: bytes, content_type: str) -> str:
        self.files[path] = (data, content_type)
        return self.url + path

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET" and request.path in self.files:
            data, ctype = self.files[request.path]
            return web.Response(body=data, content_type=ctype)
        self.requests.append(
            RecordedRequest(
                request.method,
                request.path,
                list(request.query.items()),
                dict(request.headers),
                await request.read(),
            )
        )
        self.arrived.set()
        if self.responses:
            canned = self.responses.popleft()
        elif self.responder is not None:
            canned = self.responder(self.requests[-1])
        else:
            canned = self.default
        if canned.delay:
            await asyncio.sleep(canned.delay)
        body = canned.body
        if isinstance(body, dict | list):
            return web.json_response(body, status=canned.status, headers=canned.headers)
        return web.Response(
            body=body.encode() if isinstance(body, str) else body,
            status=canned.status,
            headers=canned.headers,
        )

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        async def _wait() -> None:
            while len(self.requests) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(_wait(), timeout)
        return self.requests

    async def __aenter__(self) -> CarrierServer:
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{self.host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def send_once(provider, msg):  # type: ignore[no-untyped-def]
    """Start a carrier adapter, send one message through it, close it; the send's result."""
    await provider.start()
    try:
        return await provider.send(msg)
    finally:
        await provider.close()
