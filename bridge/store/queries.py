"""SQL built from arguments (the rest of the store's SQL is fixed text)."""

from __future__ import annotations

from typing import Any


def list_query(
    *, state: str | None = None, number: str | None = None, extension: str | None = None,
    since: float | None = None, limit: int = 50,
) -> tuple[str, tuple[Any, ...]]:
    """Messages newest first, filtered: the CLI's ``messages`` listing."""
    clauses: list[str] = []
    args: list[Any] = []
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
    sql = f"SELECT * FROM messages {where} ORDER BY id DESC LIMIT ?"
    return sql, (*args, limit)
