"""One registrant per SIP account, on a real PostgreSQL server: exactly one of two instances
acts for an account; when the holder's lock connection is cut (pg_terminate_backend) it calls
``lost`` before the standby calls ``acquired``; when the holder stops, the standby takes over.
Each instance names the holder."""

from __future__ import annotations

import asyncio
import time

import psycopg

from bridge.store.leases import APPLICATION, AccountLeases


class Recorder:
    def __init__(self, name: str, url: str, accounts: list[str]) -> None:
        self.events: list[tuple[float, str, str, str]] = []
        self.leases = AccountLeases(
            url, name, accounts,
            lambda a: self.events.append((time.monotonic(), name, "acquired", a)),
            lambda a: self.events.append((time.monotonic(), name, "lost", a)))


async def wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_one_holder_then_a_clean_takeover(postgres):
    url = postgres.create_database()
    a = Recorder("a", url, ["pbx", "other"])
    a.leases.start()
    await wait_for(lambda: a.leases.held == {"pbx", "other"})
    b = Recorder("b", url, ["pbx", "other"])
    b.leases.start()
    try:
        await wait_for(lambda: b.leases.holders == {"pbx": "a", "other": "a"})
        assert b.leases.held == set() and b.events == []

        # cut the holder's lock connection for "pbx" only, from the server side
        with psycopg.connect(url, autocommit=True) as admin:
            cut_at = time.monotonic()
            admin.execute(
                "SELECT pg_terminate_backend(a.pid) FROM pg_locks l JOIN pg_stat_activity a "
                "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND a.application_name = %s "
                "AND l.objid = (hashtext('pbx')::bigint & 4294967295)::oid",
                (f"{APPLICATION} a",))
        await wait_for(lambda: "pbx" in b.leases.held)
        lost = [t for t, who, what, acc in a.events if (who, what, acc) == ("a", "lost", "pbx")]
        taken = [t for t, who, what, acc in b.events if (what, acc) == ("acquired", "pbx")]
        assert lost and taken and lost[0] < taken[0]  # the holder stopped first
        print(f"\nlock connection cut: holder stopped acting after {lost[0] - cut_at:.2f} s, "
              f"standby acting after {taken[0] - cut_at:.2f} s")
        assert a.leases.held == {"other"} and b.leases.holders["other"] == "a"
        await wait_for(lambda: a.leases.holders["pbx"] == "b")

        # the holder of "other" stops: the standby takes it over
        stopped_at = time.monotonic()
        await a.leases.stop()
        await wait_for(lambda: b.leases.held == {"pbx", "other"})
        print(f"holder stopped: standby acting after {time.monotonic() - stopped_at:.2f} s")
    finally:
        await a.leases.stop()
        await b.leases.stop()
    assert b.events[-1][2] == "lost"  # stopping gives the accounts up
