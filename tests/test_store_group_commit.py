"""Group commit in the store, on real databases: calls that queue up while a transaction is
being written share the next one, yet each succeeds or fails alone, and none hears back before
its change is committed. SQLite writes on the event loop (the calls of one turn share a
transaction); PostgreSQL on the store thread (the calls made while it is busy share one)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable
from typing import Any

import pytest

from bridge.model import Direction, State
from bridge.store import NewMessage, Store


def inbound(carrier_id: str, body: str = "hi") -> NewMessage:
    return NewMessage(direction=Direction.IN, account="a", extension="1001",
                      remote="+12025550123", did="+15551230001", provider="tw",
                      carrier_id=carrier_id, body=body, expires_at=time.time() + 60)


@pytest.fixture
async def store(store_target):
    s = Store(store_target)
    await s.open()
    yield s
    await s.close()


def _count_commits(store: Store) -> list[str]:
    """Every COMMIT the store's writing connection runs from now on (SQLite)."""
    seen: list[str] = []
    store._db.db.set_trace_callback(
        lambda sql: seen.append(sql) if sql.strip().upper() == "COMMIT" else None)
    return seen


async def together(store: Store, *calls: Awaitable[Any]) -> list[Any]:
    """Make ``calls`` queue up for one transaction and return their outcomes, checking on
    the way that none was answered before that transaction was written."""
    if store.backend.on_loop:
        commits = _count_commits(store)
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert len(commits) == 1  # made in one turn of the loop: one transaction
        return outcomes
    # the store thread: hold it busy while the calls queue up behind it
    release, started = threading.Event(), threading.Event()

    def hold(db: Any) -> None:
        started.set()
        release.wait(10)

    holding = asyncio.create_task(store._run(hold))
    await asyncio.to_thread(started.wait, 10)
    pending = asyncio.gather(*calls, return_exceptions=True)
    await asyncio.sleep(0.05)
    assert not pending.done()  # nothing answered while the transaction is not yet written
    release.set()
    outcomes = await pending
    await holding
    return outcomes


async def test_queued_calls_share_a_transaction_but_fail_alone(store):
    def write_then_fail(db: Any) -> None:
        db.execute("UPDATE messages SET body = 'clobbered'")
        raise ValueError("this call fails after writing")

    first, failed, second, repeat = await together(
        store,
        store.insert([inbound("SM1", "first")]),
        store._run(write_then_fail),
        store.insert([inbound("SM2", "second")]),
        store.insert([inbound("SM1", "repeat of first")]),  # a carrier's retry: deduplicated
    )
    assert isinstance(failed, ValueError)
    assert repeat is None
    assert first is not None and second is not None
    assert [(await store.get(i)).body for i in (*first, *second)] == ["first", "second"]


async def test_answered_calls_are_on_disk(store_target, store):
    """Once a call returns, another connection sees its change: it was committed."""
    ids = [i for (i,) in await together(
        store, *(store.insert([inbound(f"SM{i}")]) for i in range(50)))]
    reader = Store(store_target)  # a second connection
    await reader.open()
    try:
        stored = [(await reader.get(i)).state for i in ids]
    finally:
        await reader.close()
    assert stored == [State.QUEUED] * 50


async def test_transitions_in_one_batch_follow_the_lifecycle(store):
    (mid,) = await store.insert([inbound("SM9")])
    assert await together(
        store,
        store.transition(mid, State.SENDING),
        store.transition(mid, State.DELIVERED),
        store.transition(mid, State.QUEUED),  # delivered is final: refused
    ) == [True, True, False]
    assert (await store.get(mid)).state == State.DELIVERED
    assert [e.state for e in await store.history(mid)] == ["queued", "sending", "delivered"]


async def test_a_closed_store_refuses_calls(tmp_path):
    s = Store(tmp_path / "bridge.sqlite3")
    await s.open()
    await s.close()
    with pytest.raises(Exception, match="closed"):
        await s.insert([inbound("SM1")])


async def test_sqlite_scanning_reads_run_beside_the_loop_and_see_what_was_committed(tmp_path):
    """The console's and listings' reads run on a read-only connection on a thread of their
    own (the loop goes on meanwhile), and see every change answered before them."""
    s = Store(tmp_path / "bridge.sqlite3")
    await s.open()
    try:
        ids = [i for (i,) in await asyncio.gather(
            *(s.insert([inbound(f"SM{i}")]) for i in range(5)))]
        where: list[int] = []

        def scan(db: Any) -> int:
            where.append(threading.get_ident())
            return int(db.execute("SELECT COUNT(*) AS n FROM messages").fetchone()["n"])

        assert await s._read(scan) == len(ids)
        assert where and where[0] != threading.get_ident()
        assert [m.id for m in await s.list_messages()] == sorted(ids, reverse=True)
        with pytest.raises(Exception, match="readonly"):  # it cannot write
            await s._read(lambda db: db.execute("DELETE FROM messages"))
    finally:
        await s.close()
    with pytest.raises(Exception, match="closed"):
        await s.list_messages()


@pytest.mark.parametrize("store_target", ["sqlite"], indirect=True)
async def test_a_commit_that_raises_fails_its_calls_instead_of_leaving_them_waiting(
        store, monkeypatch):
    """SQLite hands only the commit to the store thread: even when it raises there, every
    call of the transaction hears back."""
    def broken_commit(db: Any, outcomes: Any) -> Any:
        raise OSError("the rollback after a failed commit failed too")

    monkeypatch.setattr(store, "_commit_or_fail", broken_commit)
    outcome = await asyncio.wait_for(
        asyncio.gather(store.insert([inbound("SM1")]), return_exceptions=True), 5)
    assert isinstance(outcome[0], OSError)
