"""The HTTP side: carrier webhooks, health, readiness, metrics and the admin API.

A webhook is answered 2xx only after its events are stored. Refusals carry no detail: 403 for
failed authentication, 400 for a malformed payload, 404 for an unknown provider, 413 for an
oversized body, 415 for a content type the carrier never sends, 408 for a body that did not
arrive in time. The reason goes to the log, one WARNING line with the client's address; a
client that goes away mid-request is one WARNING line too, never a traceback. Paths in log
lines have their webhook URL token masked.

Slow and many clients: a connection must deliver its request headers within
``header_timeout`` (aiohttp's keep-alive timer, which also covers a half-sent request) and its
body within ``body_timeout``; ``limits.py`` caps the connections open at once, per client
address and overall.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bridge.metrics import Metrics
from bridge.model import InboundEvent
from bridge.providers.base import Provider, WebhookRejected, WebhookRequest
from bridge.redact import mask_paths
from bridge.web.admin import AdminApi
from bridge.web.console import Console
from bridge.web.decode import events_problem, request_problem
from bridge.web.limits import ConnectionLimits
from bridge.web.media import MediaRoutes

log = logging.getLogger("bridge.web")

EventSink = Callable[[Provider, Sequence[InboundEvent]], Awaitable[None]]
ReadinessCheck = Callable[[], Awaitable[dict[str, object]]]

PROVIDERS_KEY = web.AppKey("providers", dict)
# Softphone uploads stream their body (media files may be large): they get this long in all.
UPLOAD_TIMEOUT = 300.0
# What a client that went away or stalled raises while its body is read.
CLIENT_GONE = (ConnectionError, asyncio.IncompleteReadError)


@dataclass(frozen=True)
class HttpLimits:
    """How long a client may take and how many connections may be open (``[web]``)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 4096
    max_connections_per_client: int = 256

    @classmethod
    def of(cls, web_settings: Any) -> HttpLimits:
        return cls(web_settings.header_timeout_seconds, web_settings.body_timeout_seconds,
                   web_settings.max_connections, web_settings.max_connections_per_client)


def _plain(status: int) -> web.Response:
    return web.Response(status=status, text=f"{status} {_REASONS.get(status, '')}\n".rstrip(" "))


_REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            413: "Payload Too Large", 415: "Unsupported Media Type",
            408: "Request Timeout", 503: "Service Unavailable"}


class WebhookServer:
    def __init__(
        self,
        providers: Mapping[str, Provider],
        sink: EventSink,
        public_url: str,
        max_body_bytes: int,
        readiness: ReadinessCheck,
        metrics: Metrics | None = None,
        admin: AdminApi | None = None,
        media: MediaRoutes | None = None,
        trusted_proxies: Sequence[str] = (),
        console: Console | None = None,
        limits: HttpLimits | None = None,
    ) -> None:
        self.providers = providers
        self.sink = sink
        self.public_url = public_url.rstrip("/")
        self.max_body_bytes = max_body_bytes
        self.readiness = readiness
        self.metrics = metrics or Metrics()
        self.admin = admin  # None: the admin API is off and its paths answer 404
        self.media = media  # MMS files (/media/...) and softphone uploads (/upload/...)
        self.console = console  # the web console (/console/...)
        self.trusted_proxies = [ipaddress.ip_network(p, strict=False) for p in trusted_proxies]
        self.limits = limits or HttpLimits()
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        self.connections: ConnectionLimits | None = None
        self.port = 0

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_bytes,
                              middlewares=[self._edge])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        if self.admin is not None:
            self.admin.add_routes(app)
        if self.media is not None:
            self.media.add_routes(app)
        if self.console is not None:
            self.console.add_routes(app)
        for path in ("/webhooks/{provider}", "/webhooks/{provider}/{token}"):
            app.router.add_route("GET", path, self._webhook)
            app.router.add_route("POST", path, self._webhook)
        return app

    async def start(self, host: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        # keepalive_timeout is aiohttp's one timer for a connection waiting for its next
        # request: it closes one that has not delivered complete headers in time, whether
        # idle or half-sent. The connection cap wraps aiohttp's protocol factory, so the
        # listening socket is ours rather than a TCPSite's.
        self._runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False,
                                     keepalive_timeout=self.limits.header_timeout,
                                     lingering_time=min(10.0, self.limits.body_timeout))
        await self._runner.setup()
        assert self._runner.server is not None
        self.connections = ConnectionLimits(
            self._runner.server, total=self.limits.max_connections,
            per_client=self.limits.max_connections_per_client, exempt=self.trusted_proxies)
        # a TLS handshake happens before the cap sees the connection: bound it like headers
        handshake = {"ssl_handshake_timeout": self.limits.header_timeout} if ssl_context else {}
        self._server = await asyncio.get_running_loop().create_server(
            self.connections, host, port, ssl=ssl_context, reuse_address=True, backlog=1024,
            **handshake)
        sockets = self._server.sockets
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("web server listening on %s port %d", host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _trusted(self, address: str | None) -> bool:
        try:
            ip = ipaddress.ip_address(address or "")
        except ValueError:
            return False
        return any(ip in net for net in self.trusted_proxies)

    @web.middleware
    async def _edge(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        """Every request passes here, in this order: the real client behind a trusted proxy,
        then no internal detail in any answer, then a valid request line, headers and body.
        One middleware rather than three: each of aiohttp's costs a wrapper per request."""
        if self.trusted_proxies and self._trusted(request.remote):
            request = self._real_client(request)
        # read now: once the client is gone, so is its address (uvloop asks the socket,
        # which forgets the peer of a connection reset before it was accepted: "unknown")
        client = request.remote or "unknown"
        try:
            return await self._valid_request(request, handler)
        except web.HTTPException as exc:
            if exc.status >= 400:
                return _plain(exc.status)
            raise
        except CLIENT_GONE as exc:
            log.warning("client %s went away during %s %s (%s)", client,
                        request.method, mask_paths(request.path), type(exc).__name__)
            return _plain(400)  # nobody is there to read it; aiohttp drops it quietly
        except Exception:
            log.exception("unhandled error serving %s %s", request.method,
                          mask_paths(request.path))
            return web.Response(status=500, text="500 Internal Server Error")

    def _real_client(self, request: web.Request) -> web.Request:
        """Behind a trusted reverse proxy the client is the last X-Forwarded-For hop the
        proxies did not add; from anyone else the header is ignored. Without this, a local
        proxy would make every request look like loopback (which the sandbox carrier and the
        admin API trust)."""
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
        client = next((h for h in reversed(hops) if h and not self._trusted(h)), None)
        return request.clone(remote=client or "unknown")

    async def _valid_request(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        """The request line and headers are valid text, and the body arrives in time (read
        here, once: handlers get it from aiohttp's cache)."""
        problem = request_problem(request)
        if problem is not None:
            log.warning("request from %s refused (400): %s", request.remote, problem)
            return _plain(400)
        if request.path.startswith("/upload/"):
            async with asyncio.timeout(UPLOAD_TIMEOUT):
                return await handler(request)
        if request.body_exists:
            # a body that has all arrived is read without arming a timer
            timeout = None if request.content.is_eof() else self.limits.body_timeout
            try:
                async with asyncio.timeout(timeout):
                    await request.read()  # raises 413 past client_max_size
            except TimeoutError:
                log.warning("client %s sent no complete body in %g s: %s %s closed",
                            request.remote, self.limits.body_timeout, request.method,
                            mask_paths(request.path))
                response = _plain(408)
                response.force_close()
                return response
        return await handler(request)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        report = await self.readiness()
        ready = all(bool(v) if not isinstance(v, dict) else v.get("ok", False)
                    for v in report.values())
        return web.json_response({"ready": ready, **report}, status=200 if ready else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = await self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _webhook(self, request: web.Request) -> web.Response:
        name = request.match_info["provider"]
        provider = self.providers.get(name)
        if provider is None:
            return _plain(404)
        if request.method == "POST":
            ctype = request.content_type.lower()
            if ctype not in provider.webhook_content_types:
                log.warning("webhook %s from %s refused (415): content type %r", name,
                            request.remote, ctype)
                return _plain(415)
        body = await request.read()  # raises 413 past client_max_size
        req = WebhookRequest(
            method=request.method,
            url=self.public_url + request.path_qs,
            headers=request.headers,
            query=list(request.query.items()),
            body=body,
            remote=request.remote or "",
            path_token=request.match_info.get("token"),
        )
        try:
            provider.verify(req)
        except WebhookRejected as exc:
            self.metrics.webhook_refused(name)
            log.warning("webhook %s from %s refused (%d): %s", name, req.remote, exc.status, exc)
            return _plain(exc.status)
        self.metrics.webhook_accepted(name)
        try:
            events = provider.parse(req)
        except WebhookRejected as exc:
            log.warning("webhook %s from %s refused (%d): %s", name, req.remote, exc.status, exc)
            return _plain(exc.status)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # an adapter that let a bad payload through its checks: still a clean 400
            log.warning("webhook %s from %s unparsable: %s", name, req.remote,
                        type(exc).__name__)
            return _plain(400)
        problem = events_problem(events)
        if problem is not None:  # a lone surrogate or NUL in a signed JSON string
            log.warning("webhook %s from %s refused (400): %s", name, req.remote, problem)
            return _plain(400)
        try:
            await self.sink(provider, events)
        except Exception:
            log.exception("webhook %s: could not store events; the carrier will retry", name)
            return _plain(503)
        answer = provider.answer(events)
        return web.Response(status=answer.status, text=answer.body,
                            content_type=answer.content_type)
