"""Two bridges on PostgreSQL beside one on SQLite: a queued backlog of phone -> SMS texts
drained to the carrier stand-in (bench/carrier.py), texts per second, and the ratio.

Each run queues the same texts through the store's own interface, starts the bridge(s) in
trunk mode with defaults (carrier_concurrency and all), and counts the texts that reach the
carrier from the moment every instance is ready to the last one. PostgreSQL is a throwaway
server started like the tests' (tests/postgres.py), with fsync on, as an operator runs it.

    .venv/bin/python -m bench.scale_out [--texts 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from pathlib import Path

import psycopg

from bench.procs import DID, EXTENSION, REMOTE, Bridge, Carrier, Uas
from bench.scenarios import wait_for_count
from bridge.model import Direction
from bridge.store import NewMessage, Store
from tests.postgres import PostgresServer

PREFIX = "bench drain "


async def queue_texts(target: Path | str, count: int) -> None:
    store = Store(target, durability="normal")  # setup, not measured
    await store.open()
    try:
        expires = time.time() + 86_400
        for first in range(0, count, 500):
            await asyncio.gather(*(store.insert([NewMessage(
                direction=Direction.OUT, account="pbx", extension=EXTENSION, remote=REMOTE,
                did=DID, provider="twilio", body=f"{PREFIX}{i}", expires_at=expires,
            )]) for i in range(first, min(count, first + 500))))
    finally:
        await store.close()


async def drain(root: Path, carrier: Carrier, count: int, database: str | None,
                instances: int) -> float:
    uas = Uas()
    bridges = []
    for n in range(instances):
        bridge = Bridge(root / f"i{n}", uas.port, carrier.url, "full")
        if database is not None:
            bridge.config.write_text(bridge.config.read_text().replace(
                "[bridge]\n", f'[bridge]\ndatabase = "{database}"\ninstance = "bench-{n}"\n', 1))
        bridges.append(bridge)
    before = carrier.count(PREFIX)
    try:
        await queue_texts(database or bridges[0].db_path, count)
        await asyncio.gather(*(asyncio.to_thread(b.start, 60.0) for b in bridges))
        t0, at_ready = time.monotonic(), carrier.count(PREFIX) - before  # all of them up
        got = await wait_for_count(lambda: carrier.count(PREFIX) - before, count, cap=300,
                                   stall=15)
        if got < count:
            raise RuntimeError(f"only {got} of {count} texts reached the carrier")
        return (count - at_ready) / (time.monotonic() - t0)
    finally:
        await asyncio.gather(*(asyncio.to_thread(b.stop) for b in bridges))
        uas.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=3000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    server = PostgresServer()
    server.start()
    carrier = Carrier()
    try:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET fsync = on")
            conn.execute("ALTER SYSTEM SET synchronous_commit = on")
            conn.execute("SELECT pg_reload_conf()")
        sqlite = await drain(root / "sqlite", carrier, args.texts, None, 1)
        one = await drain(root / "pg1", carrier, args.texts, server.create_database(), 1)
        two = await drain(root / "pg2", carrier, args.texts, server.create_database(), 2)
        print(f"| backlog of {args.texts} phone -> SMS texts | texts/s | vs SQLite |")
        print("| --- | --- | --- |")
        print(f"| one bridge, SQLite | {sqlite:.0f} | 1.00 |")
        print(f"| one bridge, PostgreSQL | {one:.0f} | {one / sqlite:.2f} |")
        print(f"| two bridges, PostgreSQL | {two:.0f} | {two / sqlite:.2f} |")
    finally:
        carrier.close()
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
