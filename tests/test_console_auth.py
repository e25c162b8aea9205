"""The console's pure parts: sign-in limits, sessions, CSRF, the one-time link, tenant scope
in SQL, masked configuration, charts; and its cookies over a real loopback HTTP server."""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bridge.metrics import Metrics
from bridge.model import Direction
from bridge.settings import Settings
from bridge.store import NewMessage, Store
from bridge.web.console import Console, views
from bridge.web.console.auth import (
    LoginLimiter,
    OneTimeLink,
    Sessions,
    Viewer,
    csrf_ok,
    hash_password,
    password_matches,
)


def settings(public_url: str = "http://127.0.0.1:8080") -> Settings:
    return Settings(
        bridge={"public_url": public_url},
        accounts=[{"name": n, "domain": "127.0.0.1", "allowed_sources": ["127.0.0.1/32"]}
                  for n in ("acme", "globex")],
        providers=[{"name": "sandbox", "type": "sandbox",
                    "webhook_token": "planted-token-0123456789"}],
        numbers=[{"number": "+15551230001", "provider": "sandbox", "account": "acme",
                  "deliver_to": ["1001"]},
                 {"number": "+15551230002", "provider": "sandbox", "account": "globex",
                  "deliver_to": ["2001"]}],
    )


def test_the_limiter_counts_per_key_within_its_window() -> None:
    limiter = LoginLimiter(max_failures=3, window=0.5)
    for _ in range(2):
        limiter.failed(["a"])
    assert limiter.wait_seconds(["a"]) == 0
    limiter.failed(["a"])
    assert 0 < limiter.wait_seconds(["a"]) <= 0.5
    assert limiter.wait_seconds(["b"]) == 0  # another key is not affected
    time.sleep(0.55)
    assert limiter.wait_seconds(["a"]) == 0  # the window has passed
    limiter.failed(["a"])
    limiter.succeeded(["a"])
    assert limiter.wait_seconds(["a"]) == 0


def test_sessions_expire_when_idle_and_end_on_logout() -> None:
    sessions = Sessions(lifetime=0.3)
    viewer = Viewer("ada", "admin", None)
    session = sessions.new(viewer)
    assert sessions.get(session.id) is session
    assert csrf_ok(session, session.csrf) and not csrf_ok(session, "x")
    assert not csrf_ok(session, None) and not csrf_ok(None, session.csrf)
    time.sleep(0.35)
    assert sessions.get(session.id) is None
    other = sessions.new(viewer)
    sessions.end(other)
    assert sessions.get(other.id) is None
    assert sessions.get(None) is None and sessions.get("") is None


def test_passwords_and_the_one_time_link() -> None:
    hashed = hash_password("a long enough password")
    assert hashed.startswith("$argon2id$")
    assert password_matches(hashed, "a long enough password")
    assert not password_matches(hashed, "wrong")
    assert not password_matches("not a hash", "wrong")
    link = OneTimeLink()
    token = link.token
    assert token is not None and len(token) >= 40
    assert not link.redeem("wrong")
    assert link.redeem(token) and not link.redeem(token)


def test_a_tenant_sees_its_accounts_only() -> None:
    viewer = Viewer("acme-admin", "tenant", ("acme",))
    assert viewer.may_see("acme") and not viewer.may_see("globex")
    assert not viewer.may_see("")  # refused inbound texts belong to no tenant
    text = views.config_text(settings(), viewer)
    assert "acme" in text and "globex" not in text and "[[providers]]" not in text
    admin = views.config_text(settings(), Viewer("ada", "admin", None))
    assert "globex" in admin and 'webhook_token = "**********"' in admin
    assert "planted-token" not in admin


async def test_reads_are_scoped_to_a_tenants_accounts_in_sql(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    await store.open()
    try:
        now = time.time()
        for account, remote in (("acme", "+15557654321"), ("globex", "+15559990000")):
            await store.insert([NewMessage(Direction.IN, account, "1001", remote, "hi",
                                           now + 60, did="+15551230001")])
        assert [m.account for m in await store.search_messages(accounts=["acme"])] == ["acme"]
        assert await store.search_messages(accounts=[]) == []  # nothing, never everything
        assert len(await store.search_messages()) == 2
        assert [m.remote for m in await store.search_messages(number="999")] == [
            "+15559990000"]
        counts = await store.hourly_counts(now - 3600 * 23.5, accounts=["globex"])
        assert sum(counts["in"]) == 1 and sum(counts["out"]) == 0 and len(counts["in"]) == 24
        assert await store.queue_stats_for(["acme"]) == {"in": (1, pytest.approx(now, abs=5))}
        assert await store.queue_stats_for([]) == {}
        assert await store.conversation("+15551230001", "+15559990000",
                                        accounts=["acme"]) == []
        assert len(await store.conversation("+15551230001", "+15559990000")) == 1
    finally:
        await store.close()


async def test_search_pages_back_by_id_and_filters_by_time(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite3")
    await store.open()
    try:
        for i in range(7):
            await store.insert([NewMessage(Direction.OUT, "acme", "1001", "+15557654321",
                                           f"text {i}", time.time() + 60)])
        first = await store.search_messages(limit=3)
        assert [m.body for m in first] == ["text 6", "text 5", "text 4"]
        older = await store.search_messages(limit=3, before_id=first[-1].id)
        assert [m.body for m in older] == ["text 3", "text 2", "text 1"]
        middle = older[1].created_at
        assert [m.body for m in await store.search_messages(
            since=middle, until=first[-1].created_at)] == ["text 3", "text 2"]
        assert await store.search_messages(state="failed") == []
        assert len(await store.search_messages(extension="1001", state="queued")) == 7
        found = await store.message_with_history(first[0].id)
        assert found is not None and found[0].body == "text 6"
        assert [e.state for e in found[1]] == ["queued"]
        assert await store.message_with_history(999) is None
    finally:
        await store.close()


def test_bars_scale_to_the_busiest_hour() -> None:
    bars, top = views.bars([0, 2, 4], 0.0)
    assert top == 4 and [b.count for b in bars] == [0, 2, 4]
    assert bars[2].height == views.CHART_H - 4 and bars[0].height == 0
    assert bars[1].label == "01:00-02:00 UTC: 2 texts"


@pytest.mark.parametrize(("public_url", "proxied", "secure"), [
    ("https://sms.example.com", True, True),
    # a browser on the bridge's own machine, plain HTTP to loopback (the one-time link)
    ("https://sms.example.com", False, False),
    ("http://127.0.0.1:8080", True, False),
])
async def test_cookies_are_httponly_strict_and_secure_over_https(
        tmp_path: Path, public_url: str, proxied: bool, secure: bool) -> None:
    console = Console(settings(public_url), Store(tmp_path / "unused.sqlite3"),
                      actions=None, metrics=Metrics(), providers={},  # type: ignore[arg-type]
                      registrations=dict)
    app = web.Application()
    console.add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        headers = {"X-Forwarded-For": "203.0.113.7"} if proxied else {}
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{port}/console/login", headers=headers) as resp:
            assert resp.status == 200
            cookie = resp.headers["Set-Cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            assert "Path=/console/" in cookie
            assert ("Secure" in cookie) is secure
            assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
            assert resp.headers["X-Frame-Options"] == "DENY"
            assert resp.headers["Cache-Control"] == "no-store"
    finally:
        await runner.cleanup()
