"""What the web console reads, in plain portable SQL (placeholders, LIKE and GROUP BY only,
no date functions): the same statements serve SQLite and PostgreSQL. ``accounts`` scopes a
read to a tenant's accounts; None means every account. Mixed into ``Store``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from bridge.model import Direction
from bridge.store.records import HistoryEvent, StoredMessage

T = TypeVar("T")


class ConsoleReads:
    async def _read(self, fn: Callable[[Any], T]) -> T:  # provided by Store
        raise NotImplementedError

    async def queue_stats(self) -> dict[str, tuple[int, float | None]]:  # provided by Store
        raise NotImplementedError

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
        sql = f"SELECT * FROM messages {where} ORDER BY id DESC LIMIT ?"

        def _search(db: Any) -> list[StoredMessage]:
            return [StoredMessage.from_row(r) for r in db.execute(sql, (*args, limit))]

        return await self._read(_search)

    async def hourly_counts(self, since: float, *, hours: int = 24,
                            accounts: Sequence[str] | None = None) -> dict[str, list[int]]:
        """Texts stored per hour from ``since`` (oldest hour first), per direction. Rows are
        bucketed (and a tenant's picked out) here rather than in SQL: hour arithmetic differs
        between SQLite and PostgreSQL (CAST truncates in one and rounds in the other), and
        this way the read is always a scan of the time index, never of an account's history."""
        until = since + 3600 * hours
        wanted = None if accounts is None else set(accounts)

        def _counts(db: Any) -> dict[str, list[int]]:
            out = {str(d): [0] * hours for d in Direction}
            for row in db.execute(
                    "SELECT direction, created_at, account FROM messages WHERE created_at >= ? "
                    "AND created_at < ? AND kind = 'text'", (since, until)):
                if wanted is None or row["account"] in wanted:
                    hour = min(hours - 1, int((row["created_at"] - since) // 3600))
                    out[row["direction"]][hour] += 1
            return out

        return await self._read(_counts)

    async def failure_counts(self, since: float, *, accounts: Sequence[str] | None = None,
                             limit: int = 20) -> list[tuple[str, str, str, str, int]]:
        """Texts stored since ``since`` that failed or were rejected, grouped by (direction,
        state, carrier, reason), most frequent first."""
        clauses, args = _scope_clause(accounts)
        where = " AND ".join(["created_at >= ?", "state IN ('failed', 'rejected')",
                              "kind = 'text'", *clauses])
        sql = ("SELECT direction, state, COALESCE(provider, '') AS provider, "
               f"COALESCE(last_error, '') AS reason, COUNT(*) AS n FROM messages WHERE {where} "
               "GROUP BY direction, state, provider, last_error ORDER BY n DESC LIMIT ?")

        def _failures(db: Any) -> list[tuple[str, str, str, str, int]]:
            return [(r["direction"], r["state"], r["provider"], r["reason"], int(r["n"]))
                    for r in db.execute(sql, (since, *args, limit))]

        return await self._read(_failures)

    async def queue_stats_for(self, accounts: Sequence[str] | None
                              ) -> dict[str, tuple[int, float | None]]:
        """``queue_stats`` for some accounts only (a tenant's)."""
        if accounts is None:
            return await self.queue_stats()
        clauses, args = _scope_clause(accounts)
        sql = ("SELECT direction, COUNT(*) AS n, MIN(created_at) AS oldest FROM messages "
               f"WHERE state IN ('queued', 'sending') AND {clauses[0]} GROUP BY direction")

        def _stats(db: Any) -> dict[str, tuple[int, float | None]]:
            return {r["direction"]: (int(r["n"]), r["oldest"]) for r in db.execute(sql, args)}

        return await self._read(_stats)

    async def conversation(self, did: str, remote: str, *,
                           accounts: Sequence[str] | None = None,
                           limit: int = 200) -> list[StoredMessage]:
        """The texts between one of our numbers and one remote number, oldest first (the
        newest ``limit`` of them)."""
        clauses, args = _scope_clause(accounts)
        where = " AND ".join(["did = ?", "remote = ?", *clauses])
        sql = (f"SELECT * FROM messages WHERE {where} "
               "ORDER BY id DESC LIMIT ?")

        def _thread(db: Any) -> list[StoredMessage]:
            rows = db.execute(sql, (did, remote, *args, limit)).fetchall()
            return [StoredMessage.from_row(r) for r in reversed(rows)]

        return await self._read(_thread)

    async def message_with_history(self, message_id: int
                                   ) -> tuple[StoredMessage, list[HistoryEvent]] | None:
        """One message and every state change it went through, read together."""

        def _message(db: Any) -> tuple[StoredMessage, list[HistoryEvent]] | None:
            row = db.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                return None
            events = db.execute("SELECT at, state, detail FROM events WHERE message_id = ? "
                                "ORDER BY id", (message_id,)).fetchall()
            return (StoredMessage.from_row(row),
                    [HistoryEvent(e["at"], e["state"], e["detail"]) for e in events])

        return await self._read(_message)


def _scope_clause(accounts: Sequence[str] | None) -> tuple[list[str], list[Any]]:
    """The WHERE clause that keeps a read inside some accounts (none: no clause). An empty
    list matches nothing, never everything."""
    if accounts is None:
        return [], []
    if not accounts:
        return ["1 = 0"], []
    return [f"account IN ({', '.join('?' for _ in accounts)})"], list(accounts)
