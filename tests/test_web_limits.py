"""The connection cap, overall and per client address, on the real web server (in process,
loopback): connections over a cap are closed at once; the others are served."""

from __future__ import annotations

import asyncio

from bridge.web.server import HttpLimits, WebhookServer


async def _ready() -> dict[str, object]:
    return {}


async def _sink(provider, events) -> None:  # pragma: no cover - no webhooks here
    raise AssertionError


async def _closed_at_once(port: int, source: str = "127.0.0.1") -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        async with asyncio.timeout(1.0):
            return await reader.read(1) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    finally:
        writer.close()


async def test_connections_over_the_caps_are_closed_at_once():
    server = WebhookServer({}, _sink, "http://127.0.0.1", 4096, _ready,
                           limits=HttpLimits(header_timeout=30, max_connections=6,
                                             max_connections_per_client=3))
    await server.start("127.0.0.1", 0)
    try:
        held = [await asyncio.open_connection("127.0.0.1", server.port, local_addr=(src, 0))
                for src in ("127.0.0.2",) * 3 + ("127.0.0.3",) * 3]
        await asyncio.sleep(0.1)
        assert server.connections is not None and server.connections.open == 6
        assert await _closed_at_once(server.port, "127.0.0.2")  # per address
        assert await _closed_at_once(server.port, "127.0.0.4")  # overall
        for _, writer in held[:2]:
            writer.close()
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 200")
        writer.close()
        assert server.connections.refused == 2
        for _, writer in held[2:]:
            writer.close()
    finally:
        await server.stop()
