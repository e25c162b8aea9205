"""Who is looking: password checks, sessions, the sign-in rate limit, the one-time link.

- Passwords: argon2id through ``argon2-cffi`` (the OWASP first choice; the library sets
  RFC 9106 parameters and encodes them in the hash, so stronger defaults later still verify
  old hashes). A check runs in a thread, at most two at a time, so sign-ins never stall the
  event loop that carries texts.
- Sessions: a random 256-bit id in the cookie, the session itself in this process's memory.
  Signed-cookie sessions (itsdangerous, aiohttp-session) cannot be ended by the server: a
  copied cookie stays valid until it expires. Here logout deletes the session, so the old
  cookie is worthless at once. (A restart signs everyone out, which is acceptable.)
- CSRF: a random token per session (the synchronizer-token pattern), required in every
  form POST and compared in constant time; the cookie is also SameSite=Strict.
- Rate limit: failed sign-ins are counted per user name and per client address; past
  ``MAX_FAILURES`` for a name (or ``MAX_FAILURES_PER_ADDRESS`` from an address) within
  ``WINDOW`` seconds, sign-ins are refused without checking the password.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bridge.settings import ConsoleUser

MAX_FAILURES = 5  # per user name
MAX_FAILURES_PER_ADDRESS = 20  # one address trying many names (or an office behind one NAT)
WINDOW = 300.0  # seconds
MAX_SESSIONS = 10_000  # anonymous sessions (the login form's CSRF token) are cheap to make
MAX_TRACKED = 10_000
LOCAL_ADMIN = "local-admin"  # the name a one-time link's session acts under

_hasher = PasswordHasher()
# Unknown user names are checked against this, so they take as long as known ones.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def password_matches(stored_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class Viewer:
    """A signed-in person and what they may see. ``accounts`` None: every account."""

    name: str
    role: str
    accounts: tuple[str, ...] | None

    @property
    def is_admin(self) -> bool:
        return self.accounts is None

    def may_see(self, account: str) -> bool:
        return self.accounts is None or account in self.accounts

    @classmethod
    def of(cls, user: ConsoleUser) -> Viewer:
        return cls(user.name, user.role,
                   None if user.role == "admin" else tuple(user.accounts))


@dataclass(slots=True)
class Session:
    id: str
    csrf: str
    expires_at: float
    viewer: Viewer | None = None  # None: not signed in yet (the login form's session)
    flash: list[str] = field(default_factory=list)


class Sessions:
    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self._by_id: dict[str, Session] = {}

    def new(self, viewer: Viewer | None = None) -> Session:
        now = time.time()
        if len(self._by_id) >= MAX_SESSIONS:
            self._prune(now)
        if len(self._by_id) >= MAX_SESSIONS:  # still full: drop the oldest anonymous ones
            for sid in [s.id for s in self._by_id.values() if s.viewer is None][:1000]:
                del self._by_id[sid]
        session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32),
                          now + self.lifetime, viewer)
        self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        session = self._by_id.get(session_id or "")
        if session is None:
            return None
        now = time.time()
        if session.expires_at <= now:
            del self._by_id[session.id]
            return None
        session.expires_at = now + self.lifetime  # idle timeout, renewed on use
        return session

    def end(self, session: Session) -> None:
        self._by_id.pop(session.id, None)

    def _prune(self, now: float) -> None:
        for sid in [s.id for s in self._by_id.values() if s.expires_at <= now]:
            del self._by_id[sid]


def csrf_ok(session: Session | None, given: object) -> bool:
    return (session is not None and isinstance(given, str)
            and hmac.compare_digest(given.encode(), session.csrf.encode()))


class LoginLimiter:
    """Failed sign-ins per key (a client address, a user name) over a sliding window."""

    def __init__(self, max_failures: int = MAX_FAILURES, window: float = WINDOW) -> None:
        self.max_failures = max_failures
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def wait_seconds(self, keys: Sequence[str]) -> float:
        """0 if a sign-in may be tried now, else how long until one may."""
        now = time.time()
        waits = [times[0] + self.window - now for key in keys
                 if len(times := self._recent(key, now)) >= self.max_failures]
        return max(waits, default=0.0)

    def failed(self, keys: Sequence[str]) -> None:
        now = time.time()
        if len(self._failures) >= MAX_TRACKED:
            for key in list(self._failures):
                self._recent(key, now)
        for key in keys:
            self._failures.setdefault(key, deque(maxlen=self.max_failures * 2)).append(now)

    def succeeded(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)


class Users:
    """The configured users, checked without blocking the event loop."""

    def __init__(self, users: Sequence[ConsoleUser]) -> None:
        self._users = {u.name: u for u in users}
        self._checks = asyncio.Semaphore(2)

    def __bool__(self) -> bool:
        return bool(self._users)

    async def check(self, name: str, password: str) -> Viewer | None:
        user = self._users.get(name)
        stored = user.password_hash.get_secret_value() if user else _DUMMY_HASH
        async with self._checks:
            ok = await asyncio.to_thread(password_matches, stored, password)
        return Viewer.of(user) if ok and user is not None else None


class OneTimeLink:
    """With no users configured: one sign-in, from this machine, with a token printed at
    start. Used once, it is gone."""

    def __init__(self) -> None:
        self.token: str | None = secrets.token_urlsafe(32)

    def redeem(self, given: str) -> bool:
        token, ok = self.token, False
        if token is not None and hmac.compare_digest(given.encode(), token.encode()):
            self.token, ok = None, True
        return ok
