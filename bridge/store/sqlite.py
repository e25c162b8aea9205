"""The SQLite backend: one file in WAL mode, one connection on the store's thread.

The embedded default: nothing to install or run beside the bridge. One process owns the file
(``shared`` is False), so work in flight at a restart is all its own, and media files live
beside it under state_dir/media.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bridge.store.queries import list_query
from bridge.store.records import Conflict, StoredMessage, StoreError

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
    # 8: who works on a message and until when (the lease), and the per-DID pacing slots
    """
    ALTER TABLE messages ADD COLUMN claimed_by TEXT;
    ALTER TABLE messages ADD COLUMN lease_until REAL;
    CREATE TABLE pacing_slots (
        did         TEXT NOT NULL,
        at          REAL NOT NULL,              -- the send time booked
        message_id  INTEGER NOT NULL,
        taken       INTEGER NOT NULL            -- 1 once the message went out in its slot
    );
    CREATE INDEX pacing_lane ON pacing_slots(did, at);
    CREATE INDEX pacing_booking ON pacing_slots(did, message_id);
    """,
]


class SqliteConnection:
    """The store's connection: ``?`` parameters, rows by column name, unique-key violations
    raised as ``Conflict``."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self.db.execute(sql, params)
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from exc

    @property
    def in_transaction(self) -> bool:
        return self.db.in_transaction

    @property
    def total_changes(self) -> int:
        """Rows changed since the connection opened: tells a transaction that wrote."""
        return self.db.total_changes

    @property
    def broken(self) -> bool:
        return False

    def close(self) -> None:
        self.db.close()


class SqliteBackend:
    name = "sqlite"
    shared = False  # one process owns the file
    keeps_media = False  # media bytes are files under state_dir/media
    row_lock = ""  # one writer: a read in the transaction already sees the latest row
    skip_locked = ""
    # take the write lock at the start: a transaction that reads, then writes, never meets
    # another connection's writer halfway (a CLI reading, a second process on the file)
    begin = "BEGIN IMMEDIATE"
    on_loop = True  # a library call: on the event loop beats a thread (see bridge.store.store)

    def __init__(self, path: Path, durability: str = "full") -> None:
        self.path = path
        self.durability = durability

    def describe(self) -> str:
        return str(self.path)

    def connect(self) -> SqliteConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'full' else 'NORMAL'}")
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA foreign_keys=ON")
        try:
            _migrate(db)
        except BaseException:
            db.close()
            raise
        return SqliteConnection(db)

    def connect_reader(self) -> SqliteConnection:
        """A read-only connection to the file the writer opened (and migrated)."""
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA query_only=ON")
        db.execute("PRAGMA busy_timeout=5000")
        return SqliteConnection(db)

    def lock_key(self, db: SqliteConnection, key: str) -> None:
        """Serialise work on ``key`` (a pacing lane): one connection writes, nothing to do."""

    def notify(self, db: SqliteConnection, direction: str) -> None:
        """Tell other instances that work was stored: there are none."""


def list_messages(
    db: sqlite3.Connection | SqliteConnection,
    *,
    state: str | None = None,
    number: str | None = None,
    extension: str | None = None,
    since: float | None = None,
    limit: int = 50,
) -> list[StoredMessage]:
    """Kept for callers holding a raw connection; the store's own ``list_messages`` is the
    way to read (it works on every backend)."""
    sql, args = list_query(state=state, number=number, extension=extension, since=since,
                           limit=limit)
    return [StoredMessage.from_row(r) for r in db.execute(sql, args).fetchall()]


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
            for statement in statements(script):
                db.execute(statement)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise


def statements(script: str) -> list[str]:
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
