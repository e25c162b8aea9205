"""The dispatcher on a real SQLite store: the retry policy, claims, and the hand-off of a text
stored already claimed (``reserve`` / ``take``) that skips the claim round trip only while no
backlog waits."""

from __future__ import annotations

import asyncio
import time

import pytest

from bridge.dispatch import Dispatcher, Done, Outcome, RetryPolicy, next_attempt
from bridge.model import Direction, State
from bridge.store import NewMessage, Store, StoredMessage


def outbound(body: str) -> NewMessage:
    return NewMessage(direction=Direction.OUT, account="a", extension="1001",
                      remote="+12025550123", did="+15551230001", provider="tw", body=body,
                      expires_at=time.time() + 3600)


def test_backoff_doubles_up_to_the_cap_and_stops_at_expiry():
    policy = RetryPolicy(first=5, maximum=60, jitter=0)
    delays = [next_attempt(policy, n, 0.0, 1e9) for n in range(1, 7)]
    assert delays == [5, 10, 20, 40, 60, 60]
    assert next_attempt(policy, 1, 0.0, expires_at=4.0) is None  # would be after expiry
    assert next_attempt(policy, 1, 0.0, 1e9, retry_after=30) == 30  # the carrier's wish


def test_jitter_stays_within_its_fraction():
    policy = RetryPolicy(first=10, maximum=300, jitter=0.2)
    assert next_attempt(policy, 1, 0.0, 1e9, rand=lambda: 0.0) == pytest.approx(8.0)
    assert next_attempt(policy, 1, 0.0, 1e9, rand=lambda: 1.0) == pytest.approx(12.0)


class Recorder:
    """An attempt that succeeds, or waits until released; records what it was given."""

    def __init__(self, hold: bool = False) -> None:
        self.seen: list[StoredMessage] = []
        self.release = asyncio.Event()
        if not hold:
            self.release.set()

    async def __call__(self, message: StoredMessage) -> Outcome:
        self.seen.append(message)
        await self.release.wait()
        return Done(State.SENT, f"SM{message.id}", "accepted")


async def nothing(message: StoredMessage, state: State, detail: str) -> None:
    return None


@pytest.fixture
async def store(tmp_path):
    s = Store(tmp_path / "bridge.sqlite3")
    await s.open()
    yield s
    await s.close()


async def until(condition, seconds: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def dispatcher(store: Store, attempt: Recorder, concurrency: int = 2) -> Dispatcher:
    return Dispatcher(Direction.OUT, store, attempt, nothing, RetryPolicy(jitter=0),
                      concurrency)


async def test_queued_texts_are_claimed_and_sent_once(store):
    attempt = Recorder()
    d = dispatcher(store, attempt)
    ids = [i for (i,) in [await store.insert([outbound(f"t{n}")]) for n in range(5)]]
    d.start()
    try:
        await until(lambda: len(attempt.seen) == 5)
        await until(lambda: d.in_flight == 0)
    finally:
        await d.stop()
    assert sorted(m.id for m in attempt.seen) == ids
    assert {(await store.get(i)).state for i in ids} == {State.SENT}


async def test_a_text_stored_claimed_is_attempted_without_a_claim(store):
    attempt = Recorder()
    d = dispatcher(store, attempt)
    d.start()
    await until(lambda: d.reserve() or False)  # the first cycle found no backlog
    try:
        ids, claimed = await store.insert_claimed([outbound("now")])
        assert claimed is not None and claimed.state == State.SENDING
        assert claimed.attempts == 1 and claimed.id == ids[0]
        d.take(claimed)
        await until(lambda: len(attempt.seen) == 1)
        await until(lambda: d.in_flight == 0)
    finally:
        await d.stop()
    assert (await store.get(ids[0])).state == State.SENT
    assert [e.state for e in await store.history(ids[0])] == ["queued", "sent"]


async def test_a_handed_over_text_done_costs_no_look_at_the_queue(store):
    attempt = Recorder()
    d = dispatcher(store, attempt)
    looks = 0
    claim_due = store.claim_due

    async def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal looks
        looks += 1
        return await claim_due(*args, **kwargs)

    store.claim_due = counted  # type: ignore[method-assign]
    d.start()
    await until(lambda: d.reserve() or False)
    try:
        before = looks
        for n in range(5):
            if n:
                assert d.reserve()
            _, claimed = await store.insert_claimed([outbound(f"handed over {n}")])
            d.take(claimed)
            await until(lambda: d.in_flight == 0)
        assert looks == before  # five texts sent, the queue never read
    finally:
        await d.stop()
    assert len(attempt.seen) == 5


async def test_no_slot_is_promised_while_a_backlog_waits_or_every_slot_is_busy(store):
    attempt = Recorder(hold=True)
    d = dispatcher(store, attempt, concurrency=2)
    for n in range(3):
        await store.insert([outbound(f"backlog {n}")])
    assert not d.reserve()  # not started: whatever is queued goes first
    d.start()
    try:
        await until(lambda: len(attempt.seen) == 2)
        assert not d.reserve()  # both slots busy, and one more waits queued
        attempt.release.set()
        await until(lambda: len(attempt.seen) == 3)
        await until(lambda: d.in_flight == 0)
        await until(lambda: d.reserve() or False)  # drained: the next text may skip the queue
        d.take(None)  # it was refused after all: the slot is free again
        assert d.reserve()
        d.take(None)
    finally:
        await d.stop()


async def test_a_claimed_text_left_at_shutdown_is_queued_again_at_the_next_start(tmp_path):
    path = tmp_path / "bridge.sqlite3"
    store = Store(path)
    await store.open()
    attempt = Recorder()
    d = dispatcher(store, attempt)
    d.start()
    await until(lambda: d.reserve() or False)
    (mid,), claimed = await store.insert_claimed([outbound("late")])
    await d.stop()
    d.take(claimed)  # shutdown began: not attempted
    await store.close()
    assert attempt.seen == []
    again = Store(path)
    await again.open()
    try:
        assert await again.recover() == 1
        assert (await again.get(mid)).state == State.QUEUED
    finally:
        await again.close()


async def test_an_attempt_that_raises_is_retried_not_lost(store):
    async def broken(message: StoredMessage) -> Outcome:
        raise RuntimeError("adapter bug")

    d = Dispatcher(Direction.OUT, store, broken, nothing, RetryPolicy(jitter=0), 2)
    (mid,) = await store.insert([outbound("x")])
    d.start()
    try:
        deadline = time.monotonic() + 5
        while (m := await store.get(mid)).attempts < 1 or m.state != State.QUEUED:
            assert time.monotonic() < deadline, f"still {m.state} after {m.attempts}"
            await asyncio.sleep(0.01)
    finally:
        await d.stop()
    assert "internal error: RuntimeError" in (m.last_error or "")
