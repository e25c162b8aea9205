"""A local carrier for the benchmark, in its own process: Twilio's Messages API on loopback.

``POST /2010-04-01/Accounts/{sid}/Messages.json`` answers 201 with a fresh ``sid`` (as
Twilio does) and records the wall-clock arrival time and ``Body`` of each request. As strict
as Twilio where the bridge and the peer could differ: a request for another account or
without the account's HTTP Basic credentials gets 401, one without To, From or Body 400,
and neither is recorded (so it counts as lost). The
benchmark reads the records through two control routes:

    GET  /_bench/count?prefix=P      -> {"n": N} (bodies starting with P)
    POST /_bench/dump?path=/tmp/x    writes [[arrival, body], ...] there and forgets them

Usage: python -m bench.carrier   (prints "PORT <n>" once it listens on 127.0.0.1)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time

import uvloop
from aiohttp import web

from bench.procs import TWILIO_BASIC, TWILIO_SID

RECORDS = web.AppKey("records", list)


async def messages(request: web.Request) -> web.Response:
    if (request.match_info["sid"] != TWILIO_SID
            or request.headers.get("Authorization") != TWILIO_BASIC):
        return web.json_response({"code": 20003, "message": "Authenticate", "status": 401},
                                 status=401)
    form = await request.post()
    if not all(form.get(k) for k in ("To", "From", "Body")):
        return web.json_response({"code": 21604, "message": "To, From and Body are required",
                                  "status": 400}, status=400)
    request.app[RECORDS].append((time.time(), str(form.get("Body", ""))))
    sid = f"SM{next(_SIDS):032x}"
    return web.json_response({"sid": sid, "status": "queued"}, status=201)


async def count(request: web.Request) -> web.Response:
    prefix = request.query.get("prefix", "")
    return web.json_response({"n": sum(b.startswith(prefix) for _, b in request.app[RECORDS])})


async def dump(request: web.Request) -> web.Response:
    held = request.app[RECORDS]
    records = held[:]
    held.clear()
    with open(request.query["path"], "w", encoding="utf-8") as out:
        json.dump(records, out)
    return web.json_response({"n": len(records)})


_SIDS = itertools.count(1)


async def serve() -> None:
    app = web.Application()
    app[RECORDS] = []
    app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", messages)
    app.router.add_get("/_bench/count", count)
    app.router.add_post("/_bench/dump", dump)
    runner = web.AppRunner(app, access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"PORT {port}", flush=True)
    try:
        await asyncio.Event().wait()  # until SIGTERM
    finally:
        await runner.cleanup()


def main() -> None:
    uvloop.install()  # as the bridge runs
    with contextlib.suppress(KeyboardInterrupt, SystemExit):  # SIGTERM ends it quietly
        asyncio.run(serve())


if __name__ == "__main__":
    main()
