"""The core's SIP side, fast: intake of checked texts, notices, parts, delivery
notifications and store trouble (bridge/core.py with a real SQLite store, the sandbox
carrier and a recording SIP sender)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.app import build_providers
from bridge.core import NOTICES_PER_MINUTE, Bridge, Notifier
from bridge.dispatch import Done, Fail, Retry
from bridge.model import (
    Content,
    DeliveryReport,
    Direction,
    ImdnRequest,
    Kind,
    SipOutcome,
    SipResult,
    SipText,
    State,
)
from bridge.routing import Router
from bridge.settings import load_settings
from bridge.sip import imdn
from bridge.store import Store, list_messages

EXAMPLE = Path(__file__).parent.parent / "config" / "bridge.example.toml"


class Phones:
    """Records each MESSAGE the core sends; answers with ``answer``."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []  # (target, body, content type)
        self.answer = SipResult(200, SipOutcome.DELIVERED)

    async def __call__(self, account: str, target: str, from_uri: str, body: str,
                       content_type: str = "text/plain;charset=UTF-8") -> SipResult:
        self.sent.append((target, body, content_type))
        return self.answer


@pytest.fixture
async def bridge(tmp_path):
    settings = load_settings(EXAMPLE)
    store = Store(tmp_path / "bridge.sqlite3")
    await store.open()
    phones = Phones()
    core = Bridge(settings, Router(settings), store, build_providers(settings), phones,
                  Notifier(lambda: None, lambda: None), imdn_formatter=imdn.render,
                  sip_part_bytes=200)
    core.phones = phones  # type: ignore[attr-defined]
    yield core
    await store.close()


def text(body: str | None, *, refusal: str | None = None, key: str | None = None,
         request: ImdnRequest | None = None, from_user: str = "1001") -> SipText:
    return SipText(account="*trunk*", source="127.0.0.1:5070", from_user=from_user,
                   from_host="127.0.0.1", to_user="+15557654321", call_id="c1",
                   content=Content(body) if body is not None else None, refusal=refusal,
                   imdn=request, intake_key=key)


def rows(core: Bridge):
    return core.store.query_sync(lambda db: list_messages(db, limit=100))


async def test_a_text_is_queued_once_even_when_its_journal_entry_is_replayed(bridge):
    await bridge.on_sip_text(text("hello", key="run-1-0"))
    await bridge.on_sip_text(text("hello", key="run-1-0"))  # the replay after a crash
    (row,) = rows(bridge)
    assert (row.direction, row.state, row.body) == (Direction.OUT, State.QUEUED, "hello")


async def test_a_refused_text_is_stored_and_explained_once(bridge):
    await bridge.on_sip_text(text(None, refusal="the message is empty", key="k"))
    await bridge.on_sip_text(text(None, refusal="the message is empty", key="k"))
    states = sorted((r.direction, r.kind, r.state) for r in rows(bridge))
    assert states == [(Direction.IN, Kind.NOTICE, State.QUEUED),
                      (Direction.OUT, Kind.TEXT, State.REJECTED)]


async def test_a_text_without_a_usable_sender_is_kept_as_refused_without_a_notice(bridge):
    await bridge.on_sip_text(text("hi", from_user=""))
    (row,) = rows(bridge)
    assert row.state == State.REJECTED and "From" in (row.last_error or "")


async def test_notices_to_one_extension_are_rate_limited(bridge):
    for _ in range(NOTICES_PER_MINUTE + 5):
        await bridge.on_sip_text(text(None, refusal="the message is empty"))
    notices = [r for r in rows(bridge) if r.kind == Kind.NOTICE]
    assert len(notices) == NOTICES_PER_MINUTE


async def test_the_sender_is_told_at_once_when_the_store_cannot_take_a_text(bridge):
    bridge.store.close_sync()  # every store call now fails, as with a full disk
    await bridge.on_sip_text(text("hello"))
    ((target, body, _),) = bridge.phones.sent
    assert target == "sip:1001@127.0.0.1:5070" and "cannot store texts right now" in body


async def test_a_long_inbound_text_goes_to_the_phone_in_marked_parts(bridge):
    await bridge.on_carrier_events(bridge.providers["sandbox"], [_inbound("你好" * 100)])
    (message,) = [r for r in rows(bridge) if r.direction == Direction.IN]
    outcome = await bridge.send_sip_message(message)
    assert isinstance(outcome, Done)
    bodies = [b for _, b, _ in bridge.phones.sent]
    assert len(bodies) == 4 and bodies[0].startswith("(1/4) ") and bodies[3].startswith("(4/4)")
    assert all(len(b.encode()) <= 200 for b in bodies)


async def test_too_large_for_sip_fails_at_once_instead_of_retrying_for_days(bridge):
    await bridge.on_carrier_events(bridge.providers["sandbox"], [_inbound("hi")])
    (message,) = rows(bridge)
    bridge.phones.answer = SipResult(0, SipOutcome.TOO_LARGE, "does not fit")
    assert isinstance(await bridge.send_sip_message(message), Fail)
    bridge.phones.answer = SipResult(480, SipOutcome.RETRY)
    assert isinstance(await bridge.send_sip_message(message), Retry)


async def test_a_phone_that_asked_gets_a_delivery_notification(bridge):
    request = ImdnRequest("msg-42", positive=True, negative=True)
    await bridge.on_sip_text(text("tick please", request=request))
    (sent,) = rows(bridge)
    assert sent.imdn == request
    await bridge.store.transition(sent.id, State.SENDING)
    await bridge.store.transition(sent.id, State.SENT, carrier_id="sb-1")
    await bridge.on_carrier_events(bridge.providers["sandbox"],
                                   [DeliveryReport("sb-1", State.DELIVERED, "delivered")])
    (note,) = [r for r in rows(bridge) if r.kind == Kind.IMDN]
    assert await bridge.send_sip_message(note) == Done(State.DELIVERED,
                                                        detail="extension 1001 answered 200")
    ((_, body, ctype),) = bridge.phones.sent
    assert ctype == "message/cpim" and "<message-id>msg-42</message-id>" in body
    assert "<delivered/>" in body and "From: <sip:+15557654321@127.0.0.1>" in body


def _inbound(body: str):
    from bridge.model import InboundMessage

    return InboundMessage(carrier_id="in-1", from_number="+15557654321",
                          to_number="+15551230001", text=body)
