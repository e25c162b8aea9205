"""Durable message store: the only package with SQL.

``Store(path)`` keeps everything in one SQLite file (the embedded default);
``Store("postgresql://...")`` keeps it in PostgreSQL, where several bridge instances share one
queue. Both run the same queries (``store.py``); each backend (``sqlite.py``,
``postgresql.py``) brings its connection, its numbered migrations and its locks.
"""

from bridge.store.records import (
    Conflict,
    HistoryEvent,
    NewMessage,
    StoredMedia,
    StoredMessage,
    StoreError,
)
from bridge.store.sqlite import MIGRATIONS, list_messages
from bridge.store.store import (
    DB_FILE,
    GROUP_COMMIT_MAX,
    LEASE_SECONDS,
    Store,
    Transaction,
    database_target,
    is_database_url,
    store_for,
)

__all__ = [
    "DB_FILE",
    "GROUP_COMMIT_MAX",
    "LEASE_SECONDS",
    "MIGRATIONS",
    "Conflict",
    "HistoryEvent",
    "NewMessage",
    "Store",
    "StoreError",
    "StoredMedia",
    "StoredMessage",
    "Transaction",
    "database_target",
    "is_database_url",
    "list_messages",
    "store_for",
]
