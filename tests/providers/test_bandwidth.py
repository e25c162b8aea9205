"""Bandwidth adapter: the request it sends, the callbacks it accepts.

Bandwidth callbacks carry no signature, only the HTTP Basic credentials set on the application,
so there is nothing for an SDK to sign. The official ``bandwidth-sdk`` models (generated from
Bandwidth's OpenAPI) are used instead to check that our request body and the documented
callback examples we test against match the published schema.
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
from bridge.providers.bandwidth import BandwidthProvider
from bridge.providers.base import WebhookMalformed, WebhookRequest, WebhookUnauthorized
from tests.carrier_server import CannedResponse
from tests.providers.carriers import BANDWIDTH as CARRIER
from tests.providers.harness import PUBLIC

FIXTURES = Path(__file__).parent / "fixtures" / "bandwidth"
ACCOUNT = CARRIER.fields["account_id"]
APP_ID = CARRIER.fields["application_id"]
API_USER = CARRIER.fields["username"]
API_PASSWORD = CARRIER.fields["password"]
HOOK_USER = CARRIER.fields["webhook_username"]
HOOK_PASSWORD = CARRIER.fields["webhook_password"]


make_provider = CARRIER.make


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def callback(body: bytes, authorization: str | None = None, *, path_token=None):
    headers = {"Content-Type": "application/json; charset=utf-8",
               "User-Agent": "BandwidthAPI/v2"}
    if authorization is None:
        authorization = basic(HOOK_USER, HOOK_PASSWORD)
    if authorization:
        headers["Authorization"] = authorization
    return WebhookRequest("POST", f"{PUBLIC}/webhooks/bw", headers, [], body, "127.0.0.1",
                          path_token=path_token)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture(scope="module")
def bw_models():
    # the official SDK is a test dependency: its absence is a failure, never a skip
    from bandwidth.models.inbound_callback import InboundCallback
    from bandwidth.models.message_request import MessageRequest
    from bandwidth.models.status_callback import StatusCallback

    return MessageRequest, InboundCallback, StatusCallback


send = CARRIER.send


def accepted(message_id: str = "14762070468292kw2fuqty55yp2b2", **fields) -> CannedResponse:
    body = {"id": message_id, "owner": "+12345678901", "applicationId": APP_ID,
            "time": "2021-07-21T21:00:45.179Z", "segmentCount": 1, "direction": "out",
            "to": ["+12345678902"], "from": "+12345678901", "text": "Hello World",
            "tag": "test message", "priority": "default", **fields}
    return CannedResponse(202, body)


# --- sending ---------------------------------------------------------------------------------


async def test_send_sms_is_the_documented_request(bw_models):
    message_request, _, _ = bw_models
    result, (req,) = await send(OutboundSms(3, "+12345678901", "+12345678902", "héllo 😀"),
                                accepted())
    assert result == Sent("14762070468292kw2fuqty55yp2b2")
    assert req.method == "POST"
    assert req.path == f"/api/v2/users/{ACCOUNT}/messages"
    assert req.headers["Authorization"] == basic(API_USER, API_PASSWORD)
    assert req.content_type == "application/json"
    assert req.json() == {"applicationId": APP_ID, "to": ["+12345678902"],
                          "from": "+12345678901", "text": "héllo 😀",
                          "tag": "sip-sms-bridge:3"}
    parsed = message_request.from_json(req.body.decode())
    assert parsed.to == ["+12345678902"] and parsed.var_from == "+12345678901"


async def test_send_mms_is_the_documented_request(bw_models):
    message_request, _, _ = bw_models
    msg = OutboundSms(4, "+12345678901", "+12345678902", "Hey, check this out!",
                      (MediaRef("https://bridge.example.com/media/test_image.jpg", "image/jpeg"),))
    result, (req,) = await send(msg, accepted("mms-1"))
    assert result == Sent("mms-1")
    assert req.json() == {"applicationId": APP_ID, "to": ["+12345678902"],
                          "from": "+12345678901", "text": "Hey, check this out!",
                          "media": ["https://bridge.example.com/media/test_image.jpg"],
                          "tag": "sip-sms-bridge:4"}
    assert message_request.from_json(req.body.decode()).media == [
        "https://bridge.example.com/media/test_image.jpg"]


async def test_media_only_message_has_no_text():
    msg = OutboundSms(5, "+12345678901", "+12345678902", "",
                      (MediaRef("https://bridge.example.com/media/a.png"),))
    _, (req,) = await send(msg, accepted())
    assert "text" not in req.json()


async def test_text_over_2048_characters_is_sent_in_parts():
    text = " ".join(["word"] * 1000)  # 4,999 characters
    result, reqs = await send(
        OutboundSms(6, "+12345678901", "+12345678902", text,
                    (MediaRef("https://bridge.example.com/media/a.png"),)),
        accepted("p1"), accepted("p2"), accepted("p3"))
    assert result == Sent("p1", "3 parts", ("p1", "p2", "p3"))
    sent = [r.json() for r in reqs]
    assert all(len(b["text"]) <= 2048 for b in sent)
    assert " ".join(b["text"] for b in sent) == text
    assert "media" in sent[0] and all("media" not in b for b in sent[1:])


# --- callbacks -------------------------------------------------------------------------------


def test_fixtures_match_the_published_schema(bw_models):
    _, inbound_callback, status_callback = bw_models
    for name in ("inbound_sms.json", "inbound_group_mms.json"):
        for event in json.loads(fixture(name)):
            inbound_callback.from_dict(event)
    for name in ("message_sending.json", "message_delivered.json", "message_failed.json"):
        for event in json.loads(fixture(name)):
            status_callback.from_dict(event)


def test_inbound_sms_from_the_documented_example():
    provider = make_provider()
    req = callback(fixture("inbound_sms.json"))
    provider.verify(req)
    assert provider.parse(req) == [InboundMessage(
        "14762070468292kw2fuqty55yp2b2", "+12345678901", "+12345678902",
        "Hey, check this out!")]


def test_inbound_group_mms():
    provider = make_provider()
    req = callback(fixture("inbound_group_mms.json"))
    provider.verify(req)
    (event,) = provider.parse(req)
    assert event.to_number == "+12345678902"  # our number: the event's "to" / the owner
    assert event.media == (MediaRef(
        "https://messaging.bandwidth.com/api/v2/users/{accountId}/media/"
        "14762070468292kw2fuqty55yp2b2/0/bw.png"),)


def test_a_single_object_body_is_accepted_too():
    (event,) = json.loads(fixture("inbound_sms.json"))
    req = callback(json.dumps(event).encode())
    assert len(make_provider().parse(req)) == 1


def test_several_events_in_one_callback():
    events = json.loads(fixture("message_delivered.json")) + json.loads(
        fixture("inbound_sms.json"))
    parsed = make_provider().parse(callback(json.dumps(events).encode()))
    assert [type(e).__name__ for e in parsed] == ["DeliveryReport", "InboundMessage"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("message_sending.json", []),
        ("message_delivered.json", [DeliveryReport(
            "14762070468292kw2fuqty55yp2b2", State.DELIVERED,
            carrier_status="message-delivered")]),
        ("message_failed.json", [DeliveryReport(
            "14762070468292kw2fuqty55yp2b2", State.FAILED, carrier_status="message-failed",
            error="4432: forbidden to country")]),
    ],
)
def test_status_callbacks_parse(name, expected):
    provider = make_provider()
    req = callback(fixture(name))
    provider.verify(req)
    assert provider.parse(req) == expected


def test_message_sent_and_read():
    (event,) = json.loads(fixture("message_delivered.json"))
    for kind, state in (("message-sent", State.SENT), ("message-read", State.DELIVERED)):
        body = json.dumps([{**event, "type": kind}]).encode()
        (report,) = make_provider().parse(callback(body))
        assert report.state is state


def test_opt_out_code_is_declared():
    assert "4775" in BandwidthProvider.opt_out_codes


# --- webhook auth ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        "",  # missing
        basic(HOOK_USER, "wrong"),
        basic("someone", HOOK_PASSWORD),
        basic(API_USER, API_PASSWORD),  # the API credentials are not the callback ones
        "Bearer " + base64.b64encode(f"{HOOK_USER}:{HOOK_PASSWORD}".encode()).decode(),
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Basic",
    ],
)
def test_bad_credentials_are_refused(authorization):
    with pytest.raises(WebhookUnauthorized):
        make_provider().verify(callback(fixture("inbound_sms.json"), authorization))


def test_lowercase_authorization_header_works():
    req = callback(fixture("inbound_sms.json"))
    headers = {k.lower(): v for k, v in req.headers.items()}
    make_provider().verify(WebhookRequest("POST", req.url, headers, [], req.body, req.remote))


def test_url_token_is_checked_when_configured():
    provider = make_provider(webhook_token="s3cret-path-token")
    with pytest.raises(WebhookUnauthorized):
        provider.verify(callback(fixture("inbound_sms.json")))
    with pytest.raises(WebhookUnauthorized):
        provider.verify(callback(fixture("inbound_sms.json"), path_token="nope"))
    provider.verify(callback(fixture("inbound_sms.json"), path_token="s3cret-path-token"))


def test_secrets_stay_out_of_reprs():
    cfg = make_provider().config
    for secret in (API_PASSWORD, HOOK_PASSWORD):
        assert secret not in repr(cfg)
        assert secret not in str(cfg.model_dump())


# --- hostile bodies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe garbage",
        b"not json",
        b'"a string"',
        b"[1, 2]",
        b"[{}]",
        b'[{"type": "message-received"}]',
        b'[{"type": "message-received", "message": []}]',
        b'[{"type": 5, "message": {"id": "x"}}]',
        b'[{"type": "message-received", "message": {"id": 7}}]',
        b'[{"type": "message-received", "message": {"id": "x", "from": "+12345678901"}}]',
        b'[{"type": "message-received", "to": "+12345678902", '
        b'"message": {"id": "x", "from": "nobody"}}]',
        b'[{"type": "message-received", "to": "+12345678902", '
        b'"message": {"id": "x", "from": 12345678901}}]',
        b'[{"type": "message-received", "to": "+12345678902", '
        b'"message": {"id": "x", "from": "+12345678901", "text": 5}}]',
        b'[{"type": "message-received", "to": "+12345678902", '
        b'"message": {"id": "x", "from": "+12345678901", "media": "http://x"}}]',
        b'[{"type": "message-received", "to": "+12345678902", '
        b'"message": {"id": "x", "from": "+12345678901", "media": [null]}}]',
        b'[{"type": "message-delivered", "message": {}}]',
    ],
)
def test_hostile_bodies_are_malformed(body):
    with pytest.raises(WebhookMalformed):
        make_provider().parse(callback(body))
