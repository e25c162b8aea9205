"""Flowroute adapter: the request it sends, the webhooks it accepts.

Flowroute documents no webhook signature, so the adapter requires a secret token in the
webhook URL path; the tests check that it is enforced.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

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
from bridge.providers.flowroute import FlowrouteProvider, classify_dlr
from tests.carrier_server import CannedResponse
from tests.providers.carriers import FLOWROUTE as CARRIER
from tests.providers.harness import PUBLIC

FIXTURES = Path(__file__).parent / "fixtures" / "flowroute"
ACCESS_KEY = CARRIER.fields["access_key"]
SECRET_KEY = CARRIER.fields["secret_key"]
TOKEN = CARRIER.fields["webhook_token"]


make_provider = CARRIER.make


def hook(body: bytes, token: str | None = TOKEN) -> WebhookRequest:
    return WebhookRequest("POST", f"{PUBLIC}/webhooks/fr/{token}",
                          {"Content-Type": "application/vnd.api+json"}, [], body, "127.0.0.1",
                          path_token=token)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


send = CARRIER.send


def accepted(mdr: str = "mdr2-39cadeace66e11e7aff806cd7f24ba2d") -> CannedResponse:
    return CannedResponse(202, {"data": {
        "id": mdr, "type": "message",
        "links": {"self": f"https://api.flowroute.com/v2.2/messages/{mdr}"}}})


# --- sending ---------------------------------------------------------------------------------


async def test_send_sms_is_the_documented_request():
    result, (req,) = await send(OutboundSms(1, "+12065550101", "+12065551234", "héllo 😀"),
                                accepted())
    assert result == Sent("mdr2-39cadeace66e11e7aff806cd7f24ba2d")
    assert req.method == "POST"
    assert req.path == "/v2.2/messages"
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(
        f"{ACCESS_KEY}:{SECRET_KEY}".encode()).decode()
    assert req.content_type == "application/vnd.api+json"
    assert req.json() == {"data": {"type": "message", "attributes": {
        "to": "+12065551234", "from": "+12065550101", "body": "héllo 😀",
        "dlr_callback": f"{PUBLIC}/webhooks/fr/{TOKEN}"}}}


async def test_send_mms_is_the_documented_request():
    msg = OutboundSms(2, "+12065550101", "+12065551234", "",
                      (MediaRef("https://bridge.example.com/media/a.jpg", "image/jpeg"),))
    result, (req,) = await send(msg, accepted("mdr2-mms"))
    assert result == Sent("mdr2-mms")
    assert req.json() == {"data": {"type": "message", "attributes": {
        "to": "+12065551234", "from": "+12065550101",
        "media_urls": ["https://bridge.example.com/media/a.jpg"], "is_mms": True}}}


async def test_mms_with_text_keeps_the_body():
    msg = OutboundSms(3, "+12065550101", "+12065551234", "caption",
                      (MediaRef("https://bridge.example.com/media/a.jpg"),))
    _, (req,) = await send(msg, accepted())
    assert req.json()["data"]["attributes"]["body"] == "caption"


async def test_digits_number_format():
    _, (req,) = await send(OutboundSms(4, "+12065550101", "+12065551234", "x"), accepted(),
                           number_format="digits", delivery_reports=False)
    assert req.json()["data"]["attributes"] == {"to": "12065551234", "from": "12065550101",
                                                "body": "x"}


# --- webhooks --------------------------------------------------------------------------------


def test_inbound_sms():
    provider = make_provider()
    req = hook(fixture("inbound_sms.json"))
    provider.verify(req)
    assert provider.parse(req) == [InboundMessage(
        "mdr2-39cadeace66e11e7aff806cd7f24ba2d", "+12065550101", "+12065551234",
        "Hello, are you there?")]


def test_inbound_mms_with_null_body():
    provider = make_provider()
    req = hook(fixture("inbound_mms.json"))
    provider.verify(req)
    (event,) = provider.parse(req)
    assert event.text == ""
    assert event.media == (MediaRef(
        "https://s3.us-west-2.amazonaws.com/flowroute-messaging-media/c8f4a9e2-1",
        "image/png", 14832),)


def test_plain_json_content_is_parsed_too():
    req = WebhookRequest("POST", f"{PUBLIC}/webhooks/fr/{TOKEN}",
                         {"Content-Type": "application/json"}, [], fixture("inbound_sms.json"),
                         "127.0.0.1", path_token=TOKEN)
    assert len(make_provider().parse(req)) == 1


# What this account's receipts say, as the operator would configure it: Flowroute documents
# no status values (the adapter's docstring says where its facts end).
STATES = {"smsc submit": "sent", "delivered": "delivered", "undeliverable": "failed"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dlr_level1.json", DeliveryReport("mdr2-ca82be46e6ba11e79d08862d5acd2fc7", State.SENT,
                                           carrier_status="smsc submit")),
        ("dlr_delivered.json", DeliveryReport("mdr2-ca82be46e6ba11e79d08862d5acd2fc7",
                                              State.DELIVERED, carrier_status="delivered")),
        ("dlr_failed.json", DeliveryReport(
            "mdr2-ca82be46e6ba11e79d08862d5acd2fc7", State.FAILED,
            carrier_status="undeliverable",
            error="1008: Carrier rejected: unknown subscriber")),
    ],
)
def test_delivery_receipts_parse_as_the_operator_mapped_them(name, expected):
    provider = make_provider(dlr_states=STATES)
    req = hook(fixture(name))
    provider.verify(req)
    assert provider.parse(req) == [expected]


@pytest.mark.parametrize("name", ["dlr_level1.json", "dlr_delivered.json", "dlr_failed.json"])
def test_undocumented_statuses_are_not_guessed(name):
    """No status value is documented: without dlr_states a receipt is no news."""
    assert make_provider().parse(hook(fixture(name))) == []


@pytest.mark.parametrize(
    ("status", "level", "state"),
    [
        ("delivered", 2, State.DELIVERED),
        ("DELIVERED", "2", State.DELIVERED),
        ("delivered", 1, State.SENT),  # level 1: only handed to the carrier
        ("undeliverable", 1, State.FAILED),
        ("smsc submit", 1, State.SENT),
        ("message buffered", 2, None),  # not mapped
    ],
)
def test_dlr_states_follow_the_mapping_and_the_level(status, level, state):
    assert classify_dlr(status, level, STATES) is state


def test_unknown_document_types_are_ignored():
    body = json.dumps({"data": {"type": "number", "id": "12065551234",
                                "attributes": {}}}).encode()
    assert make_provider().parse(hook(body)) == []


# --- webhook auth: the URL path token --------------------------------------------------------


def test_webhook_token_is_required_by_the_adapter():
    assert FlowrouteProvider.requires_webhook_token
    provider = make_provider(webhook_token=None)
    with pytest.raises(WebhookUnauthorized):
        provider.verify(hook(fixture("inbound_sms.json"), token=None))
    with pytest.raises(WebhookUnauthorized):
        provider.verify(hook(fixture("inbound_sms.json"), token="anything"))


@pytest.mark.parametrize("token", [None, "", "wrong", TOKEN + "x", TOKEN[:-1]])
def test_wrong_or_missing_token_is_refused(token):
    with pytest.raises(WebhookUnauthorized):
        make_provider().verify(hook(fixture("inbound_sms.json"), token=token))


def test_right_token_is_accepted():
    make_provider().verify(hook(fixture("inbound_sms.json")))


def test_secrets_stay_out_of_reprs():
    cfg = make_provider().config
    for secret in (SECRET_KEY, TOKEN):
        assert secret not in repr(cfg)
        assert secret not in str(cfg.model_dump())
    assert TOKEN not in make_provider().webhook_url(masked=True)


# --- hostile bodies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe garbage",
        b"not json",
        b"[]",
        b"{}",
        b'{"data": []}',
        b'{"data": {"type": "message"}}',
        b'{"data": {"type": "message", "id": 5, "attributes": {}}}',
        b'{"data": {"type": ["message"], "id": "x", "attributes": {}}}',
        b'{"data": {"type": "message", "id": "x"}}',
        b'{"data": {"type": "message", "id": "x", "attributes": "a"}}',
        b'{"data": {"type": "message", "id": "x", "attributes": {"from": "12065550101"}}}',
        b'{"data": {"type": "message", "id": "x", "attributes": '
        b'{"from": "nobody", "to": "12065551234"}}}',
        b'{"data": {"type": "message", "id": "x", "attributes": '
        b'{"from": 12065550101, "to": "12065551234"}}}',
        b'{"data": {"type": "message", "id": "x", "attributes": '
        b'{"from": "12065550101", "to": "12065551234", "body": {"a": 1}}}}',
        b'{"data": {"type": "message", "id": "x", "attributes": '
        b'{"from": "12065550101", "to": "12065551234"}}, "included": {"a": 1}}',
        b'{"data": {"type": "message", "id": "x", "attributes": '
        b'{"from": "12065550101", "to": "12065551234"}}, "included": ["a"]}',
        b'{"data": {"type": "message", "id": "x", "attributes": '
        b'{"from": "12065550101", "to": "12065551234"}}, '
        b'"included": [{"type": "media", "attributes": {"url": 7}}]}',
        b'{"data": {"type": "message", "id": "x", "attributes": '
        b'{"from": "12065550101", "to": "12065551234"}}, '
        b'"included": [{"type": "media"}]}',
        b'{"data": {"type": "delivery_receipt", "id": "mdr2-x", "attributes": {}}}',
        b'{"data": {"type": "delivery_receipt", "id": "mdr2-x", "attributes": {"status": 3}}}',
    ],
)
def test_hostile_bodies_are_malformed(body):
    with pytest.raises(WebhookMalformed):
        make_provider().parse(hook(body))
