"""Media any instance can serve: two bridges' media routes on one store (both backends).
With PostgreSQL the bytes are in the database, so a link saved through one instance is served
by the other; with SQLite they are files beside the database, served by the one process."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from bridge.media import MediaStore
from bridge.settings import MediaSection
from bridge.store import Store
from bridge.web.media import MediaRoutes
from tests.peers.harness import free_port


async def serve(store: Store, directory, port: int) -> tuple[MediaStore, web.AppRunner]:
    media = MediaStore(store, directory, MediaSection(retention_days=1),
                       f"http://127.0.0.1:{port}")
    app = web.Application()
    MediaRoutes(media, None).add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return media, runner


async def get(url: str) -> tuple[int, bytes, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.read(), resp.headers.get("Content-Type", "")


async def test_a_media_link_works_on_whichever_instance_it_reaches(store_target, tmp_path):
    one, two = Store(store_target, instance="one"), Store(store_target, instance="two")
    await one.open()
    await two.open()
    port_one, port_two = free_port(), free_port()
    media_one, runner_one = await serve(one, tmp_path / "media", port_one)
    media_two, runner_two = await serve(two, tmp_path / "media-two", port_two)
    try:
        saved = await media_one.save(b"\x89PNG picture", "image/png", "cat.png", origin="phone")
        path = media_one.url(saved).removeprefix(f"http://127.0.0.1:{port_one}")
        assert await get(f"http://127.0.0.1:{port_one}{path}") == \
            (200, b"\x89PNG picture", "image/png")
        elsewhere = await get(f"http://127.0.0.1:{port_two}{path}")
        if one.keeps_media:
            assert elsewhere == (200, b"\x89PNG picture", "image/png")
            assert not (tmp_path / "media").exists()  # no file anywhere
        else:  # SQLite: one process per file, its media directory beside it
            assert elsewhere[0] == 404
            assert media_one.path(saved).read_bytes() == b"\x89PNG picture"
        assert (await get(f"http://127.0.0.1:{port_two}{path}x"))[0] == 404
        assert await media_two.cleanup(now=saved.expires_at + 1) == 1
        assert (await get(f"http://127.0.0.1:{port_one}{path}"))[0] == 404
    finally:
        await runner_one.cleanup()
        await runner_two.cleanup()
        await one.close()
        await two.close()
