"""The store contract, on both backends (a real SQLite file, a real PostgreSQL server):
migrations, deduplication, lifecycle rules, claims and leases, recovery, pacing, opt-outs,
long-text parts, media. Tests that take two ``Store`` objects on one database stand for two
bridge instances."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest

from bridge.model import Direction, ImdnRequest, MediaRef, State
from bridge.settings import PacingSettings
from bridge.store import MIGRATIONS, NewMessage, Store, StoredMedia, StoreError


def inbound(carrier_id: str | None = "SM1", extension: str = "1001", **kw) -> NewMessage:
    return NewMessage(direction=Direction.IN, account="a", extension=extension,
                      remote="+15557654321", did="+15551230001", provider="tw",
                      carrier_id=carrier_id, body="hi", expires_at=time.time() + 60, **kw)


def outbound(body: str = "x", **kw) -> NewMessage:
    return NewMessage(direction=Direction.OUT, account="a", extension="1001",
                      remote="+15557654321", did="+15551230001", provider="tw", body=body,
                      expires_at=time.time() + 60, **kw)


@pytest.fixture
async def store(store_target):
    s = Store(store_target, instance="one")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def other(store_target, store):
    """A second instance on the same database."""
    s = Store(store_target, instance="two")
    await s.open()
    yield s
    await s.close()


# --- SQLite specifics -------------------------------------------------------------------------


async def test_sqlite_database_is_wal_and_versioned(tmp_path):
    s = Store(tmp_path / "bridge.sqlite3")
    await s.open()
    await s.close()
    db = sqlite3.connect(tmp_path / "bridge.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == len(MIGRATIONS)


async def test_sqlite_migrations_add_intake_key_and_carrier_parts(tmp_path):
    """A database written before migration 5 gains both columns (5 and 7, numbered as on
    main), and keeps its rows."""
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    from bridge.store.sqlite import statements

    for version, script in enumerate(MIGRATIONS[:4], 1):
        for statement in statements(script):
            db.execute(statement)
        db.execute("INSERT INTO schema_version VALUES (?)", (version,))
    db.execute("INSERT INTO messages (direction, kind, state, account, extension, remote, body, "
               "expires_at, created_at, updated_at) VALUES ('in','text','queued','a','1001',"
               "'+1555','old',1e12,1,1)")
    db.commit()
    db.close()
    s = Store(path)
    await s.open()
    try:
        old = await s.get(1)
        assert old is not None and old.body == "old" and old.carrier_parts == ()
        assert old.intake_key is None
    finally:
        await s.close()


async def test_newer_schema_is_refused(store_target):
    s = Store(store_target)
    s.open_sync()
    s.query_sync(lambda db: db.execute("INSERT INTO schema_version (version) VALUES (?)",
                                       (999,)))
    s.close_sync()
    with pytest.raises(StoreError, match="newer than this program"):
        Store(store_target).open_sync()


async def test_an_unreachable_database_is_a_clear_error_without_the_password():
    s = Store("postgresql://bridge:hunter2@127.0.0.1:1/nothing")
    with pytest.raises(StoreError, match=r"cannot connect to postgresql://127\.0\.0\.1:1/"
                                         r"nothing") as raised:
        await s.open()
    assert "hunter2" not in str(raised.value) and "hunter2" not in repr(s)


# --- the contract, on both backends ---------------------------------------------------------


async def test_reopening_keeps_data_and_does_not_migrate_twice(store_target):
    s = Store(store_target)
    await s.open()
    (mid,) = await s.insert([inbound()])
    await s.close()
    s = Store(store_target)
    await s.open()
    assert (await s.get(mid)).body == "hi"
    await s.close()


async def test_carrier_retry_is_stored_once(store):
    ids = await store.insert([inbound(), inbound(None, "1002")])
    assert ids is not None and len(ids) == 2
    assert await store.insert([inbound(), inbound(None, "1002")]) is None
    copy = await store.get(ids[1])
    assert copy.copy_of == ids[0]


async def test_a_replayed_intake_key_is_stored_once(store, other):
    first = await store.insert([outbound(intake_key="sip:call-1"), outbound()])
    assert first is not None
    assert await other.insert([outbound(intake_key="sip:call-1")]) is None  # the replay
    assert await other.insert([outbound(intake_key="sip:call-2")]) is not None
    stored = await store.get(first[0])
    assert stored.intake_key == "sip:call-1"
    assert (await store.get(first[1])).intake_key is None  # copies carry no key


async def test_carrier_parts_are_written_by_transition(store):
    (mid,) = await store.insert([outbound()])
    await store.claim_due(Direction.OUT, 1)
    assert await store.transition(mid, State.SENT, carrier_id="c1", carrier_parts=["c1", "c2"])
    assert (await store.get(mid)).carrier_parts == ("c1", "c2")
    (other_id,) = await store.insert([outbound("y")])
    assert (await store.get(other_id)).carrier_parts == ()


async def test_claim_moves_due_messages_to_sending_once(store):
    (mid,) = await store.insert([inbound()])
    first = await store.claim_due(Direction.IN, 10)
    assert [m.id for m in first] == [mid] and first[0].state == State.SENDING
    assert first[0].attempts == 1
    assert await store.claim_due(Direction.IN, 10) == []
    assert await store.claim_due(Direction.OUT, 10) == []


@pytest.mark.parametrize("body", ["hi \u00e9\U0001f600", "a\0b"])
async def test_a_text_stored_claimed_is_handed_over_as_it_reads_back(store, body):
    """The record handed straight to an attempt is the one a later read gives, field for
    field (built without reading the row back unless a NUL makes PostgreSQL store it
    otherwise)."""
    media = (MediaRef("https://example.test/a.jpg", "image/jpeg", 1234),
             MediaRef("https://example.test/b"))
    text = outbound(body, sender_id="+15550001111", media=media, intake_key="k-1",
                    imdn=ImdnRequest("imdn-1", positive=True, negative=False))
    (mid, _copy), claimed = await store.insert_claimed([text, outbound("copy")])
    assert claimed is not None and claimed.state == State.SENDING and claimed.attempts == 1
    assert claimed == await store.get(mid)
    assert (await store.claim_due(Direction.OUT, 10))[0].body == "copy"  # the copy: queued


async def test_two_instances_never_claim_the_same_message(store, other):
    ids = [i for (i,) in [await store.insert([inbound(f"SM{n}")]) for n in range(40)]]
    claims = await asyncio.gather(*(s.claim_due(Direction.IN, 3)
                                    for _ in range(10) for s in (store, other)))
    claimed = [m.id for batch in claims for m in batch]
    assert sorted(claimed) == sorted(ids)  # every one claimed, none twice


async def test_a_dead_instance_s_claims_are_taken_over_after_the_lease(store_target, store):
    (mid,) = await store.insert([inbound()])
    dying = Store(store_target, instance="dying", lease_seconds=3)
    await dying.open()
    (claim,) = await dying.claim_due(Direction.IN, 1)
    assert claim.id == mid
    await dying.close()  # stands for kill -9: its claim is left behind, no longer renewed
    assert await store.claim_due(Direction.IN, 1) == []  # not before the lease runs out
    await asyncio.sleep(claim.updated_at + 3.1 - time.time())
    (again,) = await store.claim_due(Direction.IN, 1)
    assert again.id == mid and again.attempts == 2
    assert any("lease of dying ran out" in e.detail for e in await store.history(mid))


async def test_a_live_instance_s_claims_are_renewed(store_target, store):
    (mid,) = await store.insert([inbound()])
    slow = Store(store_target, instance="slow", lease_seconds=0.9)
    await slow.open()
    try:
        assert len(await slow.claim_due(Direction.IN, 1)) == 1
        await asyncio.sleep(1.5)  # longer than the lease: the renewals keep it
        assert await store.claim_due(Direction.IN, 1) == []
        assert await slow.transition(mid, State.DELIVERED)
    finally:
        await slow.close()


async def test_lifecycle_refuses_backward_moves(store):
    (mid,) = await store.insert([outbound()])
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


async def test_a_repeated_carrier_id_is_recorded_not_stored_twice(store):
    a, b = (await store.insert([outbound("a")]))[0], (await store.insert([outbound("b")]))[0]
    await store.claim_due(Direction.OUT, 2)
    assert await store.transition(a, State.SENT, carrier_id="SAME")
    assert await store.transition(b, State.SENT, carrier_id="SAME")
    assert (await store.get(b)).carrier_id is None
    assert "carrier id SAME repeated" in (await store.history(b))[-1].detail


async def test_recover_requeues_in_flight_work(store):
    (mid,) = await store.insert([inbound()])
    await store.claim_due(Direction.IN, 1)
    assert await store.recover() == 1
    (again,) = await store.claim_due(Direction.IN, 1)
    assert again.id == mid and again.attempts == 2


async def test_operator_requeue_is_the_one_way_back_from_failed(store):
    (mid,) = await store.insert([outbound()])
    await store.claim_due(Direction.OUT, 1)
    assert await store.transition(mid, State.FAILED, error="no route")
    assert not await store.transition(mid, State.QUEUED)  # not for the bridge itself
    assert await store.requeue(mid, time.time() + 3600, "retried by an operator") \
        == State.FAILED
    again = await store.get(mid)
    assert again.state == State.QUEUED and again.expires_at > time.time() + 3000
    (delivered,) = await store.insert([outbound("d")])
    await store.claim_due(Direction.OUT, 5)
    await store.transition(delivered, State.DELIVERED)
    assert await store.requeue(delivered, time.time() + 3600, "x") == State.DELIVERED
    assert (await store.get(delivered)).state == State.DELIVERED
    assert await store.requeue(10**9, time.time(), "x") is None


async def test_storing_work_wakes_the_other_instances(store_target, store, other):
    woken: list[Direction] = []
    other.on_stored(woken.append)
    await store.insert([outbound()])
    if not store.shared:  # one process per SQLite file: nobody else to wake
        assert woken == []
        return
    for _ in range(50):
        if woken:
            break
        await asyncio.sleep(0.05)
    assert woken == [Direction.OUT]


async def test_pacing_queues_rather_than_drops(store):
    pace = PacingSettings(per_second=2, per_hour=5)
    waits = [await store.reserve_slot("+1", i, pace, now=1000.0) for i in range(7)]
    assert waits == [0.0, 0.5, 1.0, 1.5, 2.0, 3600.0, 3600.5]
    # a deferred message keeps its slot: asking at that time lets it through
    assert await store.reserve_slot("+1", 1, pace, now=1000.5) == 0.0
    assert await store.reserve_slot("+1", 6, pace, now=1000.5) == 3600.0
    # other DIDs are paced separately
    assert await store.reserve_slot("+2", 0, pace, now=1000.0) == 0.0


async def test_pacing_holds_across_instances(store, other):
    pace = PacingSettings(per_second=1)
    waits = await asyncio.gather(*(s.reserve_slot("+1", i, pace, now=50.0)
                                   for i, s in enumerate([store, other] * 5)))
    assert sorted(waits) == [float(n) for n in range(10)]  # one a second, between them


async def test_opt_outs_hold_across_instances(store, other):
    await store.set_opt_out("+1555", "+1666", True, "STOP")
    assert await other.is_opted_out("+1555", "+1666")
    await other.set_opt_out("+1555", "+1666", False, "START")
    assert not await store.is_opted_out("+1555", "+1666")


async def test_reply_stickiness_and_caps_hold_across_instances(store, other):
    await store.insert([inbound("SMa")])
    assert await other.last_did_for("a", "1001", "+15557654321") == "+15551230001"
    await store.insert([outbound()])
    await other.insert([outbound()])
    assert await store.count_sent_by("a", "1001", time.time() - 60) == 2


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


async def test_parts_reaching_two_instances_at_once_are_joined_once(store, other):
    results = await asyncio.gather(*(s.add_part("v", "+1555", "r", i, 6, f"c{i}", str(i))
                                     for i, s in zip(range(1, 7), [store, other] * 3,
                                                     strict=True)))
    joined = [r for r in results if r is not None]
    assert joined == [("123456", "v-parts-c1")]


async def test_list_and_read_methods(store):
    (a,) = await store.insert([inbound("SMa")])
    (b,) = await store.insert([outbound(media=(MediaRef("https://x/y.png", "image/png", 3),))])
    assert [m.id for m in await store.list_messages()] == [b, a]
    assert [m.id for m in await store.list_messages(state="queued", extension="1001",
                                                    number="+15557654321")] == [b, a]
    assert await store.list_messages(state="delivered") == []
    assert (await store.get(b)).media == (MediaRef("https://x/y.png", "image/png", 3),)
    assert [e.state for e in await store.history(a)] == ["queued"]
    stats = await store.queue_stats()
    assert stats["in"][0] == 1 and stats["out"][0] == 1
    assert await store.next_due_at(Direction.OUT) is not None


def media_record(token: str, source: str | None = None, size: int = 3,
                 expires_in: float = 60) -> StoredMedia:
    now = time.time()
    return StoredMedia(token=token, filename="a.png", content_type="image/png", size=size,
                       sha256="0" * 64, origin="carrier", source_key=source, created_at=now,
                       expires_at=now + expires_in)


async def test_media_records_and_bytes(store, other):
    kept = await store.add_media(media_record("t" * 22, "src"), b"abc")
    assert kept.token == "t" * 22
    # the same carrier item saved at once by another instance: the first one stays
    assert (await other.add_media(media_record("u" * 22, "src"), b"abc")).token == "t" * 22
    assert (await other.get_media("t" * 22)).size == 3
    assert await other.media_from_source("src", time.time()) is not None
    if store.keeps_media:
        assert await other.media_data("t" * 22) == b"abc"  # any instance serves it
    else:
        assert await other.media_data("t" * 22) is None  # files, beside the SQLite file
    await store.add_media(media_record("v" * 22, expires_in=-1), b"old")
    gone = await store.evict_media(time.time(), 10**6)
    assert [m.token for m in gone] == ["v" * 22]
    assert await store.media_tokens() == {"t" * 22}
    assert await store.media_data("v" * 22) is None


async def test_a_nul_in_a_text_is_kept_as_far_as_the_backend_can(store):
    (mid,) = await store.insert([NewMessage(
        direction=Direction.IN, account="a", extension="1001", remote="+15557654321",
        body="a\0b", expires_at=time.time() + 60)])
    body = (await store.get(mid)).body
    assert body == ("a\ufffdb" if store.shared else "a\0b")
