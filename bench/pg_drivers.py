"""Why the PostgreSQL backend uses psycopg 3 (see bridge/store/postgresql.py): insert+claim
round trips per second on one connection to a loopback server, one transaction each, for
asyncpg, psycopg 3's asyncio API, and psycopg 3 used synchronously on a worker thread (the
way the store uses it). Starts its own server like the tests (tests/postgres.py).

    .venv/bin/python -m bench.pg_drivers [--n 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg
import psycopg

from tests.postgres import PostgresServer

SCHEMA = ["DROP TABLE IF EXISTS m",
          "CREATE TABLE m (id BIGSERIAL PRIMARY KEY, state TEXT NOT NULL, body TEXT NOT NULL, "
          "due DOUBLE PRECISION, claimed_by TEXT)",
          "CREATE INDEX m_due ON m(state, due)"]
INSERT = "INSERT INTO m (state, body, due) VALUES ('queued', {0}, {1}) RETURNING id"
CLAIM = ("UPDATE m SET state = 'sending', claimed_by = 'x' WHERE id IN (SELECT id FROM m "
         "WHERE state = 'queued' AND due <= {0} ORDER BY due LIMIT 1 FOR UPDATE SKIP LOCKED) "
         "RETURNING *")


async def with_asyncpg(url: str, n: int) -> float:
    conn = await asyncpg.connect(url)
    for statement in SCHEMA:
        await conn.execute(statement)
    start = time.perf_counter()
    for _ in range(n):
        async with conn.transaction():
            await conn.fetchval(INSERT.format("$1", "$2"), "hello", time.time())
        async with conn.transaction():
            await conn.fetch(CLAIM.format("$1"), time.time())
    rate = n / (time.perf_counter() - start)
    await conn.close()
    return rate


async def with_psycopg_async(url: str, n: int) -> float:
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    for statement in SCHEMA:
        await conn.execute(statement)
    start = time.perf_counter()
    for _ in range(n):
        async with conn.transaction():
            await conn.execute(INSERT.format("%s", "%s"), ("hello", time.time()))
        async with conn.transaction():
            await (await conn.execute(CLAIM.format("%s"), (time.time(),))).fetchall()
    rate = n / (time.perf_counter() - start)
    await conn.close()
    return rate


async def with_psycopg_thread(url: str, n: int) -> float:
    conn = psycopg.connect(url, autocommit=True)
    for statement in SCHEMA:
        conn.execute(statement)

    def insert() -> None:
        with conn.transaction():
            conn.execute(INSERT.format("%s", "%s"), ("hello", time.time())).fetchone()

    def claim() -> None:
        with conn.transaction():
            conn.execute(CLAIM.format("%s"), (time.time(),)).fetchall()

    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    for _ in range(n):
        await loop.run_in_executor(None, insert)
        await loop.run_in_executor(None, claim)
    rate = n / (time.perf_counter() - start)
    conn.close()
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    server = PostgresServer()
    server.start()
    try:
        for round_no in range(1, args.rounds + 1):
            for name, run in (("asyncpg", with_asyncpg),
                              ("psycopg 3 asyncio", with_psycopg_async),
                              ("psycopg 3 on a thread", with_psycopg_thread)):
                rate = await run(server.url(), args.n)
                print(f"round {round_no}  {name:<22} {rate:6.0f} insert+claim/s", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    asyncio.run(main())
