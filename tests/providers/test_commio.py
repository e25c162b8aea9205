"""Commio (thinQ) adapter: JSON SMS, multipart MMS, inbound and DLR webhooks, the URL token."""

from __future__ import annotations

import base64
import json
from email.parser import BytesParser
from email.policy import HTTP
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
from tests.carrier_server import CannedResponse, CarrierServer, RecordedRequest
from tests.providers.carriers import COMMIO as CARRIER
from tests.providers.harness import PUBLIC

ACCOUNT = CARRIER.fields["account_id"]
USER = CARRIER.fields["username"]
API_TOKEN = CARRIER.fields["api_token"]
TOKEN = CARRIER.fields["webhook_token"]
AUTH = "Basic " + base64.b64encode(f"{USER}:{API_TOKEN}".encode()).decode()
assert AUTH == "Basic dXNlcjE6c2VzYW1l"  # the header in courier's thinq testdata


make_provider = CARRIER.make


send = CARRIER.send_to


def multipart_fields(req: RecordedRequest) -> list[tuple[str, str]]:
    head = f"Content-Type: {req.headers['Content-Type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + req.body)
    return [(part.get_param("name", header="content-disposition"), part.get_content())
            for part in message.iter_parts()]


def webhook(body: dict | bytes, *, form: bool = True, token: str | None = TOKEN,
            received_at: float = 1_700_000_000.0) -> WebhookRequest:
    if form and isinstance(body, dict):
        raw, ctype = urlencode(body).encode(), "application/x-www-form-urlencoded"
    else:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        ctype = "application/json"
    return WebhookRequest("POST", f"{PUBLIC}/webhooks/cm/{token}", {"Content-Type": ctype},
                          [], raw, "192.0.2.44", path_token=token, received_at=received_at)


async def test_sms_is_the_documented_request():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {"guid": "1002"}))
        result = await send(srv, OutboundSms(1, "+12065551212", "+12067791234",
                                             "Simple Message ☺"))
    assert result == Sent("1002")
    (req,) = srv.requests
    assert (req.method, req.path) == ("POST", f"/account/{ACCOUNT}/product/origination/sms/send")
    assert req.headers["Authorization"] == AUTH
    assert req.headers["Accept"] == "application/json"
    assert req.content_type == "application/json"
    assert req.json() == {"from_did": "2065551212", "to_did": "2067791234",
                          "message": "Simple Message ☺"}


async def test_mms_is_multipart_and_the_text_follows_as_sms():
    media = (MediaRef("https://foo.bar/image.jpg", "image/jpeg"),
             MediaRef("https://foo.bar/two.png", "image/png"))
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {"guid": "m1"}), CannedResponse(200, {"guid": "m2"}),
                    CannedResponse(200, {"guid": "s1"}))
        result = await send(srv, OutboundSms(2, "+12065551212", "+12067791234", "My pic!",
                                             media))
    assert result == Sent("m1", "3 parts", ("m1", "m2", "s1"))
    first, second, text = srv.requests
    for req, url in ((first, media[0].url), (second, media[1].url)):
        assert req.path == f"/account/{ACCOUNT}/product/origination/mms/send"
        assert req.content_type == "multipart/form-data"
        assert req.headers["Authorization"] == AUTH
        assert multipart_fields(req) == [("from_did", "2065551212"), ("to_did", "2067791234"),
                                         ("media_url", url)]
    assert text.path.endswith("/sms/send")
    assert text.json()["message"] == "My pic!"


async def test_mms_text_in_the_message_field_when_configured():
    media = (MediaRef("https://foo.bar/image.jpg"),)
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {"guid": "m1"}))
        result = await send(srv, OutboundSms(2, "+12065551212", "+12067791234", "caption",
                                             media), mms_text="message_field")
    assert result == Sent("m1")
    (req,) = srv.requests
    assert multipart_fields(req) == [("from_did", "2065551212"), ("to_did", "2067791234"),
                                     ("media_url", media[0].url), ("message", "caption")]


async def test_long_text_is_split_at_1600():
    text = "w " * 1000  # 2000 characters
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {"guid": "a"}), CannedResponse(200, {"guid": "b"}))
        result = await send(srv, OutboundSms(3, "+12065551212", "+12067791234", text))
    assert result == Sent("a", "2 parts", ("a", "b"))
    assert all(len(r.json()["message"]) <= 1600 for r in srv.requests)


async def test_answer_without_guid_is_not_retried():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {"missing": "1002"}))
        result = await send(srv, OutboundSms(1, "+12065551212", "+12067791234", "x"))
    assert isinstance(result, SendFailed) and not result.retryable


async def test_non_nanp_fails_without_a_request():
    async with CarrierServer() as srv:
        result = await send(srv, OutboundSms(1, "+12065551212", "+33612345678", "x"))
    assert isinstance(result, SendFailed) and not result.retryable
    assert srv.requests == []


def test_inbound_sms_from_courier_example():
    provider = make_provider()
    req = webhook({"message": "hello world", "from": "2065551234", "type": "sms",
                   "to": "2065551212"})
    provider.verify(req)
    (event,) = provider.parse(req)
    assert (event.from_number, event.to_number, event.text, event.media) == (
        "+12065551234", "+12065551212", "hello world", ())
    assert event.carrier_id.startswith("commio-")


def test_inbound_mms_url_and_json_and_eleven_digits():
    provider = make_provider()
    req = webhook({"message": "http://foo.bar/foo.png", "from": "12065551234", "type": "mms",
                   "to": "12065551212", "id": "77"}, form=False)
    assert provider.parse(req) == [InboundMessage(
        "77", "+12065551234", "+12065551212", "", (MediaRef("http://foo.bar/foo.png"),))]


def test_inbound_mms_base64():
    jpeg = base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(40)).decode()
    (event,) = make_provider().parse(webhook(
        {"message": jpeg, "from": "2065551234", "type": "mms", "to": "2065551212"}))
    assert event.text == ""
    assert event.media == (MediaRef(f"data:image/jpeg;base64,{jpeg}", "image/jpeg"),)


def test_inbound_mms_with_plain_text_stays_text():
    (event,) = make_provider().parse(webhook(
        {"message": "just words", "from": "2065551234", "type": "mms", "to": "2065551212"}))
    assert (event.text, event.media) == ("just words", ())


@pytest.mark.parametrize(
    ("status", "send_status", "error", "expected"),
    [
        ("DELIVRD", "delivered", "000", DeliveryReport("g1", State.DELIVERED, "DELIVRD")),
        ("UNDELIV", "undelivered", "001",
         DeliveryReport("g1", State.FAILED, "UNDELIV", "001")),
        ("REJECTD", "rejected", "", DeliveryReport("g1", State.FAILED, "REJECTD")),
        ("", "delivered", "", DeliveryReport("g1", State.DELIVERED, "delivered")),
        ("UNKNOWN", "unknown", "000", None),
        ("ACCEPTD", "sent", "000", None),
    ],
)
def test_delivery_reports(status, send_status, error, expected):
    req = webhook({"guid": "g1", "account_id": ACCOUNT, "source_did": "2065551212",
                   "destination_did": "2067791234", "timestamp": "2024-01-01 00:00:00",
                   "send_status": send_status, "status": status, "error": error})
    assert make_provider().parse(req) == ([expected] if expected else [])


@pytest.mark.parametrize(("token", "configured"),
                         [(None, TOKEN), ("nope", TOKEN), (TOKEN, None)])
def test_url_token_is_required(token, configured):
    provider = make_provider(webhook_token=configured)
    with pytest.raises(WebhookUnauthorized):
        provider.verify(webhook({"from": "1", "to": "2", "message": "x"}, token=token))


@pytest.mark.parametrize(
    ("body", "form"),
    [
        (b"\xff\xfe", True), (b"[]", False), (b"nul", False),
        ({"to": "2065551212", "type": "sms", "message": "x"}, True),
        ({"from": "2065551234", "type": "sms", "message": "x"}, True),
        ({"from": "x", "to": "2065551212", "type": "sms", "message": "x"}, True),
        ({"from": "2065551234", "to": "2065551212", "type": "sms", "message": 5}, False),
        ({"from": "2065551234", "to": "2065551212", "type": ["mms"], "message": "x"}, False),
        ({"guid": ["g"], "status": "DELIVRD"}, False),
        ({"guid": "g", "status": 3}, False),
    ],
)
def test_hostile_bodies_are_malformed(body, form):
    with pytest.raises(WebhookMalformed):
        make_provider().parse(webhook(body, form=form))
