"""A cap on open HTTP connections, per client address and overall.

Each connection holds a file descriptor until it is closed; without a cap, a thousand clients
that open a connection and send nothing (or one byte a minute) use up the process's open-file
limit, and then neither webhooks nor SIP over TCP can be accepted. The time a connection may
take to send its headers and body is bounded elsewhere (``server.py``); this bounds how many
can be waiting at once. A connection over the cap is closed at once, before aiohttp sees it:
refusing costs an accept and a close, nothing more.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence

log = logging.getLogger("bridge.web")

# At most one "refused" line per this many seconds, so a flood cannot fill the log.
REFUSAL_LOG_INTERVAL = 10.0


class ConnectionLimits:
    """Counts open connections and wraps aiohttp's protocol factory to enforce the caps.
    ``exempt``: addresses (trusted reverse proxies) that carry many clients' connections and
    are only held to the overall cap."""

    def __init__(self, factory: Callable[[], asyncio.Protocol], *, total: int, per_client: int,
                 exempt: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = ()) -> None:
        self.factory = factory
        self.total = total
        self.per_client = per_client
        self.exempt = list(exempt)
        self.open = 0
        self.by_client: Counter[str] = Counter()
        self.refused = 0
        self._last_log = 0.0

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self)

    def admit(self, client: str) -> bool:
        if self.open >= self.total:
            self._refuse(client, f"{self.total} connections open")
            return False
        if self.by_client[client] >= self.per_client and not self._exempt(client):
            self._refuse(client, f"{self.per_client} connections from this address")
            return False
        self.open += 1
        self.by_client[client] += 1
        return True

    def release(self, client: str) -> None:
        self.open -= 1
        self.by_client[client] -= 1
        if self.by_client[client] <= 0:
            del self.by_client[client]

    def _exempt(self, client: str) -> bool:
        try:
            ip = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(ip in net for net in self.exempt)

    def _refuse(self, client: str, why: str) -> None:
        self.refused += 1
        now = time.monotonic()
        if now - self._last_log >= REFUSAL_LOG_INTERVAL:
            log.warning("HTTP connection from %s refused: %s (%d refused so far)", client, why,
                        self.refused)
            self._last_log = now


class _Guarded(asyncio.Protocol):
    """Admits or refuses a connection, then hands every event to aiohttp's handler."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.inner: asyncio.Protocol | None = None
        self.client = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self.client = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if not self.limits.admit(self.client):
            self.client = ""
            transport.abort()
            return
        self.inner = self.limits.factory()
        self.inner.connection_made(transport)
        # aiohttp caches the peer address on first use: use it now, so a request whose
        # client has already gone away can still be logged with its address
        getattr(self.inner, "peername", None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is not None:
            self.limits.release(self.client)
            inner, self.inner = self.inner, None
            inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()
