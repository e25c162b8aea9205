"""``sip-sms-bridge migrate-db``: copy a SQLite state into PostgreSQL, to move up from one box.

Everything is copied in one PostgreSQL transaction (all of it, or nothing): messages with
their ids, history, long-text parts waiting for the rest, opt-outs, pacing slots, and media
records with the files' bytes (which PostgreSQL keeps in the database). Work that was in
flight is handed over as such: its claim has no lease, so the first instance to claim takes
it over. A target that already holds a state is refused unless ``force`` (then it is emptied
first). The counts are verified after the copy, before the commit.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.store.postgresql import PgConnection, PostgresBackend, safe_error
from bridge.store.records import StoreError
from bridge.store.sqlite import SqliteBackend

# in the order foreign keys need them
TABLES = ("messages", "events", "inbound_parts", "opt_outs", "media", "pacing_slots")
BATCH = 1000


class TargetNotEmpty(StoreError):
    pass


@dataclass(frozen=True, slots=True)
class Copied:
    table: str
    source: int
    target: int


def migrate(source: Path, media_dir: Path, url: str, *, force: bool = False) -> list[Copied]:
    """Copy the SQLite state at ``source`` (and its media files in ``media_dir``) into the
    PostgreSQL database at ``url``. Returns the verified counts per table (and "media
    files": records whose bytes were found)."""
    if not source.exists():
        raise StoreError(f"no database at {source}")
    SqliteBackend(source).connect().close()  # brings it to the current schema
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, isolation_level=None)
    src.row_factory = sqlite3.Row
    src.execute("BEGIN")  # one snapshot for every table, even if something still writes
    target = PostgresBackend(url, "migrate-db").connect()
    try:
        return _copy(src, media_dir, target, force)
    finally:
        src.close()
        target.close()


def _count(db: Any, table: str) -> int:
    row = db.execute(f"SELECT COUNT(*) AS n FROM {table}").fetchone()
    return int(row["n"])


def _copy(src: sqlite3.Connection, media_dir: Path, target: PgConnection,
          force: bool) -> list[Copied]:
    held = {t: _count(target, t) for t in TABLES}
    if any(held.values()) and not force:
        summary = ", ".join(f"{n} {t}" for t, n in held.items() if n)
        raise TargetNotEmpty(f"the target database already holds a state ({summary}); "
                             "give --force to replace it")
    target.execute("BEGIN")
    try:
        if any(held.values()):
            target.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        counts: list[Copied] = []
        for table in TABLES:
            _copy_table(src, target, table)
        files = _copy_media_files(src, media_dir, target)
        for table in ("messages", "events"):
            target.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM {table}")
        # in flight at the copy: no lease, so whichever instance claims first takes it over
        target.execute("UPDATE messages SET lease_until = 0 WHERE state = 'sending'")
        for table in TABLES:
            counts.append(Copied(table, _count(src, table), _count(target, table)))
        counts.append(Copied("media files", _count(src, "media"), files))
        wrong = [c for c in counts[:-1] if c.source != c.target]
        if wrong:
            raise StoreError("copy verification failed: " + ", ".join(
                f"{c.table} {c.source} -> {c.target}" for c in wrong))
        target.execute("COMMIT")
    except BaseException:
        if not target.broken:
            target.execute("ROLLBACK")
        raise
    return counts


def _copy_table(src: sqlite3.Connection, target: PgConnection, table: str) -> None:
    cursor = src.execute(f"SELECT * FROM {table}")
    columns = [d[0] for d in cursor.description]
    sql = (f"INSERT INTO {table} ({', '.join(columns)}) "
           f"VALUES ({', '.join(['%s'] * len(columns))})")
    with target.conn.cursor() as out:
        while rows := cursor.fetchmany(BATCH):
            try:
                out.executemany(sql, [tuple(_pg_value(v) for v in r) for r in rows])
            except Exception as exc:
                raise StoreError(f"copying {table}: {safe_error(exc)}") from None


def _pg_value(value: Any) -> Any:
    return value.replace("\0", "\ufffd") if isinstance(value, str) else value


def _copy_media_files(src: sqlite3.Connection, media_dir: Path, target: PgConnection) -> int:
    """The bytes of every media record whose file is there (a file lost from disk stays
    lost: its record is copied, its link answers 404 as it did before)."""
    found = 0
    for (token,) in src.execute("SELECT token FROM media").fetchall():
        path = media_dir / token
        if not path.is_file():
            continue
        target.execute("INSERT INTO media_data (token, data) VALUES (?, ?)",
                       (token, path.read_bytes()))
        found += 1
    return found
