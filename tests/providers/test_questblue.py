"""QuestBlue adapter: the /smsv2 query-string request, both inbound shapes, the URL token."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

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
from tests.carrier_server import CannedResponse, CarrierServer
from tests.providers.carriers import QUESTBLUE as CARRIER
from tests.providers.harness import PUBLIC

LOGIN = CARRIER.fields["login"]
PASSWORD = CARRIER.fields["password"]
KEY = CARRIER.fields["security_key"]
TOKEN = CARRIER.fields["webhook_token"]


make_provider = CARRIER.make


send = CARRIER.send_to


def webhook(body: object, *, form: bool = False, token: str | None = TOKEN,
            received_at: float = 1_700_000_000.0) -> WebhookRequest:
    if form:
        raw, ctype = urlencode(body).encode(), "application/x-www-form-urlencoded"
    else:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        ctype = "application/json"
    return WebhookRequest("POST", f"{PUBLIC}/webhooks/qb/{token}", {"Content-Type": ctype},
                          [], raw, "192.0.2.10", path_token=token, received_at=received_at)


async def test_sms_is_a_json_body_as_the_official_sdk_sends():
    """QuestBlue/phpsdk ApiRequestExecutor: a POST's parameters go in a JSON body."""
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {"data": [{"msg_id": "9001"}]}))
        result = await send(srv, OutboundSms(1, "+15551230001", "+15557654321", "héllo & 😀"))
    assert result == Sent("9001")
    (req,) = srv.requests
    assert (req.method, req.path) == ("POST", "/smsv2")
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(
        f"{LOGIN}:{PASSWORD}".encode()).decode()
    assert req.headers["Security-Key"] == KEY
    assert req.query == []
    assert req.content_type == "application/json"
    assert req.json() == {"did": "5551230001", "did_to": "5557654321", "msg": "héllo & 😀"}


async def test_mms_joins_media_urls_with_commas_and_eleven_digits():
    media = (MediaRef("https://cdn.example.com/a.jpg"), MediaRef("https://cdn.example.com/b.png"))
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {"data": [{"msg_id": "9002"}]}))
        result = await send(srv, OutboundSms(2, "+15551230001", "+15557654321", "pics", media),
                            number_format="digits")
    assert result == Sent("9002")
    assert srv.requests[0].json() == {
        "did": "15551230001", "did_to": "15557654321", "msg": "pics",
        "file_url": "https://cdn.example.com/a.jpg,https://cdn.example.com/b.png"}


async def test_non_us_numbers_fail_without_a_request():
    async with CarrierServer() as srv:
        result = await send(srv, OutboundSms(1, "+15551230001", "+447700900123", "x"))
    assert isinstance(result, SendFailed) and not result.retryable
    assert srv.requests == []


def test_inbound_callback_of_the_2_3_2_contract():
    provider = make_provider()
    req = webhook({"from": "15557654321", "to": ["15551230001"], "type": "MMS",
                   "text": "look", "media": ["https://media.questblue.com/a.jpg"],
                   "segments": "1"})
    provider.verify(req)
    (event,) = provider.parse(req)
    assert isinstance(event, InboundMessage)
    assert (event.from_number, event.to_number, event.text) == (
        "+15557654321", "+15551230001", "look")
    assert event.media == (MediaRef("https://media.questblue.com/a.jpg"),)
    assert event.carrier_id.startswith("qb-")


def test_inbound_post2url_form():
    provider = make_provider()
    req = webhook({"from": "5557654321", "to": "5551230001", "msg": "hi there"}, form=True)
    (event,) = provider.parse(req)
    assert (event.from_number, event.to_number, event.text) == (
        "+15557654321", "+15551230001", "hi there")


def test_inbound_ids_are_stable_per_delivery_and_distinct_across_deliveries():
    provider = make_provider()
    body = {"from": "5557654321", "to": "5551230001", "msg": "ok"}
    first = provider.parse(webhook(body, form=True, received_at=1.0))[0]
    again = provider.parse(webhook(body, form=True, received_at=1.0))[0]
    later = provider.parse(webhook(body, form=True, received_at=2.0))[0]
    assert first.carrier_id == again.carrier_id != later.carrier_id


def test_inbound_with_an_id_keeps_it():
    provider = make_provider()
    (event,) = provider.parse(webhook({"id": "777", "from": "5557654321",
                                       "to": "5551230001", "msg": "x"}, form=True))
    assert event.carrier_id == "777"


def test_status_callbacks_without_an_id_are_dropped():
    provider = make_provider()
    req = webhook({"from": "15551230001", "to": "15557654321", "status": "delivered",
                   "segments": "1"})
    assert provider.parse(req) == []


@pytest.mark.parametrize(
    ("status", "reason", "expected"),
    [
        ("delivered", None, DeliveryReport("9001", State.DELIVERED, "delivered")),
        ("failed", "Carrier rejected",
         DeliveryReport("9001", State.FAILED, "failed", "Carrier rejected")),
        ("queued", None, None),
    ],
)
def test_status_callbacks_with_an_id(status, reason, expected):
    provider = make_provider()
    body = {"msg_id": "9001", "from": "15551230001", "to": "15557654321", "status": status}
    if reason:
        body["reason"] = reason
    assert provider.parse(webhook(body)) == ([expected] if expected else [])


@pytest.mark.parametrize(("token", "configured"),
                         [(None, TOKEN), ("nope", TOKEN), (TOKEN, None)])
def test_url_token_is_required(token, configured):
    provider = make_provider(webhook_token=configured)
    with pytest.raises(WebhookUnauthorized):
        provider.verify(webhook({"from": "1", "to": "2", "msg": "x"}, token=token))


@pytest.mark.parametrize(
    "body",
    [
        b"\xffgarbage", b"[1]", b"7",
        {"to": ["15551230001"], "text": "x"},
        {"from": "15557654321", "to": [], "text": "x"},
        {"from": "15557654321", "to": ["15551230001"], "text": {"a": 1}},
        {"from": "15557654321", "to": ["15551230001"], "text": "x", "media": [1]},
        {"from": "15557654321", "to": ["15551230001"], "text": "x", "media": {"u": "x"}},
        {"from": "not a number", "to": ["15551230001"], "text": "x"},
        {"msg_id": "1", "status": ["delivered"]},
    ],
)
def test_hostile_bodies_are_malformed(body):
    with pytest.raises(WebhookMalformed):
        make_provider().parse(webhook(body))


def test_non_utf8_form_is_malformed():
    req = WebhookRequest("POST", f"{PUBLIC}/webhooks/qb/{TOKEN}",
                         {"Content-Type": "application/x-www-form-urlencoded"}, [],
                         b"from=\xff\xfe", "192.0.2.10", path_token=TOKEN)
    with pytest.raises(WebhookMalformed):
        make_provider().parse(req)
