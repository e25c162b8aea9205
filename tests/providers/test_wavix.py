"""Wavix adapter: the v3 send request, inbound and DLR webhooks, the URL token."""

from __future__ import annotations

import json

import pytest

from bridge.model import (
    DeliveryReport,
    InboundMessage,
    MediaRef,
    OutboundSms,
    Sent,
    State,
)
from bridge.providers.base import WebhookMalformed, WebhookRequest, WebhookUnauthorized
from tests.carrier_server import CannedResponse, CarrierServer
from tests.providers.carriers import WAVIX as CARRIER
from tests.providers.harness import PUBLIC

KEY = CARRIER.fields["api_key"]
TOKEN = CARRIER.fields["webhook_token"]

# The documented success body (docs.wavix.com send-message, "Response").
SENT_BODY = {
    "carrier_fees": "0.0", "charge": "0.0", "delivered_at": None, "error_message": None,
    "from": "15551230001", "mcc": "310", "mnc": "260",
    "message_body": {"text": "hi", "media": None},
    "message_id": "abc123de-4567-890f-gh12-ijklmnop3456", "message_type": "sms",
    "segments": 1, "sent_at": None, "status": "accepted",
    "submitted_at": "2025-09-22T09:07:53", "tag": None, "to": "15557654321",
}


make_provider = CARRIER.make


send = CARRIER.send_to


def webhook(body: object, token: str | None = TOKEN) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return WebhookRequest("POST", f"{PUBLIC}/webhooks/wx/{token}",
                          {"Content-Type": "application/json"}, [], raw, "198.51.100.4",
                          path_token=token)


async def test_sms_is_the_documented_request():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(201, SENT_BODY))
        result = await send(srv, OutboundSms(1, "+15551230001", "+15557654321", "héllo 😀"))
    assert result == Sent("abc123de-4567-890f-gh12-ijklmnop3456", detail="accepted")
    (req,) = srv.requests
    assert (req.method, req.path) == ("POST", "/v3/messages")
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert req.content_type == "application/json"
    assert req.json() == {
        "from": "15551230001", "to": "15557654321",
        "message_body": {"text": "héllo 😀", "media": None},
        "callback_url": f"{PUBLIC}/webhooks/wx/{TOKEN}",
    }


async def test_mms_and_e164_numbers_and_validity():
    media = (MediaRef("https://cdn.example.com/a.jpg"), MediaRef("https://cdn.example.com/b.mp3"))
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {**SENT_BODY, "message_type": "mms"}))
        result = await send(srv, OutboundSms(2, "+15551230001", "+15557654321", "pic", media),
                            number_format="e164", status_callback=False, validity_seconds=3600)
    assert isinstance(result, Sent)
    assert srv.requests[0].json() == {
        "from": "+15551230001", "to": "+15557654321",
        "message_body": {"text": "pic", "media": [m.url for m in media]},
        "validity": 3600,
    }


async def test_alphanumeric_sender():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, SENT_BODY))
        await send(srv, OutboundSms(3, "+15551230001", "+447537151866", "x", sender_id="Wavix"))
    assert srv.requests[0].json()["from"] == "Wavix"


def test_inbound_sms_from_documented_example():
    provider = make_provider()
    req = webhook({"message_id": "3c7a5a90-43e0-43e0-b006-fdfea30c5a7c",
                   "from": "43720115661", "to": "447712345661",
                   "message_body": {"text": "SMS message", "media": None},
                   "received_at": "2022-04-14T13:51:16.096Z"})
    provider.verify(req)
    assert provider.parse(req) == [InboundMessage(
        "3c7a5a90-43e0-43e0-b006-fdfea30c5a7c", "+43720115661", "+447712345661",
        "SMS message")]


def test_inbound_mms():
    provider = make_provider()
    req = webhook({"message_id": "871b4eeb", "message_type": "mms", "from": "15557654321",
                   "to": "15551230001",
                   "message_body": {"text": "", "media": ["https://you-site.com/media"]},
                   "received_at": "2022-04-14T13:51:16.096Z"})
    (event,) = provider.parse(req)
    assert event.media == (MediaRef("https://you-site.com/media"),)
    assert (event.from_number, event.to_number) == ("+15557654321", "+15551230001")


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        ("delivered", None, DeliveryReport("m1", State.DELIVERED, "delivered")),
        ("sent", None, DeliveryReport("m1", State.SENT, "sent")),
        ("undelivered", "Absent subscriber",
         DeliveryReport("m1", State.FAILED, "undelivered", "Absent subscriber")),
        ("rejected", "Opted out", DeliveryReport("m1", State.FAILED, "rejected", "Opted out")),
        ("accepted", None, None),
        ("pending", None, None),
        ("dlr_expired", None, None),
    ],
)
def test_delivery_reports(status, error, expected):
    provider = make_provider()
    req = webhook({"message_id": "m1", "message_type": "sms", "from": "15551230001",
                   "to": "+15557654321", "tag": None, "status": status, "segments_count": 1,
                   "sent": "2024-05-28T12:34:54Z", "charge": "0.01", "carrier_fees": "0.0",
                   "delivered": None, "error": error})
    assert provider.parse(req) == ([expected] if expected else [])


@pytest.mark.parametrize(("token", "configured"),
                         [(None, TOKEN), ("nope", TOKEN), (TOKEN, None)])
def test_url_token_is_required(token, configured):
    provider = make_provider(webhook_token=configured)
    with pytest.raises(WebhookUnauthorized):
        provider.verify(webhook({"message_id": "x", "status": "sent"}, token=token))


def test_right_token_is_accepted():
    make_provider().verify(webhook({}))


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\xffnot json", b"[]", b"null",
        {"status": "sent"},
        {"message_id": ["x"], "status": "sent"},
        {"message_id": "x", "status": 3},
        {"message_id": "x", "from": "15557654321", "to": "15551230001"},
        {"message_id": "x", "from": "15557654321", "to": "15551230001", "message_body": "hi"},
        {"message_id": "x", "from": "15557654321", "to": "15551230001",
         "message_body": {"text": ["hi"]}},
        {"message_id": "x", "from": "15557654321", "to": "15551230001",
         "message_body": {"text": "hi", "media": "https://x"}},
        {"message_id": "x", "from": "Wavix!", "to": "15551230001",
         "message_body": {"text": "hi"}},
        {"message_id": "x", "from": None, "to": "15551230001", "message_body": {"text": "hi"}},
    ],
)
def test_hostile_bodies_are_malformed(body):
    with pytest.raises(WebhookMalformed):
        make_provider().parse(webhook(body))
