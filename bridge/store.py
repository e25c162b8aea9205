"""Durable message store: the only module with SQL.

SQLite in WAL mode. All database work runs on one dedicated thread (one connection), so the
event loop never blocks on disk and SQLite never sees two writers. Every public coroutine is
atomic, and when it returns, its change is on disk. Under load, calls that queue up while a
transaction is being written share the next one (group commit: one fsync for many texts),
each in its own savepoint, so one that fails rolls back alone.

Schema changes are numbered migrations applied in order, one transaction each, recorded in
``schema_version``; a database written by a newer version is refused rather than guessed at.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from bridge.model import Direction, ImdnRequest, Kind, MediaRef, State, can_transition

T = TypeVar("T")

MIGRATIONS: list[str] = [
    # 1: messages and their history
    """
    CREATE TABLE messages (
        id              INTEGER PRIMARY KEY,
        direction       TEXT NOT NULL,          -- 'out' phone->SMS, 'in' SMS->phone
        kind            TEXT NOT NULL,          -- 'text' or 'notice'
        state           TEXT NOT NULL,
        account         TEXT NOT NULL,
        extension       TEXT NOT NULL,          -- sender (out) or recipient (in)
        remote          TEXT NOT NULL,          -- the other party's E.164 number
        did             TEXT,                   -- our number: From (out) / To (in)
        provider        TEXT,
        carrier_id      TEXT,
        copy_of         INTEGER REFERENCES messages(id),  -- fan-out copies of one text
        sender_id       TEXT,
        body            TEXT NOT NULL,
        media           TEXT NOT NULL DEFAULT '[]',
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        expires_at      REAL NOT NULL,
        created_at      REAL NOT NULL,
        updated_at      REAL NOT NULL,
        last_error      TEXT
    );
    CREATE UNIQUE INDEX messages_carrier_key
        ON messages(provider, carrier_id) WHERE carrier_id IS NOT NULL AND copy_of IS NULL;
    CREATE INDEX messages_due ON messages(direction, state, next_attempt_at);
    CREATE INDEX messages_remote ON messages(remote, created_at);
    CREATE TABLE events (
        id          INTEGER PRIMARY KEY,
        message_id  INTEGER NOT NULL REFERENCES messages(id),
        at          REAL NOT NULL,
        state       TEXT NOT NULL,
        detail      TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX events_message ON events(message_id);
    CREATE TABLE inbound_parts (
        provider    TEXT NOT NULL,
        ref         TEXT NOT NULL,              -- the carrier's reference for the long text
        remote      TEXT NOT NULL,
        part_index  INTEGER NOT NULL,
        total       INTEGER NOT NULL,
        carrier_id  TEXT NOT NULL,
        body        TEXT NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (provider, remote, ref, part_index)
    );
    """,
    # 2: opt-outs (STOP / START keywords, carrier opt-out errors), per our number and theirs
    """
    CREATE TABLE opt_outs (
        did         TEXT NOT NULL,
        remote      TEXT NOT NULL,
        opted_out   INTEGER NOT NULL,
        keyword     TEXT NOT NULL,
        at          REAL NOT NULL,
        PRIMARY KEY (did, remote)
    );
    CREATE INDEX messages_sender ON messages(account, extension, direction, created_at);
    """,
    # 3: MMS media we hold (copied from carriers, or sent by phones), served by token
    """
    CREATE TABLE media (
        token        TEXT PRIMARY KEY,          -- random, 128 bits: the secret part of its URL
        filename     TEXT NOT NULL,
        content_type TEXT NOT NULL,
        size         INTEGER NOT NULL,
        sha256       TEXT NOT NULL,
        origin       TEXT NOT NULL,             -- 'carrier' or 'phone'
        source_key   TEXT,                      -- hash of provider + carrier URL it came from
        created_at   REAL NOT NULL,
        expires_at   REAL NOT NULL
    );
    CREATE UNIQUE INDEX media_source ON media(source_key) WHERE source_key IS NOT NULL;
    CREATE INDEX media_created ON media(created_at);
    """,
    # 4: the reply-stickiness lookup (last_did_for) stays an index seek however long the
    # history grows
    """
    CREATE INDEX messages_conversation ON messages(account, extension, remote, direction, kind);
    """,
    # 5: SIP intake: the journal key of a received MESSAGE (a replay after a crash is
    # recognised), and a phone's request for delivery notifications (RFC 5438)
    """
    ALTER TABLE messages ADD COLUMN intake_key TEXT;
    ALTER TABLE messages ADD COLUMN imdn TEXT;
    CREATE UNIQUE INDEX messages_intake_key ON messages(intake_key) WHERE intake_key IS NOT NULL;
    """,
    # 6: the console's time-window reads (texts per hour, failures of the last day); it
    # covers the hourly counts, so they read the index only
    """
    CREATE INDEX messages_created ON messages(created_at, direction, kind, account);
    """,
    # 7: carrier ids of the parts of a long text (or of a multi-item MMS) already accepted,
    # as a JSON list in part order, so that a retry sends only the parts still missing
    """
    ALTER TABLE messages ADD COLUMN carrier_parts TEXT NOT NULL DEFAULT '[]';
    """,
]


class StoreError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    direction: Direction
    kind: Kind
    state: State
    account: str
    extension: str
    remote: str
    did: str | None
    provider: str | None
    carrier_id: str | None
    copy_of: int | None
    sender_id: str | None
    body: str
    media: tuple[MediaRef, ...]
    attempts: int
    next_attempt_at: float | None
    expires_at: float
    created_at: float
    updated_at: float
    last_error: str | None
    imdn: ImdnRequest | None = None  # the sender asked to be told of delivery (RFC 5438)
    carrier_parts: tuple[str, ...] = ()  # see OutboundSms.accepted_parts

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> StoredMessage:
        media = tuple(MediaRef(**m) for m in json.loads(row["media"]))
        imdn = ImdnRequest(**json.loads(row["imdn"])) if row["imdn"] else None
        return cls(
            id=row["id"], direction=Direction(row["direction"]), kind=Kind(row["kind"]),
            state=State(row["state"]), account=row["account"], extension=row["extension"],
            remote=row["remote"], did=row["did"], provider=row["provider"],
            carrier_id=row["carrier_id"], copy_of=row["copy_of"], sender_id=row["sender_id"],
            body=row["body"], media=media, attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"], expires_at=row["expires_at"],
            created_at=row["created_at"], updated_at=row["updated_at"],
            last_error=row["last_error"], imdn=imdn,
            carrier_parts=tuple(str(p) for p in json.loads(row["carrier_parts"])),
        )


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store. ``state`` is QUEUED, or REJECTED with ``last_error`` saying why."""

    direction: Direction
    account: str
    extension: str
    remote: str
    body: str
    expires_at: float
    kind: Kind = Kind.TEXT
    state: State = State.QUEUED
    did: str | None = None
    provider: str | None = None
    carrier_id: str | None = None
    sender_id: str | None = None
    media: tuple[MediaRef, ...] = ()
    last_error: str | None = None
    event_detail: str = ""
    intake_key: str | None = None  # SIP journal key: a replayed MESSAGE is stored once
    imdn: ImdnRequest | None = None


def _imdn_json(imdn: ImdnRequest | None) -> str | None:
    if imdn is None:
        return None
    return json.dumps({"message_id": imdn.message_id, "positive": imdn.positive,
                       "negative": imdn.negative})


@dataclass(frozen=True, slots=True)
class StoredMedia:
    """A media file we hold under state_dir/media/<token>."""

    token: str
    filename: str
    content_type: str
    size: int
    sha256: str
    origin: str
    source_key: str | None
    created_at: float
    expires_at: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> StoredMedia:
        return cls(**{k: row[k] for k in row.keys()})  # noqa: SIM118 (sqlite3.Row)


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    at: float
    state: str
    detail: str


def _media_json(media: Iterable[MediaRef]) -> str:
    return json.dumps(
        [{k: v for k, v in (("url", m.url), ("content_type", m.content_type),
                            ("size", m.size)) if v is not None} for m in media]
    )


GROUP_COMMIT_MAX = 256  # calls per shared transaction: bounds the latency one batch adds


def _settle(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    """Event loop: hand each caller its result, now that it is committed."""
    for future, value, exc in outcomes:
        if future.cancelled():
            continue
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(value)


class Store:
    def __init__(self, path: Path, *, durability: str = "full") -> None:
        self.path = path
        self.durability = durability
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._db: sqlite3.Connection | None = None
        # group commit: calls waiting for the store thread, and whether it is draining them
        self._waiting: deque[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]]
        self._waiting = deque()
        self._lock = threading.Lock()
        self._draining = False

    # --- plumbing ---------------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the store thread in a transaction; its result (or exception) comes
        back only after that transaction is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
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
        self, batch: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]]
    ) -> list[tuple[asyncio.Future[Any], Any, BaseException | None]]:
        if len(batch) == 1:  # no one to share with: a transaction of its own, as ever
            fn, future = batch[0]
            try:
                return [(future, self._call(fn), None)]
            except BaseException as exc:  # the caller gets it, as from run_in_executor
                return [(future, None, exc)]
        db = self._db
        if db is None:
            return [(future, None, StoreError("store is closed")) for _, future in batch]
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            db.execute("BEGIN")
            for fn, future in batch:
                db.execute("SAVEPOINT call")
                try:
                    value = fn(db)
                except Exception as exc:  # this call fails alone; the others go on
                    db.execute("ROLLBACK TO call")
                    db.execute("RELEASE call")
                    outcomes.append((future, None, exc))
                else:
                    db.execute("RELEASE call")
                    outcomes.append((future, value, None))
            db.execute("COMMIT")
        except BaseException as exc:  # the transaction itself failed (I/O error, disk full)
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            return [(future, None, exc) for _, future in batch]
        return outcomes

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._db is None:
            raise StoreError("store is closed")
        with self._db:  # one transaction: commit on success, roll back on error
            return fn(self._db)

    def open_sync(self) -> None:
        """Open (creating if needed) and migrate. Also used directly by the CLI."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'full' else 'NORMAL'}")
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA foreign_keys=ON")
        _migrate(db)
        # From here on ``with db:`` opens a transaction at the first write and commits it.
        db.isolation_level = "DEFERRED"
        self._db = db

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.open_sync)

    async def close(self) -> None:
        def _close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, _close)
        self._executor.shutdown(wait=True)

    def close_sync(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def query_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read on the calling thread (CLI use, when no loop is running)."""
        return self._call(fn)

    # --- writes -----------------------------------------------------------------------------

    async def insert(self, messages: Sequence[NewMessage]) -> list[int] | None:
        """Store messages in one transaction (a text and its fan-out copies). The first is
        the original; the rest are marked as its copies. Returns their ids, or None if the
        original's (provider, carrier_id) is already stored (a carrier's retry), or its
        ``intake_key`` is (a SIP journal replay)."""
        now = time.time()

        def _insert(db: sqlite3.Connection) -> list[int] | None:
            ids: list[int] = []
            for i, m in enumerate(messages):
                try:
                    cur = db.execute(
                        """INSERT INTO messages (direction, kind, state, account, extension,
                           remote, did, provider, carrier_id, copy_of, sender_id, body, media,
                           next_attempt_at, expires_at, created_at, updated_at, last_error,
                           intake_key, imdn)
                           VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                        (m.direction, m.kind, m.state, m.account, m.extension, m.remote,
                         m.did, m.provider, m.carrier_id, ids[0] if i else None, m.sender_id,
                         m.body, _media_json(m.media),
                         now if m.state == State.QUEUED else None, m.expires_at, now, now,
                         m.last_error, m.intake_key, _imdn_json(m.imdn)),
                    )
                except sqlite3.IntegrityError:
                    if i == 0 and (m.carrier_id is not None or m.intake_key is not None):
                        return None
                    raise
                message_id = int(cur.lastrowid or 0)
                ids.append(message_id)
                detail = m.event_detail or (m.last_error or "")
                db.execute(
                    "INSERT INTO events (message_id, at, state, detail) VALUES (?,?,?,?)",
                    (message_id, now, m.state, detail),
                )
            return ids

        return await self._run(_insert)

    async def claim_due(self, direction: Direction, limit: int) -> list[StoredMessage]:
        """Queued messages whose time has come, moved to SENDING for this process to work on."""
        now = time.time()

        def _claim(db: sqlite3.Connection) -> list[StoredMessage]:
            rows = db.execute(
                """SELECT * FROM messages WHERE direction = ? AND state = 'queued'
                   AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?""",
                (direction, now, limit),
            ).fetchall()
            if rows:
                db.executemany(
                    "UPDATE messages SET state = 'sending', attempts = attempts + 1, "
                    "updated_at = ? WHERE id = ?",
                    [(now, r["id"]) for r in rows],
                )
            claimed = []
            for r in rows:
                m = StoredMessage.from_row(r)
                claimed.append(_replace_state(m, State.SENDING, attempts=m.attempts + 1))
            return claimed

        return await self._run(_claim)

    async def next_due_at(self, direction: Direction) -> float | None:
        def _next(db: sqlite3.Connection) -> float | None:
            row = db.execute(
                "SELECT MIN(next_attempt_at) FROM messages WHERE direction = ? "
                "AND state = 'queued'",
                (direction,),
            ).fetchone()
            return row[0]

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
        carrier_parts: tuple[str, ...] | None = None,
    ) -> bool:
        """Move a message to ``state`` if the lifecycle allows it; record the event.
        ``carrier_parts``, when given, replaces the ids of its accepted parts.
        Returns False (and changes nothing) for an illegal or stale transition."""
        now = time.time()
        parts = None if carrier_parts is None else json.dumps(list(carrier_parts))

        def _transition(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT state FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None or not can_transition(State(row["state"]), state):
                return False
            db.execute(
                """UPDATE messages SET state = ?, updated_at = ?,
                   carrier_id = COALESCE(?, carrier_id),
                   carrier_parts = COALESCE(?, carrier_parts),
                   next_attempt_at = ?, last_error = COALESCE(?, last_error) WHERE id = ?""",
                (state, now, carrier_id, parts, next_attempt_at, error, message_id),
            )
            db.execute(
                "INSERT INTO events (message_id, at, state, detail) VALUES (?,?,?,?)",
                (message_id, now, state, detail or error or ""),
            )
            return True

        try:
            return await self._run(_transition)
        except sqlite3.IntegrityError:
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

        def _apply(db: sqlite3.Connection) -> StoredMessage | None:
            row = db.execute(
                "SELECT * FROM messages WHERE provider = ? AND carrier_id = ? "
                "AND direction = 'out'",
                (provider, carrier_id),
            ).fetchone()
            if row is None:
                return None
            current = State(row["state"])
            if current == state or not can_transition(current, state):
                return None
            error = detail if state == State.FAILED else None
            db.execute(
                "UPDATE messages SET state = ?, updated_at = ?, "
                "last_error = COALESCE(?, last_error) WHERE id = ?",
                (state, now, error, row["id"]),
            )
            db.execute(
                "INSERT INTO events (message_id, at, state, detail) VALUES (?,?,?,?)",
                (row["id"], now, state, detail),
            )
            return _replace_state(StoredMessage.from_row(row), state, last_error=error)

        return await self._run(_apply)

    async def recover(self) -> int:
        """After a restart: work that was in flight when the process stopped is queued again.
        (Delivery is at-least-once; a carrier may see a send twice after a crash mid-call.)"""
        now = time.time()

        def _recover(db: sqlite3.Connection) -> int:
            rows = db.execute("SELECT id FROM messages WHERE state = 'sending'").fetchall()
            for r in rows:
                db.execute(
                    "UPDATE messages SET state = 'queued', next_attempt_at = ?, updated_at = ? "
                    "WHERE id = ?",
                    (now, now, r["id"]),
                )
                db.execute(
                    "INSERT INTO events (message_id, at, state, detail) VALUES (?,?,?,?)",
                    (r["id"], now, "queued", "resumed after restart"),
                )
            return len(rows)

        return await self._run(_recover)

    async def add_part(
        self, provider: str, remote: str, ref: str, index: int, total: int,
        carrier_id: str, body: str,
    ) -> tuple[str, str] | None:
        """Keep one part of a long inbound text. When the last part arrives, returns the
        joined text and the first part's carrier id (used as the message's key), and
        forgets the parts. Repeated parts are ignored."""
        now = time.time()

        def _add(db: sqlite3.Connection) -> tuple[str, str] | None:
            db.execute(
                "INSERT OR IGNORE INTO inbound_parts VALUES (?,?,?,?,?,?,?,?)",
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

    # --- reads ------------------------------------------------------------------------------

    async def get(self, message_id: int) -> StoredMessage | None:
        return await self._run(lambda db: _get(db, message_id))

    async def history(self, message_id: int) -> list[HistoryEvent]:
        return await self._run(lambda db: _history(db, message_id))

    async def last_did_for(self, account: str, extension: str, remote: str) -> str | None:
        """The DID on which ``remote`` last texted ``extension`` (for reply stickiness)."""

        def _last(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                "SELECT did FROM messages WHERE direction = 'in' AND kind = 'text' "
                "AND account = ? AND extension = ? AND remote = ? ORDER BY id DESC LIMIT 1",
                (account, extension, remote),
            ).fetchone()
            return row["did"] if row else None

        return await self._run(_last)

    async def set_opt_out(self, did: str, remote: str, opted_out: bool, keyword: str) -> None:
        now = time.time()

        def _set(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO opt_outs (did, remote, opted_out, keyword, at) VALUES (?,?,?,?,?) "
                "ON CONFLICT (did, remote) DO UPDATE SET opted_out = excluded.opted_out, "
                "keyword = excluded.keyword, at = excluded.at",
                (did, remote, int(opted_out), keyword, now),
            )

        await self._run(_set)

    async def is_opted_out(self, did: str, remote: str) -> bool:
        def _get(db: sqlite3.Connection) -> bool:
            row = db.execute(
                "SELECT opted_out FROM opt_outs WHERE did = ? AND remote = ?", (did, remote)
            ).fetchone()
            return bool(row and row["opted_out"])

        return await self._run(_get)

    async def count_sent_by(self, account: str, extension: str, since: float) -> int:
        """Texts an extension sent (or tried to) since ``since``: for its rate caps."""

        def _count(db: sqlite3.Connection) -> int:
            row = db.execute(
                "SELECT COUNT(*) FROM messages WHERE account = ? AND extension = ? "
                "AND direction = 'out' AND kind = 'text' AND state != 'rejected' "
                "AND created_at >= ?",
                (account, extension, since),
            ).fetchone()
            return int(row[0])

        return await self._run(_count)

    async def queue_stats(self) -> dict[str, tuple[int, float | None]]:
        """Per direction: how many messages wait for an attempt or are in one, and when the
        oldest of them was stored (for the metrics' queue depth and age)."""

        def _stats(db: sqlite3.Connection) -> dict[str, tuple[int, float | None]]:
            rows = db.execute(
                "SELECT direction, COUNT(*) AS n, MIN(created_at) AS oldest FROM messages "
                "WHERE state IN ('queued', 'sending') GROUP BY direction"
            ).fetchall()
            return {r["direction"]: (r["n"], r["oldest"]) for r in rows}

        return await self._run(_stats)

    async def requeue(self, message_id: int, expires_at: float, detail: str) -> State | None:
        """An operator's retry: a failed or queued message is queued for an attempt now, with
        a fresh expiry. This deliberately steps outside the lifecycle table (failed is final
        for the bridge itself, not for a person who fixed the cause). Returns the state the
        message was in (unchanged unless it was failed or queued), or None if there is none."""
        now = time.time()

        def _requeue(db: sqlite3.Connection) -> State | None:
            row = db.execute("SELECT state FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                return None
            state = State(row["state"])
            if state not in (State.FAILED, State.QUEUED):
                return state
            db.execute(
                "UPDATE messages SET state = 'queued', next_attempt_at = ?, updated_at = ?, "
                "expires_at = MAX(expires_at, ?) WHERE id = ?",
                (now, now, expires_at, message_id),
            )
            db.execute(
                "INSERT INTO events (message_id, at, state, detail) VALUES (?,?,?,?)",
                (message_id, now, State.QUEUED, detail),
            )
            return state

        return await self._run(_requeue)

    # --- media ------------------------------------------------------------------------------

    async def add_media(self, media: StoredMedia) -> StoredMedia:
        """Record a media file. If one from the same source is already recorded (two copies
        of a text fetched it at once), that one is returned and this one is not stored."""

        def _add(db: sqlite3.Connection) -> StoredMedia:
            if media.source_key is not None:  # an expired copy not yet cleaned up: replace it
                db.execute("DELETE FROM media WHERE source_key = ? AND expires_at <= ?",
                           (media.source_key, media.created_at))
            cur = db.execute(
                "INSERT OR IGNORE INTO media (token, filename, content_type, size, sha256, "
                "origin, source_key, created_at, expires_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (media.token, media.filename, media.content_type, media.size, media.sha256,
                 media.origin, media.source_key, media.created_at, media.expires_at),
            )
            if cur.rowcount == 1 or media.source_key is None:
                return media
            row = db.execute("SELECT * FROM media WHERE source_key = ?",
                             (media.source_key,)).fetchone()
            return StoredMedia.from_row(row) if row else media

        return await self._run(_add)

    async def get_media(self, token: str) -> StoredMedia | None:
        def _get_media(db: sqlite3.Connection) -> StoredMedia | None:
            row = db.execute("SELECT * FROM media WHERE token = ?", (token,)).fetchone()
            return StoredMedia.from_row(row) if row else None

        return await self._run(_get_media)

    async def media_from_source(self, source_key: str, now: float) -> StoredMedia | None:
        """The unexpired copy of a carrier's media item, if we already fetched it."""

        def _find(db: sqlite3.Connection) -> StoredMedia | None:
            row = db.execute("SELECT * FROM media WHERE source_key = ? AND expires_at > ?",
                             (source_key, now)).fetchone()
            return StoredMedia.from_row(row) if row else None

        return await self._run(_find)

    async def evict_media(self, now: float, max_total_bytes: int) -> list[StoredMedia]:
        """Forget expired media, and the oldest beyond ``max_total_bytes`` in all; returns
        what was forgotten, so the caller deletes the files."""

        def _evict(db: sqlite3.Connection) -> list[StoredMedia]:
            rows = db.execute(
                "SELECT * FROM media ORDER BY created_at DESC, rowid DESC").fetchall()
            total, gone = 0, []
            for row in rows:
                total += row["size"] if row["expires_at"] > now else 0
                if row["expires_at"] <= now or total > max_total_bytes:
                    gone.append(StoredMedia.from_row(row))
            db.executemany("DELETE FROM media WHERE token = ?", [(m.token,) for m in gone])
            return gone

        return await self._run(_evict)

    async def media_tokens(self) -> set[str]:
        def _tokens(db: sqlite3.Connection) -> set[str]:
            return {r[0] for r in db.execute("SELECT token FROM media")}

        return await self._run(_tokens)

    # --- console reads ----------------------------------------------------------------------
    # What the web console shows, in plain portable SQL (placeholders and LIKE only, no
    # date functions): the same statements serve SQLite and PostgreSQL. ``accounts`` scopes
    # a read to a tenant's accounts; None means every account.

    async def search_messages(
        self, *, accounts: Sequence[str] | None = None, number: str | None = None,
        extension: str | None = None, state: str | None = None, provider: str | None = None,
        since: float | None = None, until: float | None = None,
        before_id: int | None = None, limit: int = 50,
    ) -> list[StoredMessage]:
        """Newest first. ``number`` matches part of the remote number or the DID (digits and
        '+' only); ``before_id`` pages back (keyset paging: stable while texts arrive)."""
        clauses, args = _scope_clause(accounts)
        if number:
            clauses.append("(remote LIKE ? OR did LIKE ?)")
            pattern = "%" + "".join(c for c in number if c.isdigit() or c == "+") + "%"
            args += [pattern, pattern]
        for column, value in (("extension", extension), ("state", state),
                              ("provider", provider)):
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        for clause, value in (("created_at >= ?", since), ("created_at < ?", until),
                              ("id < ?", before_id)):
            if value is not None:
                clauses.append(clause)
                args.append(value)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        sql = f"SELECT * FROM messages {where} ORDER BY id DESC LIMIT ?"  # noqa: S608 (fixed)

        def _search(db: sqlite3.Connection) -> list[StoredMessage]:
            return [StoredMessage.from_row(r) for r in db.execute(sql, (*args, limit))]

        return await self._run(_search)

    async def hourly_counts(self, since: float, *, hours: int = 24,
                            accounts: Sequence[str] | None = None) -> dict[str, list[int]]:
        """Texts stored per hour from ``since`` (oldest hour first), per direction. Rows are
        bucketed (and a tenant's picked out) here rather than in SQL: hour arithmetic differs
        between SQLite and PostgreSQL (CAST truncates in one and rounds in the other), and
        this way the read is always a scan of the time index, never of an account's history."""
        until = since + 3600 * hours
        wanted = None if accounts is None else set(accounts)

        def _counts(db: sqlite3.Connection) -> dict[str, list[int]]:
            out = {str(d): [0] * hours for d in Direction}
            for direction, created_at, account in db.execute(
                    "SELECT direction, created_at, account FROM messages WHERE created_at >= ? "
                    "AND created_at < ? AND kind = 'text'", (since, until)):
                if wanted is None or account in wanted:
                    out[direction][min(hours - 1, int((created_at - since) // 3600))] += 1
            return out

        return await self._run(_counts)

    async def failure_counts(self, since: float, *, accounts: Sequence[str] | None = None,
                             limit: int = 20) -> list[tuple[str, str, str, str, int]]:
        """Texts stored since ``since`` that failed or were rejected, grouped by (direction,
        state, carrier, reason), most frequent first."""
        clauses, args = _scope_clause(accounts)
        where = " AND ".join(["created_at >= ?", "state IN ('failed', 'rejected')",
                              "kind = 'text'", *clauses])
        sql = (f"SELECT direction, state, COALESCE(provider, ''), COALESCE(last_error, ''), "  # noqa: S608
               f"COUNT(*) AS n FROM messages WHERE {where} "
               "GROUP BY direction, state, provider, last_error ORDER BY n DESC LIMIT ?")

        def _failures(db: sqlite3.Connection) -> list[tuple[str, str, str, str, int]]:
            return [(r[0], r[1], r[2], r[3], int(r[4]))
                    for r in db.execute(sql, (since, *args, limit))]

        return await self._run(_failures)

    async def queue_stats_for(self, accounts: Sequence[str] | None
                              ) -> dict[str, tuple[int, float | None]]:
        """``queue_stats`` for some accounts only (a tenant's)."""
        if accounts is None:
            return await self.queue_stats()
        clauses, args = _scope_clause(accounts)
        sql = ("SELECT direction, COUNT(*) AS n, MIN(created_at) AS oldest FROM messages "  # noqa: S608
               f"WHERE state IN ('queued', 'sending') AND {clauses[0]} GROUP BY direction")

        def _stats(db: sqlite3.Connection) -> dict[str, tuple[int, float | None]]:
            return {r["direction"]: (r["n"], r["oldest"]) for r in db.execute(sql, args)}

        return await self._run(_stats)

    async def conversation(self, did: str, remote: str, *,
                           accounts: Sequence[str] | None = None,
                           limit: int = 200) -> list[StoredMessage]:
        """The texts between one of our numbers and one remote number, oldest first (the
        newest ``limit`` of them)."""
        clauses, args = _scope_clause(accounts)
        where = " AND ".join(["did = ?", "remote = ?", *clauses])
        sql = (f"SELECT * FROM messages WHERE {where} "  # noqa: S608 (fixed clauses)
               "ORDER BY id DESC LIMIT ?")

        def _thread(db: sqlite3.Connection) -> list[StoredMessage]:
            rows = db.execute(sql, (did, remote, *args, limit)).fetchall()
            return [StoredMessage.from_row(r) for r in reversed(rows)]

        return await self._run(_thread)

    async def message_with_history(self, message_id: int
                                   ) -> tuple[StoredMessage, list[HistoryEvent]] | None:
        """One message and every state change it went through, read together."""

        def _read(db: sqlite3.Connection) -> tuple[StoredMessage, list[HistoryEvent]] | None:
            message = _get(db, message_id)
            return None if message is None else (message, _history(db, message_id))

        return await self._run(_read)


def _scope_clause(accounts: Sequence[str] | None) -> tuple[list[str], list[Any]]:
    """The WHERE clause that keeps a read inside some accounts (none: no clause). An empty
    list matches nothing, never everything."""
    if accounts is None:
        return [], []
    if not accounts:
        return ["1 = 0"], []
    return [f"account IN ({', '.join('?' for _ in accounts)})"], list(accounts)


def _get(db: sqlite3.Connection, message_id: int) -> StoredMessage | None:
    row = db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
    return StoredMessage.from_row(row) if row else None


def _history(db: sqlite3.Connection, message_id: int) -> list[HistoryEvent]:
    rows = db.execute(
        "SELECT at, state, detail FROM events WHERE message_id = ? ORDER BY id", (message_id,)
    ).fetchall()
    return [HistoryEvent(r["at"], r["state"], r["detail"]) for r in rows]


def list_messages(
    db: sqlite3.Connection,
    *,
    state: str | None = None,
    number: str | None = None,
    extension: str | None = None,
    since: float | None = None,
    limit: int = 50,
) -> list[StoredMessage]:
    clauses, args = [], []
    if state:
        clauses.append("state = ?")
        args.append(state)
    if number:
        clauses.append("(remote = ? OR did = ?)")
        args.extend([number, number])
    if extension:
        clauses.append("extension = ?")
        args.append(extension)
    if since is not None:
        clauses.append("created_at >= ?")
        args.append(since)
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    rows = db.execute(
        f"SELECT * FROM messages {where} ORDER BY id DESC LIMIT ?",  # noqa: S608 (fixed clauses)
        (*args, limit),
    ).fetchall()
    return [StoredMessage.from_row(r) for r in rows]


def _replace_state(m: StoredMessage, state: State, **changes: Any) -> StoredMessage:
    return replace(m, state=state, **changes)


def _migrate(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
    current = row[0] or 0
    if current > len(MIGRATIONS):
        raise StoreError(
            f"database schema version {current} is newer than this program knows "
            f"({len(MIGRATIONS)}): upgrade sip-sms-bridge or restore a matching backup"
        )
    for version in range(current + 1, len(MIGRATIONS) + 1):
        script = MIGRATIONS[version - 1]
        # executescript commits first, so run the statements one by one in one transaction
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(script):
                db.execute(statement)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def _statements(script: str) -> list[str]:
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
