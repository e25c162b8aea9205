"""The durable message store: the interface the core uses, the same on every backend.

The code that talks to the database is plain DB-API, written once for both backends
(``sqlite``: the embedded default; ``postgresql``: several instances, one queue), on one
connection that writes. Every public coroutine is atomic, and when it returns its change is
committed. Calls that queue up while a transaction is being written share the next one (group
commit: one commit for many texts), each in its own savepoint, so one that fails rolls back
alone.

Where the transactions run depends on the backend. PostgreSQL is a network round trip away:
its connection lives on a thread of its own, so the event loop never waits on the network.
SQLite is a library call of tens of microseconds plus the commit's fsync: its transactions run
on the event loop itself, the calls made in one turn of the loop sharing one transaction.
Measured under load, that costs less than the thread: every statement on a thread gives up the
GIL and waits to get it back from the busy event loop (up to the 5 ms switch interval, several
times per transaction), which made each text's store round trips slower than its carrier
request. Reads that can scan much of the history (the console, the admin API's listings, queue
statistics) use a second, read-only SQLite connection on a thread, so they never hold up the
loop; WAL gives them a consistent snapshot beside the writer.

A message's state is written in one place, ``_set_state``, and only as the lifecycle table
(``bridge.model.TRANSITIONS``) allows; an operator's retry is the table's explicit exception
(``OPERATOR_TRANSITIONS``). Work is claimed with a lease (``claimed_by``, ``lease_until``),
renewed while this instance lives; a message whose lease ran out is taken over by whichever
instance claims next.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bridge.model import Direction, State, can_transition
from bridge.pacing import DAY, next_slot
from bridge.secrets import reveal
from bridge.settings import PacingSettings, Settings
from bridge.store.console_reads import ConsoleReads
from bridge.store.queries import list_query
from bridge.store.records import (
    Conflict,
    HistoryEvent,
    NewMessage,
    Row,
    StoredMedia,
    StoredMessage,
    StoreError,
    imdn_json,
    media_json,
    stored_as_given,
)
from bridge.store.sqlite import SqliteBackend

T = TypeVar("T")
log = logging.getLogger("bridge.store")

GROUP_COMMIT_MAX = 256  # calls per shared transaction: bounds the latency one batch adds
LEASE_SECONDS = 30.0  # how long a claim holds without renewal before another may take it


class Connection(Protocol):
    in_transaction: bool
    broken: bool

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def close(self) -> None: ...


class Backend(Protocol):
    name: str
    shared: bool
    keeps_media: bool
    row_lock: str
    skip_locked: str
    begin: str
    on_loop: bool  # transactions run on the event loop (SQLite), not on the store thread

    def describe(self) -> str: ...
    def connect(self) -> Any: ...
    def connect_reader(self) -> Any: ...
    def lock_key(self, db: Any, key: str) -> None: ...
    def notify(self, db: Any, direction: str) -> None: ...


def default_instance() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_database_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def _settle(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """Event loop: hand each caller its result, now that it is committed."""
    for future, value, exc in outcomes:
        if future.cancelled():
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)


class Store(ConsoleReads):
    """``Store(path)`` is SQLite; ``Store("postgresql://...")`` is PostgreSQL."""

    def __init__(self, target: Path | str, *, durability: str = "full",
                 instance: str | None = None, lease_seconds: float = LEASE_SECONDS) -> None:
        self.instance = instance or default_instance()
        self.lease_seconds = lease_seconds
        self.backend: Backend
        if is_database_url(target):
            from bridge.store.postgresql import PostgresBackend  # noqa: PLC0415 (libpq only if used)

            self.backend = PostgresBackend(str(target), self.instance)
        else:
            self.backend = SqliteBackend(Path(target), durability)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._db: Any = None
        # SQLite: the read-only connection (and its thread) for the reads that scan history
        self._reader_executor: ThreadPoolExecutor | None = None
        self._reader: Any = None
        self._opened = False
        # group commit: calls waiting for the store thread, and whether it is draining them
        self._waiting: deque[tuple[Callable[[Any], Any], asyncio.Future[Any]]] = deque()
        self._lock = threading.Lock()
        self._draining = False
        self._wakeup: Callable[[Direction], None] | None = None
        self._listener: Any = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._not_ours: frozenset[str] = frozenset()

    def __repr__(self) -> str:  # never the URL: it may carry the password
        return f"<Store {self.backend.name} {self.backend.describe()}>"

    @property
    def shared(self) -> bool:
        """Several instances work on this store's queue (PostgreSQL)."""
        return self.backend.shared

    @property
    def keeps_media(self) -> bool:
        """Media bytes live in the store (PostgreSQL) rather than in files beside it."""
        return self.backend.keeps_media

    def on_stored(self, callback: Callable[[Direction], None]) -> None:
        """Call ``callback(direction)`` on the event loop when another instance stores work
        (PostgreSQL ``NOTIFY``), so the dispatcher looks now rather than at its next poll."""
        self._wakeup = callback

    def exclude_accounts(self, accounts: set[str]) -> None:
        """Inbound texts for these SIP accounts are not claimed here: another instance holds
        their registration, and a phone's text goes out from the instance that registers."""
        self._not_ours = frozenset(accounts)

    # --- plumbing ---------------------------------------------------------------------------

    async def _run(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn`` in a transaction (on the loop for SQLite, else on the store thread);
        its result (or exception) comes back only after that transaction is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self.backend.on_loop:
            self._waiting.append((fn, future))
            if not self._draining:  # the first call of this turn: write them all next turn
                self._draining = True
                loop.call_soon(self._drain_on_loop)
            return await future
        with self._lock:
            self._waiting.append((fn, future))
            start, self._draining = not self._draining, True
        if start:
            try:
                self._executor.submit(self._drain, loop)
            except RuntimeError:  # executor shut down: the store was closed
                with self._lock:
                    self._draining = False
                    self._waiting.clear()
                raise StoreError("store is closed") from None
        return await future

    def _drain_on_loop(self) -> None:
        """Event loop (SQLite): the calls made since the last turn, as one transaction. Its
        statements run here; its commit, which waits for the disk, on the store thread (a
        transaction that wrote nothing commits here). Calls made meanwhile wait for the
        next transaction, which starts once this one is committed."""
        batch = [self._waiting.popleft()
                 for _ in range(min(len(self._waiting), GROUP_COMMIT_MAX))]
        try:
            db = self._connection()
        except StoreError as exc:
            self._settled([(future, None, exc) for _, future in batch])
            return
        changes = db.total_changes
        outcomes = self._execute(db, batch)
        if not db.in_transaction:  # failed, and rolled back: nothing to commit
            self._settled(outcomes)
        elif db.total_changes == changes:  # read only: no fsync to wait for
            self._settled(self._commit_or_fail(db, outcomes))
        else:
            # The executor's own future, not run_in_executor's: wrapping it in an asyncio
            # future per transaction was about 1.5 % of a text's CPU.
            loop = asyncio.get_running_loop()
            try:
                committing = self._executor.submit(self._commit_or_fail, db, outcomes)
            except RuntimeError:  # executor shut down: the store was closed
                self._settled([(f, None, StoreError("store is closed")) for f, _, _ in outcomes])
                return
            committing.add_done_callback(functools.partial(self._committed, loop, outcomes))

    def _committed(self, loop: asyncio.AbstractEventLoop,
                   outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]],
                   done: concurrent.futures.Future[Any]) -> None:
        """Store thread: a commit is over; settle its calls on the loop."""
        if done.cancelled():  # the store closed before the commit ran
            settled = [(f, None, StoreError("store is closed")) for f, _, _ in outcomes]
        elif (exc := done.exception()) is not None:  # the rollback after a failure failed
            settled = [(f, None, exc) for f, _, _ in outcomes]
        else:
            settled = done.result()
        if not loop.is_closed():
            loop.call_soon_threadsafe(self._settled, settled)

    def _settled(self, outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]
                 ) -> None:
        """Event loop: a transaction is over; answer its calls, start the next one."""
        if self._waiting:
            asyncio.get_running_loop().call_soon(self._drain_on_loop)
        else:
            self._draining = False
        _settle(outcomes)

    def _execute(self, db: Any, batch: list[tuple[Callable[[Any], Any], asyncio.Future[Any]]]
                 ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        """Begin a transaction and run every call of ``batch`` in it, each in a savepoint of
        its own when it has company (it fails alone); the commit is left to the caller. A
        transaction that failed as a whole is rolled back and fails every call."""
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            db.execute(self.backend.begin)
            if len(batch) == 1:
                fn, future = batch[0]
                try:
                    return [(future, fn(db), None)]
                except BaseException as exc:  # the caller gets it; nothing else was in it
                    self._abort(db)
                    return [(future, None, exc)]
            for fn, future in batch:
                db.execute("SAVEPOINT call")
                try:
                    value = fn(db)
                except Exception as exc:  # this call fails alone; the others go on
                    db.execute("ROLLBACK TO SAVEPOINT call")
                    db.execute("RELEASE SAVEPOINT call")
                    outcomes.append((future, None, exc))
                else:
                    db.execute("RELEASE SAVEPOINT call")
                    outcomes.append((future, value, None))
        except BaseException as exc:  # the transaction itself failed (I/O error, disk full)
            self._abort(db)
            return [(future, None, exc) for _, future in batch]
        return outcomes

    def _commit_or_fail(self, db: Any,
                        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]
                        ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        """Commit; if that fails (disk full), no call of the transaction succeeded."""
        try:
            db.execute("COMMIT")
        except BaseException as exc:
            self._abort(db)
            return [(future, None, exc) for future, _, _ in outcomes]
        return outcomes

    async def _read(self, fn: Callable[[Any], T]) -> T:
        """A read that may scan much of the history: for SQLite on the read-only connection
        on its own thread (the loop goes on meanwhile), else like any other call."""
        if not self.backend.on_loop:
            return await self._run(fn)
        if not self._opened or self._reader_executor is None:
            raise StoreError("store is closed")
        return await asyncio.get_running_loop().run_in_executor(
            self._reader_executor, self._read_sync, fn)

    def _read_sync(self, fn: Callable[[Any], T]) -> T:
        """Reader thread: ``fn`` in one read transaction (one consistent snapshot)."""
        if self._reader is None:
            self._reader = self.backend.connect_reader()
        self._reader.execute("BEGIN")
        try:
            return fn(self._reader)
        finally:
            self._reader.execute("COMMIT")

    def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Store thread: run what is waiting, a batch per transaction, until nothing is."""
        while True:
            with self._lock:
                batch = [self._waiting.popleft()
                         for _ in range(min(len(self._waiting), GROUP_COMMIT_MAX))]
                if not batch:
                    self._draining = False
                    return
            outcomes = self._transact(batch)
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                loop.call_soon_threadsafe(_settle, outcomes)

    def _transact(
        self, batch: list[tuple[Callable[[Any], Any], asyncio.Future[Any]]]
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        if len(batch) == 1:  # no one to share with: a transaction of its own, as ever
            fn, future = batch[0]
            try:
                return [(future, self._call(fn), None)]
            except BaseException as exc:  # the caller gets it, as from run_in_executor
                return [(future, None, exc)]
        try:
            db = self._connection()
        except StoreError as exc:
            return [(future, None, exc) for _, future in batch]
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            db.execute(self.backend.begin)
            for fn, future in batch:
                db.execute("SAVEPOINT call")
                try:
                    value = fn(db)
                except Exception as exc:  # this call fails alone; the others go on
                    if db.broken:
                        raise
                    db.execute("ROLLBACK TO SAVEPOINT call")
                    db.execute("RELEASE SAVEPOINT call")
                    outcomes.append((future, None, exc))
                else:
                    db.execute("RELEASE SAVEPOINT call")
                    outcomes.append((future, value, None))
            db.execute("COMMIT")
        except BaseException as exc:  # the transaction itself failed (I/O error, disk full)
            self._abort(db)
            return [(future, None, exc) for _, future in batch]
        return outcomes

    def _connection(self) -> Any:
        """The open connection; after a lost one (PostgreSQL restarted), a new one."""
        if self._db is not None and self._db.broken:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None
            log.warning("store: connection to %s lost; reconnecting", self.backend.describe())
        if self._db is None:
            if not self._opened:
                raise StoreError("store is closed")
            self._db = self.backend.connect()
        return self._db

    def _abort(self, db: Any) -> None:
        if not db.broken and db.in_transaction:
            with contextlib.suppress(Exception):
                db.execute("ROLLBACK")

    def _call(self, fn: Callable[[Any], T]) -> T:
        db = self._connection()
        db.execute(self.backend.begin)
        try:
            value = fn(db)
            db.execute("COMMIT")
        except BaseException:
            self._abort(db)
            raise
        return value

    def open_sync(self) -> None:
        """Open (creating if needed) and migrate, on the calling thread."""
        self._db = self.backend.connect()
        self._opened = True

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.open_sync)  # migrations: off the loop
        if self.backend.on_loop:
            self._reader_executor = ThreadPoolExecutor(max_workers=1,
                                                       thread_name_prefix="store-read")
        if self.backend.shared:
            from bridge.store.postgresql import Listener  # noqa: PLC0415

            def heard(payload: str) -> None:
                with contextlib.suppress(RuntimeError):  # the loop is closing
                    loop.call_soon_threadsafe(self._heard, payload)

            self._listener = Listener(self.backend, heard)  # type: ignore[arg-type]
            await asyncio.to_thread(self._listener.start)
        self._heartbeat = asyncio.create_task(self._renew_leases(), name="store-leases")

    def _heard(self, payload: str) -> None:
        if self._wakeup is not None and payload in (Direction.IN, Direction.OUT):
            self._wakeup(Direction(payload))

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        if self._listener is not None:
            await asyncio.to_thread(self._listener.stop)
        loop = asyncio.get_running_loop()
        if self._reader_executor is not None:
            await loop.run_in_executor(self._reader_executor, self._close_reader)
            self._reader_executor.shutdown(wait=True)
            self._reader_executor = None
        # No transaction starts after this; one being committed finishes first (the store
        # thread runs one thing at a time).
        self._opened = False
        await loop.run_in_executor(self._executor, self.close_sync)
        self._executor.shutdown(wait=True)

    def _close_reader(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(Exception):
                self._reader.close()
            self._reader = None

    def close_sync(self) -> None:
        self._opened = False
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None

    def query_sync(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(connection)`` in a transaction on the calling thread (no loop running)."""
        return self._call(fn)

    # --- the one writer of states -----------------------------------------------------------

    def _set_state(
        self, db: Any, row: Row, new: State, now: float, *, detail: str = "",
        event: bool = True, by_operator: bool = False,
        sets: Sequence[tuple[str, Sequence[Any]]] = (),
    ) -> bool:
        """Move the message in ``row`` (read in this transaction, locked where others could
        write it) to ``new`` if the lifecycle allows; record the event. ``sets``: other
        columns written with it, as (SQL assignment, parameters)."""
        if not can_transition(State(row["state"]), new, by_operator=by_operator):
            return False
        fragments = ["state = ?", "updated_at = ?"]
        params: list[Any] = [str(new), now]
        if new == State.SENDING:
            fragments += ["claimed_by = ?", "lease_until = ?"]
            params += [self.instance, now + self.lease_seconds]
        else:
            fragments += ["claimed_by = NULL", "lease_until = NULL"]
        for fragment, values in sets:
            fragments.append(fragment)
            params.extend(values)
        db.execute(f"UPDATE messages SET {', '.join(fragments)} WHERE id = ?",
                   (*params, row["id"]))
        if event:
            db.execute("INSERT INTO events (message_id, at, state, detail) VALUES (?,?,?,?)",
                       (row["id"], now, str(new), detail))
        return True

    # --- writes -----------------------------------------------------------------------------

    async def insert(self, messages: Sequence[NewMessage]) -> list[int] | None:
        """Store messages in one transaction (a text and its fan-out copies). The first is
        the original; the rest are marked as its copies. Returns their ids, or None if the
        original's (provider, carrier_id) or intake_key is already stored: a replay."""
        return await self._run(lambda db: Transaction(self, db).insert(messages))

    async def insert_claimed(self, messages: Sequence[NewMessage]
                             ) -> tuple[list[int] | None, StoredMessage | None]:
        """``insert``, with the first message claimed for an attempt now (see
        ``Transaction.insert``): its ids, and the claimed message (None if not claimed)."""
        def _insert(db: Any) -> tuple[list[int] | None, StoredMessage | None]:
            tx = Transaction(self, db)
            return tx.insert(messages, claim=True), tx.claimed

        return await self._run(_insert)

    async def atomically(self, fn: Callable[[Transaction], T]) -> T:
        """Run ``fn`` with a ``Transaction``: its reads and writes are one transaction, and
        one round trip to the store thread (a text's checks and its insert, say). ``fn`` runs
        on the store thread: plain code, no awaiting."""
        return await self._run(lambda db: fn(Transaction(self, db)))

    async def claim_due(self, direction: Direction, limit: int) -> list[StoredMessage]:
        """Queued messages whose time has come, moved to SENDING for this instance to work
        on, with a lease. Messages whose lease ran out (their instance died mid-attempt) are
        queued again first and so claimed like any other. Rows another instance is claiming
        at this moment are skipped, not waited for."""
        now = time.time()

        def _claim(db: Any) -> list[StoredMessage]:
            stale = db.execute(
                "SELECT id, state, claimed_by FROM messages WHERE direction = ? "
                "AND state = 'sending' AND COALESCE(lease_until, 0) < ? ORDER BY id LIMIT ?"
                + self.backend.skip_locked,
                (str(direction), now, limit),
            ).fetchall()
            for r in stale:
                self._set_state(db, r, State.QUEUED, now, sets=[("next_attempt_at = ?", (now,))],
                                detail=f"taken over: the lease of {r['claimed_by'] or '-'} "
                                       "ran out")
            skip = sorted(self._not_ours) if direction == Direction.IN else []
            not_ours = f"AND account NOT IN ({', '.join('?' * len(skip))}) " if skip else ""
            rows = db.execute(
                "SELECT * FROM messages WHERE direction = ? AND state = 'queued' "
                f"AND next_attempt_at <= ? {not_ours}ORDER BY next_attempt_at, id LIMIT ?"
                + self.backend.skip_locked,
                (str(direction), now, *skip, limit),
            ).fetchall()
            claimed = []
            for r in rows:
                self._set_state(db, r, State.SENDING, now, event=False,
                                sets=[("attempts = attempts + 1", ())])
                m = StoredMessage.from_row(r)
                claimed.append(replace(m, state=State.SENDING, attempts=m.attempts + 1,
                                       updated_at=now))
            return claimed

        return await self._run(_claim)

    async def _renew_leases(self) -> None:
        """While this instance lives, its claims do not run out (a slow carrier call is not a
        dead instance)."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self.renew_leases()
            except Exception as exc:  # the next round tries again; a claim outlives two
                log.warning("store: could not renew leases: %s", exc)

    async def renew_leases(self) -> int:
        until = time.time() + self.lease_seconds

        def _renew(db: Any) -> int:
            cur = db.execute("UPDATE messages SET lease_until = ? WHERE state = 'sending' "
                             "AND claimed_by = ?", (until, self.instance))
            return int(cur.rowcount)

        return await self._run(_renew)

    async def next_due_at(self, direction: Direction) -> float | None:
        """When the next message of ``direction`` is due: the earliest queued attempt, or the
        earliest lease that may run out."""
        def _next(db: Any) -> float | None:
            row = db.execute(
                "SELECT MIN(next_attempt_at) AS at FROM messages WHERE direction = ? "
                "AND state = 'queued'", (str(direction),)).fetchone()
            lease = db.execute(
                "SELECT MIN(lease_until) AS at FROM messages WHERE direction = ? "
                "AND state = 'sending'", (str(direction),)).fetchone() \
                if self.backend.shared else None
            times = [r["at"] for r in (row, lease) if r is not None and r["at"] is not None]
            return min(times) if times else None

        return await self._run(_next)

    async def transition(
        self,
        message_id: int,
        state: State,
        *,
        detail: str = "",
        carrier_id: str | None = None,
        next_attempt_at: float | None = None,
        error: str | None = None,
        carrier_parts: Sequence[str] | None = None,
    ) -> bool:
        """Move a message to ``state`` if the lifecycle allows it; record the event.
        Returns False (and changes nothing) for an illegal or stale transition."""
        now = time.time()

        def _transition(db: Any) -> bool:
            row = db.execute("SELECT id, state FROM messages WHERE id = ?"
                             + self.backend.row_lock, (message_id,)).fetchone()
            if row is None:
                return False
            sets: list[tuple[str, Sequence[Any]]] = [
                ("carrier_id = COALESCE(?, carrier_id)", (carrier_id,)),
                ("next_attempt_at = ?", (next_attempt_at,)),
                ("last_error = COALESCE(?, last_error)", (error,)),
            ]
            if carrier_parts is not None:
                sets.append(("carrier_parts = ?", (json.dumps(list(carrier_parts)),)))
            return self._set_state(db, row, state, now, detail=detail or error or "",
                                   sets=sets)

        try:
            return await self._run(_transition)
        except Conflict:
            # The carrier returned an id we already hold: record the send, keep the id off.
            return await self.transition(
                message_id, state, detail=f"{detail} (carrier id {carrier_id} repeated)",
                next_attempt_at=next_attempt_at, error=error, carrier_parts=carrier_parts,
            )

    async def apply_report(
        self, provider: str, carrier_id: str, state: State, detail: str
    ) -> StoredMessage | None:
        """Apply a carrier's delivery report to the outbound message it concerns. Returns the
        updated message, or None when the report is unknown, repeated or out of order."""
        now = time.time()

        def _apply(db: Any) -> StoredMessage | None:
            row = db.execute(
                "SELECT * FROM messages WHERE provider = ? AND carrier_id = ? "
                "AND direction = 'out'" + self.backend.row_lock,
                (provider, carrier_id),
            ).fetchone()
            if row is None or State(row["state"]) == state:
                return None
            error = detail if state == State.FAILED else None
            if not self._set_state(db, row, state, now, detail=detail,
                                   sets=[("last_error = COALESCE(?, last_error)", (error,))]):
                return None
            m = StoredMessage.from_row(row)
            return replace(m, state=state, last_error=error or m.last_error)

        return await self._run(_apply)

    async def recover(self) -> int:
        """At start: work that this instance had in flight when it stopped is queued again
        (on SQLite, all work in flight: one process owns the file; on PostgreSQL, what this
        instance name claimed, and any claim whose lease ran out).
        (Delivery is at-least-once; a carrier may see a send twice after a crash mid-call.)"""
        now = time.time()

        def _recover(db: Any) -> int:
            if self.backend.shared:
                rows = db.execute(
                    "SELECT id, state FROM messages WHERE state = 'sending' AND "
                    "(claimed_by = ? OR COALESCE(lease_until, 0) < ?)" + self.backend.skip_locked,
                    (self.instance, now)).fetchall()
            else:
                rows = db.execute("SELECT id, state FROM messages WHERE state = 'sending'"
                                  ).fetchall()
            for r in rows:
                self._set_state(db, r, State.QUEUED, now, detail="resumed after restart",
                                sets=[("next_attempt_at = ?", (now,))])
            if rows:
                for direction in (Direction.OUT, Direction.IN):
                    self.backend.notify(db, str(direction))
            return len(rows)

        return await self._run(_recover)

    async def requeue(self, message_id: int, expires_at: float, detail: str) -> State | None:
        """An operator's retry: a failed or queued message is queued for an attempt now, with
        a fresh expiry (the lifecycle's operator transitions). Returns the state the message
        was in (unchanged unless it was failed or queued), or None if there is none."""
        now = time.time()

        def _requeue(db: Any) -> State | None:
            row = db.execute("SELECT id, state, direction FROM messages WHERE id = ?"
                             + self.backend.row_lock, (message_id,)).fetchone()
            if row is None:
                return None
            if self._set_state(
                    db, row, State.QUEUED, now, detail=detail, by_operator=True,
                    sets=[("next_attempt_at = ?", (now,)),
                          ("expires_at = CASE WHEN expires_at > ? THEN expires_at ELSE ? END",
                           (expires_at, expires_at))]):
                self.backend.notify(db, row["direction"])
            return State(row["state"])

        return await self._run(_requeue)

    async def add_part(
        self, provider: str, remote: str, ref: str, index: int, total: int,
        carrier_id: str, body: str,
    ) -> tuple[str, str] | None:
        """Keep one part of a long inbound text. When the last part arrives, returns the
        joined text and the first part's carrier id (used as the message's key), and
        forgets the parts. Repeated parts are ignored."""
        now = time.time()

        def _add(db: Any) -> tuple[str, str] | None:
            # parts of one text may reach two instances at once: one of them joins it
            self.backend.lock_key(db, f"parts {provider} {remote} {ref}")
            db.execute(
                "INSERT INTO inbound_parts (provider, ref, remote, part_index, total, "
                "carrier_id, body, received_at) VALUES (?,?,?,?,?,?,?,?) "
                "ON CONFLICT DO NOTHING",
                (provider, ref, remote, index, total, carrier_id, body, now),
            )
            rows = db.execute(
                "SELECT part_index, carrier_id, body FROM inbound_parts WHERE provider = ? "
                "AND remote = ? AND ref = ? ORDER BY part_index",
                (provider, remote, ref),
            ).fetchall()
            if len(rows) < total:
                return None
            db.execute(
                "DELETE FROM inbound_parts WHERE provider = ? AND remote = ? AND ref = ?",
                (provider, remote, ref),
            )
            return "".join(r["body"] for r in rows), f"{provider}-parts-{rows[0]['carrier_id']}"

        return await self._run(_add)

    async def set_opt_out(self, did: str, remote: str, opted_out: bool, keyword: str) -> None:
        now = time.time()

        def _set(db: Any) -> None:
            db.execute(
                "INSERT INTO opt_outs (did, remote, opted_out, keyword, at) VALUES (?,?,?,?,?) "
                "ON CONFLICT (did, remote) DO UPDATE SET opted_out = excluded.opted_out, "
                "keyword = excluded.keyword, at = excluded.at",
                (did, remote, int(opted_out), keyword, now),
            )

        await self._run(_set)

    async def reserve_slot(self, did: str, message_id: int, pacing: PacingSettings,
                           now: float) -> float:
        """Per-DID pacing, booked in the store so it holds across instances: seconds
        ``message_id`` must wait before it may go out from ``did`` (0: send now). A message
        told to wait keeps its slot: asking again at that time returns 0."""

        def _reserve(db: Any) -> float:
            self.backend.lock_key(db, f"pacing {did}")
            booked = db.execute(
                "SELECT at FROM pacing_slots WHERE did = ? AND message_id = ? AND taken = 0",
                (did, message_id)).fetchone()
            if booked is not None:
                if booked["at"] <= now + 0.001:
                    db.execute("UPDATE pacing_slots SET taken = 1 WHERE did = ? AND "
                               "message_id = ? AND taken = 0", (did, message_id))
                    return 0.0
                return float(booked["at"]) - now
            db.execute("DELETE FROM pacing_slots WHERE did = ? AND at <= ?", (did, now - DAY))

            def nth_latest(n: int | None) -> float | None:
                if not n:
                    return None
                row = db.execute("SELECT at FROM pacing_slots WHERE did = ? ORDER BY at DESC "
                                 "LIMIT 1 OFFSET ?", (did, n - 1)).fetchone()
                return None if row is None else float(row["at"])

            slot = next_slot(now, nth_latest(1), nth_latest(pacing.per_hour),
                             nth_latest(pacing.per_day), pacing)
            go = slot <= now
            db.execute("INSERT INTO pacing_slots (did, at, message_id, taken) VALUES (?,?,?,?)",
                       (did, slot, message_id, int(go)))
            return 0.0 if go else slot - now

        return await self._run(_reserve)

    # --- reads ------------------------------------------------------------------------------

    async def get(self, message_id: int) -> StoredMessage | None:
        def _get(db: Any) -> StoredMessage | None:
            row = db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
            return StoredMessage.from_row(row) if row else None

        return await self._run(_get)

    async def history(self, message_id: int) -> list[HistoryEvent]:
        def _history(db: Any) -> list[HistoryEvent]:
            rows = db.execute("SELECT at, state, detail FROM events WHERE message_id = ? "
                              "ORDER BY id", (message_id,)).fetchall()
            return [HistoryEvent(r["at"], r["state"], r["detail"]) for r in rows]

        return await self._read(_history)

    async def list_messages(
        self, *, state: str | None = None, number: str | None = None,
        extension: str | None = None, since: float | None = None, limit: int = 50,
    ) -> list[StoredMessage]:
        """Messages newest first, filtered (the CLI's ``messages``)."""
        sql, args = list_query(state=state, number=number, extension=extension, since=since,
                               limit=limit)
        return await self._read(
            lambda db: [StoredMessage.from_row(r) for r in db.execute(sql, args).fetchall()])

    async def last_did_for(self, account: str, extension: str, remote: str) -> str | None:
        """The DID on which ``remote`` last texted ``extension`` (for reply stickiness)."""
        return await self._run(lambda db: Transaction(self, db).last_did_for(
            account, extension, remote))

    async def is_opted_out(self, did: str, remote: str) -> bool:
        return await self._run(lambda db: Transaction(self, db).is_opted_out(did, remote))

    async def count_sent_by(self, account: str, extension: str, since: float) -> int:
        """Texts an extension sent (or tried to) since ``since``: for its rate caps."""
        return await self._run(lambda db: Transaction(self, db).count_sent_by(
            account, extension, since))

    async def queue_stats(self) -> dict[str, tuple[int, float | None]]:
        """Per direction: how many messages wait for an attempt or are in one, and when the
        oldest of them was stored (for the metrics' queue depth and age)."""

        def _stats(db: Any) -> dict[str, tuple[int, float | None]]:
            rows = db.execute(
                "SELECT direction, COUNT(*) AS n, MIN(created_at) AS oldest FROM messages "
                "WHERE state IN ('queued', 'sending') GROUP BY direction"
            ).fetchall()
            return {r["direction"]: (int(r["n"]), r["oldest"]) for r in rows}

        return await self._read(_stats)

    # --- media ------------------------------------------------------------------------------

    async def add_media(self, media: StoredMedia, data: bytes | None = None) -> StoredMedia:
        """Record a media file (with its bytes, when the store keeps them). If one from the
        same source is already recorded (two copies of a text fetched it at once), that one
        is returned and this one is not stored."""

        def _add(db: Any) -> StoredMedia:
            if media.source_key is not None:  # an expired copy not yet cleaned up: replace it
                db.execute("DELETE FROM media WHERE source_key = ? AND expires_at <= ?",
                           (media.source_key, media.created_at))
            cur = db.execute(
                "INSERT INTO media (token, filename, content_type, size, sha256, origin, "
                "source_key, created_at, expires_at) VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT DO NOTHING",
                (media.token, media.filename, media.content_type, media.size, media.sha256,
                 media.origin, media.source_key, media.created_at, media.expires_at),
            )
            if cur.rowcount == 1 or media.source_key is None:
                if data is not None and self.backend.keeps_media:
                    db.execute("INSERT INTO media_data (token, data) VALUES (?, ?)",
                               (media.token, data))
                return media
            row = db.execute("SELECT * FROM media WHERE source_key = ?",
                             (media.source_key,)).fetchone()
            return StoredMedia.from_row(row) if row else media

        return await self._run(_add)

    async def media_data(self, token: str) -> bytes | None:
        """A media item's bytes, where the store keeps them (PostgreSQL)."""
        if not self.backend.keeps_media:
            return None

        def _data(db: Any) -> bytes | None:
            row = db.execute("SELECT data FROM media_data WHERE token = ?", (token,)).fetchone()
            return bytes(row["data"]) if row else None

        return await self._run(_data)

    async def get_media(self, token: str) -> StoredMedia | None:
        def _get_media(db: Any) -> StoredMedia | None:
            row = db.execute("SELECT * FROM media WHERE token = ?", (token,)).fetchone()
            return StoredMedia.from_row(row) if row else None

        return await self._run(_get_media)

    async def media_from_source(self, source_key: str, now: float) -> StoredMedia | None:
        """The unexpired copy of a carrier's media item, if we already fetched it."""

        def _find(db: Any) -> StoredMedia | None:
            row = db.execute("SELECT * FROM media WHERE source_key = ? AND expires_at > ?",
                             (source_key, now)).fetchone()
            return StoredMedia.from_row(row) if row else None

        return await self._run(_find)

    async def evict_media(self, now: float, max_total_bytes: int) -> list[StoredMedia]:
        """Forget expired media, and the oldest beyond ``max_total_bytes`` in all; returns
        what was forgotten, so the caller deletes the files."""

        def _evict(db: Any) -> list[StoredMedia]:
            rows = db.execute("SELECT * FROM media ORDER BY created_at DESC, token DESC"
                              ).fetchall()
            total, gone = 0, []
            for row in rows:
                total += row["size"] if row["expires_at"] > now else 0
                if row["expires_at"] <= now or total > max_total_bytes:
                    gone.append(StoredMedia.from_row(row))
            for m in gone:
                db.execute("DELETE FROM media WHERE token = ?", (m.token,))
            return gone

        return await self._run(_evict)

    async def media_tokens(self) -> set[str]:
        def _tokens(db: Any) -> set[str]:
            return {r["token"] for r in db.execute("SELECT token FROM media").fetchall()}

        return await self._run(_tokens)


DB_FILE = "bridge.sqlite3"  # the SQLite file in state_dir


def database_target(settings: Settings) -> Path | str:
    """Where ``settings`` keep the state: the PostgreSQL URL, or the SQLite file."""
    if settings.bridge.database is not None:
        return reveal(settings.bridge.database)
    return Path(settings.bridge.state_dir) / DB_FILE


def store_for(settings: Settings) -> Store:
    return Store(database_target(settings), durability=settings.bridge.durability,
                 instance=settings.bridge.instance,
                 lease_seconds=settings.bridge.claim_lease_seconds)


class Transaction:
    """The store's reads and writes inside one transaction on the store thread (see
    ``Store.atomically``): what the core needs to decide on a text and store it in one
    round trip."""

    def __init__(self, store: Store, db: Any) -> None:
        self._store = store
        self._db = db
        self.claimed: StoredMessage | None = None  # what ``insert(claim=True)`` claimed

    def last_did_for(self, account: str, extension: str, remote: str) -> str | None:
        """The DID on which ``remote`` last texted ``extension`` (for reply stickiness)."""
        row = self._db.execute(
            "SELECT did FROM messages WHERE direction = 'in' AND kind = 'text' "
            "AND account = ? AND extension = ? AND remote = ? ORDER BY id DESC LIMIT 1",
            (account, extension, remote),
        ).fetchone()
        return row["did"] if row else None

    def is_opted_out(self, did: str, remote: str) -> bool:
        row = self._db.execute(
            "SELECT opted_out FROM opt_outs WHERE did = ? AND remote = ?", (did, remote)
        ).fetchone()
        return bool(row and row["opted_out"])

    def count_sent_by(self, account: str, extension: str, since: float) -> int:
        """Texts an extension sent (or tried to) since ``since``: for its rate caps."""
        row = self._db.execute(
            "SELECT COUNT(*) AS n FROM messages WHERE account = ? AND extension = ? "
            "AND direction = 'out' AND kind = 'text' AND state != 'rejected' "
            "AND created_at >= ?",
            (account, extension, since),
        ).fetchone()
        return int(row["n"])

    def insert(self, messages: Sequence[NewMessage], *, claim: bool = False
               ) -> list[int] | None:
        """See ``Store.insert``. ``claim``: the first message, if queued (and its account's
        texts are ours to send), is stored already claimed by this instance, as
        ``claim_due`` would claim it, and left in ``self.claimed`` for an attempt now."""
        db, now = self._db, time.time()
        ids: list[int] = []
        first = messages[0] if messages else None
        claim_first = (claim and first is not None and first.state == State.QUEUED
                       and not (first.direction == Direction.IN
                                and first.account in self._store._not_ours))
        for i, m in enumerate(messages):
            claimed = claim_first and i == 0
            row = db.execute(
                """INSERT INTO messages (direction, kind, state, account, extension,
                   remote, did, provider, carrier_id, copy_of, sender_id, body, media,
                   next_attempt_at, expires_at, created_at, updated_at, last_error,
                   intake_key, imdn, attempts, claimed_by, lease_until)
                   VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT DO NOTHING RETURNING id""",
                (str(m.direction), str(m.kind),
                 str(State.SENDING) if claimed else str(m.state), m.account, m.extension,
                 m.remote, m.did, m.provider, m.carrier_id, ids[0] if i else None,
                 m.sender_id, m.body, media_json(m.media),
                 now if m.state == State.QUEUED else None, m.expires_at, now, now,
                 m.last_error, None if i else m.intake_key, imdn_json(m.imdn),
                 1 if claimed else 0, self._store.instance if claimed else None,
                 now + self._store.lease_seconds if claimed else None),
            ).fetchone()
            if row is None:
                if i == 0:
                    return None
                raise Conflict(f"copy {i} of a text collides with a stored message")
            ids.append(int(row["id"]))
            db.execute(
                "INSERT INTO events (message_id, at, state, detail) VALUES (?,?,?,?)",
                (row["id"], now, str(m.state), m.event_detail or (m.last_error or "")),
            )
        if claim_first and first is not None:
            if stored_as_given(first):
                self.claimed = StoredMessage.just_claimed(first, ids[0], now)
            else:
                row = db.execute("SELECT * FROM messages WHERE id = ?", (ids[0],)).fetchone()
                self.claimed = StoredMessage.from_row(row)
        left_queued = messages[1:] if self.claimed else messages
        for direction in {m.direction for m in left_queued if m.state == State.QUEUED}:
            self._store.backend.notify(db, str(direction))
        return ids
