"""Voxtelesys adapter: the /sms request, MO and DLR webhooks, the URL token."""

from __future__ import annotations

import json

import pytest

from bridge.model import (
    DeliveryReport,
    InboundMessage,
    MediaRef,
    OutboundSms,
    SendFailed,
    Sent,
    State,
)
from bridge.providers.base import WebhookMalformed, WebhookRequest, WebhookUnauthorized
from tests.carrier_server import CannedResponse, CarrierServer, send_once
from tests.providers.carriers import VOXTELESYS as CARRIER
from tests.providers.harness import PUBLIC

KEY = CARRIER.fields["api_key"]
TOKEN = CARRIER.fields["webhook_token"]


make_provider = CARRIER.make


async def send(srv: CarrierServer, msg: OutboundSms, **extra):
    provider = make_provider(srv.url + "/api/v1", **extra)
    return await send_once(provider, msg)


def webhook(body: object, token: str | None = TOKEN) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return WebhookRequest("POST", f"{PUBLIC}/webhooks/vts/{token}",
                          {"Content-Type": "application/json"}, [], raw, "198.51.100.9",
                          path_token=token)


async def test_sms_is_the_documented_v1_request():
    """v1 whole: E.164 digits without '+', ``to`` a list (the v1 reference's batches)."""
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {"id": "BPBPqNgILE2urR4S", "status": "queued"}))
        result = await send(srv, OutboundSms(1, "+17019299797", "+14024431550", "héllo 😀"))
    assert result == Sent("BPBPqNgILE2urR4S", detail="queued")
    (req,) = srv.requests
    assert (req.method, req.path) == ("POST", "/api/v1/sms")
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert req.content_type == "application/json"
    assert req.json() == {"from": "17019299797", "to": ["14024431550"], "body": "héllo 😀"}


async def test_mms_is_the_documented_v1_request():
    media = (MediaRef("https://cdn.example.com/a.jpg"),)
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(201, {"batch_id": "B1"}))
        result = await send(srv, OutboundSms(2, "+17019299797", "+14024431550", "", media))
    assert result == Sent("B1")
    assert srv.requests[0].json() == {
        "from": "17019299797", "to": ["14024431550"], "media": ["https://cdn.example.com/a.jpg"],
    }


@pytest.mark.parametrize("field", [{"number_format": "e164"}, {"status_callback": True}])
def test_options_of_the_newer_api_are_refused(field):
    with pytest.raises(ValueError):
        make_provider("https://smsapi.voxtelesys.net/api/v1", **field)


async def test_success_without_an_id_is_not_retried():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {}))
        result = await send(srv, OutboundSms(1, "+17019299797", "+14024431550", "x"))
    assert isinstance(result, SendFailed) and not result.retryable


def test_mo_sms():
    provider = make_provider()
    req = webhook({"type": "mo", "id": "6708f96b76b15fde200deaca", "to": "17019299797",
                   "from": "14024431550", "body": "Hello", "media": [],
                   "received_at": "2018-03-10T10:30:00.000Z"})
    provider.verify(req)
    assert provider.parse(req) == [InboundMessage(
        "6708f96b76b15fde200deaca", "+14024431550", "+17019299797", "Hello")]


def test_mo_mms_without_id():
    provider = make_provider()
    req = webhook({"type": "mo", "to": "+17019299797", "from": "+14024431550", "body": "",
                   "media": ["https://media.voxtelesys.net/1.jpg",
                             {"url": "https://media.voxtelesys.net/2.png"}],
                   "received_at": "2018-03-10T10:30:00.000Z"})
    (event,) = provider.parse(req)
    assert event.carrier_id.startswith("vts-")
    assert [m.url for m in event.media] == ["https://media.voxtelesys.net/1.jpg",
                                           "https://media.voxtelesys.net/2.png"]


@pytest.mark.parametrize(
    ("status", "error", "expected_state", "expected_error"),
    [
        ("delivered", {"code": "0", "description": "None"}, State.DELIVERED, None),
        ("failed", {"code": "4505", "description": "Carrier rejected"}, State.FAILED,
         "4505: Carrier rejected"),
        ("expired", None, State.FAILED, None),
    ],
)
def test_delivery_receipts(status, error, expected_state, expected_error):
    provider = make_provider()
    req = webhook({"type": "per_recipient", "batch_id": "B1", "message_id": "M1", "tag": "",
                   "to": ["14024431550"], "status": status, "time": "2024-01-01T00:00:00Z",
                   "error": error})
    assert provider.parse(req) == [
        DeliveryReport("M1", expected_state, status, expected_error),
        DeliveryReport("B1", expected_state, status, expected_error),
    ]


@pytest.mark.parametrize("status", ["queued", "delivering", "unknown"])
def test_receipts_without_news_are_dropped(status):
    req = webhook({"type": "per_recipient", "batch_id": "B1", "message_id": "M1",
                   "status": status})
    assert make_provider().parse(req) == []


def test_other_event_types_are_ignored():
    assert make_provider().parse(webhook({"type": "subscriber_optout", "from": "x"})) == []


@pytest.mark.parametrize(("token", "configured"),
                         [(None, TOKEN), ("nope", TOKEN), (TOKEN, None)])
def test_url_token_is_required(token, configured):
    provider = make_provider(webhook_token=configured)
    with pytest.raises(WebhookUnauthorized):
        provider.verify(webhook({"type": "mo"}, token=token))


@pytest.mark.parametrize(
    "body",
    [
        b"{not json", b"[]", b"1",
        {"from": "14024431550", "to": "17019299797", "body": "x"},
        {"type": 5},
        {"type": "mo", "from": "14024431550", "body": "x"},
        {"type": "mo", "from": "14024431550", "to": "17019299797", "body": ["x"]},
        {"type": "mo", "from": "14024431550", "to": "17019299797", "media": "x"},
        {"type": "mo", "from": "14024431550", "to": "17019299797", "media": [{"u": 1}]},
        {"type": "mo", "from": "abc", "to": "17019299797"},
        {"type": "per_recipient", "status": "delivered"},
        {"type": "per_recipient", "message_id": "M1", "status": None},
    ],
)
def test_hostile_bodies_are_malformed(body):
    with pytest.raises(WebhookMalformed):
        make_provider().parse(webhook(body))
