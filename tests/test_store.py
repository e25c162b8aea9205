"""The store, on real SQLite files: migrations, deduplication, lifecycle rules, recovery."""

from __future__ import annotations

import sqlite3
import time

import pytest

from bridge.model import Direction, State
from bridge.store import MIGRATIONS, NewMessage, Store, StoreError


def inbound(carrier_id: str | None = "SM1", extension: str = "1001") -> NewMessage:
    return NewMessage(direction=Direction.IN, account="a", extension=extension,
                      remote="+15557654321", did="+15551230001", provider="tw",
                      carrier_id=carrier_id, body="hi", expires_at=time.time() + 60)


@pytest.fixture
async def store(tmp_path):
    s = Store(tmp_path / "state" / "bridge.sqlite3")
    await s.open()
    yield s
    await s.close()


async def test_database_is_wal_and_versioned(tmp_path, store):
    db = sqlite3.connect(tmp_path / "state" / "bridge.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == len(MIGRATIONS)


async def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "bridge.sqlite3"
    s = Store(path)
    s.open_sync()
    s.close_sync()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_version VALUES (?)", (len(MIGRATIONS) + 1,))
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer than this program"):
        Store(path).open_sync()


async def test_reopening_keeps_data_and_does_not_migrate_twice(tmp_path):
    path = tmp_path / "bridge.sqlite3"
    s = Store(path)
    await s.open()
    (mid,) = await s.insert([inbound()])
    await s.close()
    s = Store(path)
    await s.open()
    assert (await s.get(mid)).body == "hi"
    await s.close()


async def test_carrier_retry_is_stored_once(store):
    ids = await store.insert([inbound(), inbound(None, "1002")])
    assert ids is not None and len(ids) == 2
    assert await store.insert([inbound(), inbound(None, "1002")]) is None
    copy = await store.get(ids[1])
    assert copy.copy_of == ids[0]


async def test_claim_moves_due_messages_to_sending_once(store):
    (mid,) = await store.insert([inbound()])
    first = await store.claim_due(Direction.IN, 10)
    assert [m.id for m in first] == [mid] and first[0].state == State.SENDING
    assert first[0].attempts == 1
    assert await store.claim_due(Direction.IN, 10) == []
    assert await store.claim_due(Direction.OUT, 10) == []


async def test_lifecycle_refuses_backward_moves(store):
    (mid,) = await store.insert([NewMessage(
        direction=Direction.OUT, account="a", extension="1001", remote="+15557654321",
        did="+15551230001", provider="tw", body="x", expires_at=time.time() + 60)])
    await store.claim_due(Direction.OUT, 1)
    assert await store.transition(mid, State.SENT, carrier_id="SMx")
    assert await store.apply_report("tw", "SMx", State.DELIVERED, "delivered") is not None
    # a late "sent" report, or a repeat, changes nothing
    assert await store.apply_report("tw", "SMx", State.SENT, "sent") is None
    assert await store.apply_report("tw", "SMx", State.DELIVERED, "delivered") is None
    assert not await store.transition(mid, State.QUEUED)
    assert (await store.get(mid)).state == State.DELIVERED
    states = [e.state for e in await store.history(mid)]
    assert states == ["queued", "sent", "delivered"]


async def test_recover_requeues_in_flight_work(store):
    (mid,) = await store.insert([inbound()])
    await store.claim_due(Direction.IN, 1)
    assert await store.recover() == 1
    (again,) = await store.claim_due(Direction.IN, 1)
    assert again.id == mid and again.attempts == 2


async def test_long_text_parts_join_in_order_once(store):
    assert await store.add_part("v", "+1555", "ref", 2, 3, "c2", "world") is None
    assert await store.add_part("v", "+1555", "ref", 2, 3, "c2", "world") is None
    assert await store.add_part("v", "+1555", "ref", 1, 3, "c1", "hello ") is None
    text, key = await store.add_part("v", "+1555", "ref", 3, 3, "c3", "!")
    assert text == "hello world!" and "c1" in key


async def test_accepted_carrier_parts_are_kept_between_attempts(store):
    (mid,) = await store.insert([NewMessage(
        direction=Direction.OUT, account="a", extension="1001", remote="+15557654321",
        did="+15551230001", provider="tw", body="x" * 3000, expires_at=time.time() + 60)])
    (claimed,) = await store.claim_due(Direction.OUT, 1)
    assert claimed.carrier_parts == ()
    assert await store.transition(mid, State.QUEUED, next_attempt_at=time.time(),
                                  error="part 2 of 2 refused", carrier_parts=("SM1",))
    (again,) = await store.claim_due(Direction.OUT, 1)
    assert again.carrier_parts == ("SM1",)
    assert await store.transition(mid, State.SENT, carrier_id="SM1")  # not given: kept
    assert (await store.get(mid)).carrier_parts == ("SM1",)
