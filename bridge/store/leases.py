"""One registrant per SIP account across instances: a PostgreSQL advisory lock per account.

Each account has a thread and a connection of its own here. A standby tries
``pg_try_advisory_lock`` every ``poll`` seconds; once it gets the lock it keeps it for
``grace`` seconds before calling ``acquired(account)`` (and so before it registers). A holder
checks its connection every ``check`` seconds; a check that fails, or does not answer within
``tcp_user_timeout`` (the kernel drops a connection whose data goes unacknowledged that long),
calls ``lost(account)`` at once: the holder stops registering and sending for the account.

Why that order holds: PostgreSQL releases the lock only when the holder's session ends. A
session ended by the server (``pg_terminate_backend``, a restart) is seen by the holder at its
next check, within ``check`` seconds, while the standby waits ``grace`` > ``check`` +
``tcp_user_timeout`` after taking the lock. A holder cut off by the network loses its
connection to ``tcp_user_timeout`` and keepalives within about a second and a half; the
server frees the lock only once it notices the dead client (its ``tcp_keepalives_*`` or
``client_connection_check_interval`` settings, seconds at best), which is later. A holder
that dies (kill -9, a crash) closes its socket with the process, the lock is freed at once,
and a standby takes over within ``poll`` + ``grace`` seconds.

Callbacks run on the event loop that called ``start``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import psycopg

from bridge.secrets import reveal
from bridge.settings import Settings
from bridge.store.postgresql import connect_options, safe_error

log = logging.getLogger("bridge.store.leases")

LOCK_CLASS = 0x5349_5001  # first key of the two-key advisory lock: "registrant" locks
APPLICATION = "sip-sms-bridge registrant"
POLL_SECONDS = 1.0
CHECK_SECONDS = 0.25
USER_TIMEOUT_MS = 1000
GRACE_SECONDS = 2.0


class AccountLeases:
    def __init__(self, url: str, instance: str, accounts: list[str],
                 acquired: Callable[[str], None], lost: Callable[[str], None], *,
                 poll: float = POLL_SECONDS, check: float = CHECK_SECONDS,
                 grace: float = GRACE_SECONDS) -> None:
        if grace <= check + USER_TIMEOUT_MS / 1000:
            raise ValueError("grace must outlast a holder's check and its timeout")
        self.url = url
        self.instance = instance
        self.accounts = accounts
        self.acquired_cb = acquired
        self.lost_cb = lost
        self.poll, self.check, self.grace = poll, check, grace
        self._stop = threading.Event()
        self._held_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.held: set[str] = set()  # accounts this instance acts for (after the grace)
        self.holders: dict[str, str | None] = dict.fromkeys(accounts)  # account -> instance

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for account in self.accounts:
            thread = threading.Thread(target=self._run, args=(account,), daemon=True,
                                      name=f"lease-{account}")
            thread.start()
            self._threads.append(thread)

    async def stop(self) -> None:
        """Give up every lock (the standbys take over after their grace)."""
        self._stop.set()
        await asyncio.gather(*(asyncio.to_thread(t.join, 5) for t in self._threads))
        for account in list(self.held):
            self._lose(account, "stopping")

    # --- lease threads ----------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        options = connect_options(self.url, f"{APPLICATION} {self.instance}")
        options.update(keepalives_idle=1, keepalives_interval=1, keepalives_count=1,
                       tcp_user_timeout=USER_TIMEOUT_MS, connect_timeout=3)
        return psycopg.connect(**options)

    def _run(self, account: str) -> None:
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    self._standby_then_hold(conn, account)
            except psycopg.Error as exc:
                log.warning("registration lease for %s: database unreachable (%s)", account,
                            safe_error(exc))
            finally:
                if account in self.held:
                    self._lose(account, "stopping" if self._stop.is_set()
                               else "lost the database connection")
            self._stop.wait(self.poll)

    def _standby_then_hold(self, conn: psycopg.Connection[Any], account: str) -> None:
        key = (LOCK_CLASS, account)
        while not self._stop.is_set():
            row = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", key).fetchone()
            if row and row[0]:
                break
            self._note_holder(conn, account)
            self._stop.wait(self.poll)
        else:
            return
        log.info("registration lease for %s taken; acting for it in %.1f s", account,
                 self.grace)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline and not self._stop.is_set():
            conn.execute("SELECT 1")  # a lost connection here: the lock was never ours to use
            self._stop.wait(self.check)
        if self._stop.is_set():
            return
        self.held.add(account)
        self.holders[account] = self.instance
        self._call(self.acquired_cb, account)
        while not self._stop.is_set():
            conn.execute("SELECT 1")
            self._stop.wait(self.check)
        with contextlib.suppress(psycopg.Error):
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", key)

    def _note_holder(self, conn: psycopg.Connection[Any], account: str) -> None:
        row = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a "
            "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid = %s::bigint::oid "
            "AND l.objid = (hashtext(%s)::bigint & 4294967295)::oid "
            "AND l.objsubid = 2", (LOCK_CLASS, account)).fetchone()
        name = row[0] if row else None
        self.holders[account] = name.removeprefix(APPLICATION).strip() if name else None

    def _lose(self, account: str, why: str) -> None:
        with self._held_lock:
            if account not in self.held:
                return
            self.held.discard(account)
        self.holders[account] = None
        log.warning("registration lease for %s lost (%s): no longer acting for it", account,
                    why)
        self._call(self.lost_cb, account)

    def _call(self, callback: Callable[[str], None], account: str) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._loop.call_soon_threadsafe(callback, account)


class Registrar(Protocol):
    def set_registration(self, account: str, active: bool) -> None: ...


class Claims(Protocol):
    shared: bool
    instance: str

    def exclude_accounts(self, accounts: set[str]) -> None: ...


def registration_leases(settings: Settings, store: Claims, sip: Registrar,
                        wake_inbound: Callable[[], None]) -> AccountLeases | None:
    """The leases of the register-mode accounts when several instances share a PostgreSQL
    store, wired to the SIP engine (register only while holding) and to the store (claim an
    account's texts to phones only while holding); None on SQLite, where one process
    registers everything as before."""
    names = [a.name for a in settings.accounts if a.mode == "register"]
    if not store.shared or not names or settings.bridge.database is None:
        return None
    not_held = set(names)
    for name in names:
        sip.set_registration(name, False)
    store.exclude_accounts(not_held)

    def acquired(account: str) -> None:
        not_held.discard(account)
        store.exclude_accounts(not_held)
        sip.set_registration(account, True)
        wake_inbound()

    def lost(account: str) -> None:
        not_held.add(account)
        store.exclude_accounts(not_held)
        sip.set_registration(account, False)

    return AccountLeases(reveal(settings.bridge.database), store.instance, names, acquired,
                         lost)
