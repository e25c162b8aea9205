"""Group commit in the store, on real SQLite files: calls that queue up while the store thread
is busy share one transaction, yet each succeeds or fails alone, and none hears back before
its change is committed."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from bridge.model import Direction, State
from bridge.store import NewMessage, Store


def inbound(carrier_id: str, body: str = "hi") -> NewMessage:
    return NewMessage(direction=Direction.IN, account="a", extension="1001",
                      remote="+12025550123", did="+15551230001", provider="tw",
                      carrier_id=carrier_id, body=body, expires_at=time.time() + 60)


@pytest.fixture
async def store(tmp_path):
    s = Store(tmp_path / "bridge.sqlite3")
    await s.open()
    yield s
    await s.close()


async def _hold_store_thread(store: Store) -> tuple[asyncio.Task[None], threading.Event]:
    """Occupy the store thread until the returned event is set, so that the calls made
    meanwhile queue up and are written together."""
    release = threading.Event()
    started = threading.Event()

    def hold(db: sqlite3.Connection) -> None:
        started.set()
        release.wait(10)

    task = asyncio.create_task(store._run(hold))
    await asyncio.to_thread(started.wait, 10)
    return task, release


async def test_queued_calls_share_a_transaction_but_fail_alone(store):
    task, release = await _hold_store_thread(store)

    def write_then_fail(db: sqlite3.Connection) -> None:
        db.execute("UPDATE messages SET body = 'clobbered'")
        raise ValueError("this call fails after writing")

    calls = [
        store.insert([inbound("SM1", "first")]),
        store._run(write_then_fail),
        store.insert([inbound("SM2", "second")]),
        store.insert([inbound("SM1", "repeat of first")]),  # a carrier's retry: deduplicated
    ]
    pending = asyncio.gather(*calls, return_exceptions=True)
    await asyncio.sleep(0.05)
    assert not pending.done()  # nothing answered while the transaction is not yet written
    release.set()
    first, failed, second, repeat = await pending
    await task
    assert isinstance(failed, ValueError)
    assert repeat is None
    assert first is not None and second is not None
    assert [(await store.get(i)).body for i in (*first, *second)] == ["first", "second"]


async def test_answered_calls_are_on_disk(tmp_path, store):
    """Once a call returns, another connection sees its change: it was committed."""
    task, release = await _hold_store_thread(store)
    calls = asyncio.gather(*(store.insert([inbound(f"SM{i}")]) for i in range(50)))
    release.set()
    ids = [i for (i,) in await calls]
    await task
    reader = Store(tmp_path / "bridge.sqlite3")  # a second connection
    await reader.open()
    try:
        stored = [(await reader.get(i)).state for i in ids]
    finally:
        await reader.close()
    assert stored == [State.QUEUED] * 50


async def test_transitions_in_one_batch_follow_the_lifecycle(store):
    (mid,) = await store.insert([inbound("SM9")])
    task, release = await _hold_store_thread(store)
    calls = asyncio.gather(
        store.transition(mid, State.SENDING),
        store.transition(mid, State.DELIVERED),
        store.transition(mid, State.QUEUED),  # delivered is final: refused
    )
    release.set()
    assert await calls == [True, True, False]
    await task
    assert (await store.get(mid)).state == State.DELIVERED
    assert [e.state for e in await store.history(mid)] == ["queued", "sending", "delivered"]


async def test_a_closed_store_refuses_calls(tmp_path):
    s = Store(tmp_path / "bridge.sqlite3")
    await s.open()
    await s.close()
    with pytest.raises(Exception, match="closed"):
        await s.insert([inbound("SM1")])
