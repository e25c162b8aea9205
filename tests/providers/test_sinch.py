"""Sinch adapter: the batches it sends, the callbacks it accepts, signed by Sinch's own SDK."""

from __future__ import annotations

import base64
import json
import time

import pytest
from pydantic import ValidationError
from sinch.domains.authentication.sinch_events.v1.authentication_validation import (
    calculate_sinch_event_signature,
    compute_signed_data,
)
from sinch.domains.sms.sinch_events.v1.sms_sinch_event import SmsSinchEvent

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
from bridge.providers.sinch import sinch_signature
from tests.carrier_server import CannedResponse, CarrierServer, send_once
from tests.providers.carriers import SINCH as CARRIER
from tests.providers.harness import PUBLIC

PLAN = CARRIER.fields["service_plan_id"]
TOKEN = CARRIER.fields["api_token"]
HMAC_SECRET = CARRIER.fields["webhook_secret"]
BATCH = {"id": "01FC66621XXXXX119Z8PMV1QPQ", "to": ["+14155550199"], "from": "+14155550100",
         "canceled": False, "body": "hi", "type": "mt_text",
         "created_at": "2024-06-06T09:22:14.304Z", "modified_at": "2024-06-06T09:22:14.304Z",
         "delivery_report": "per_recipient", "expire_at": "2024-06-09T09:22:14.304Z",
         "flash_message": False}


make_provider = CARRIER.make


send_via = send_once


def test_region_picks_the_documented_host():
    assert make_provider().api_base == "https://us.sms.api.sinch.com"
    assert make_provider(region="eu").api_base == "https://eu.sms.api.sinch.com"


async def test_sms_send_is_the_documented_request():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(201, BATCH))
        result = await send_via(make_provider(srv.url),
                                OutboundSms(5, "+14155550100", "+14155550199", "héllo 😀"))
    assert result == Sent("01FC66621XXXXX119Z8PMV1QPQ")
    (req,) = srv.requests
    assert (req.method, req.path) == ("POST", f"/xms/v1/{PLAN}/batches")
    assert req.content_type == "application/json"
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    assert req.json() == {"to": ["+14155550199"], "from": "+14155550100", "type": "mt_text",
                          "body": "héllo 😀", "client_reference": "5",
                          "delivery_report": "per_recipient",
                          "callback_url": f"{PUBLIC}/webhooks/sn"}


async def test_mms_send_is_one_media_batch_per_item():
    media = (MediaRef("https://cdn.example.com/a.jpg", "image/jpeg"),
             MediaRef("https://cdn.example.com/b.png"))
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(201, dict(BATCH, id="B1", type="mt_media")),
                    CannedResponse(201, dict(BATCH, id="B2", type="mt_media")))
        result = await send_via(make_provider(srv.url, status_callback=False),
                                OutboundSms(6, "+14155550100", "+14155550199", "pics", media))
    assert result == Sent("B1", "2 parts", ("B1", "B2"))
    first, second = (r.json() for r in srv.requests)
    assert first == {"to": ["+14155550199"], "from": "+14155550100", "type": "mt_media",
                     "client_reference": "6",
                     "body": {"url": "https://cdn.example.com/a.jpg", "message": "pics"}}
    assert second["body"] == {"url": "https://cdn.example.com/b.png"}


async def test_mms_stops_at_the_first_failure_and_reports_the_parts_sent():
    media = (MediaRef("https://cdn.example.com/a.jpg"), MediaRef("https://cdn.example.com/b.jpg"))
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(201, dict(BATCH, id="B1")),
                    CannedResponse(400, {"code": "syntax_invalid_parameter_format",
                                         "text": "Invalid media url"}))
        result = await send_via(make_provider(srv.url),
                                OutboundSms(6, "+14155550100", "+14155550199", "", media))
    assert isinstance(result, SendFailed) and not result.retryable
    assert result.accepted_parts == ("B1",)
    assert result.reason.startswith("part 2 of 2 refused (1 sent): ")
    assert "Invalid media url" in result.reason


# --- callbacks -------------------------------------------------------------------------------

MO_TEXT = {"id": "01W4FFL35P4NC4K35SMSBATCH8", "type": "mo_text", "from": "12015555555",
           "to": "12017777777", "body": "Hello John! 👋", "operator_id": "311071",
           "received_at": "2024-06-06T07:52:37.386Z"}
MO_MEDIA = {"id": "01W4FFL35P4NC4K35SMSBATCH9", "type": "mo_media", "from": "12015555555",
            "to": "12017777777", "received_at": "2024-06-06T07:52:37.386Z",
            "body": {"subject": "Pics", "message": "Look at this",
                     "media": [{"url": "https://media.example.com/1.jpg",
                                "content_type": "image/jpeg", "status": "Uploaded", "code": 0},
                               {"content_type": "video/mp4", "status": "Failed", "code": 1}]}}
RECIPIENT_DLR = {"at": "2024-06-06T09:22:18.304Z", "batch_id": "01FC66621XXXXX119Z8PMV1QPQ",
                 "code": 0, "operator_status_at": "2024-06-06T09:22:17.000Z",
                 "recipient": "+14155550199", "status": "Delivered",
                 "type": "recipient_delivery_report_sms", "client_reference": "5"}
BATCH_DLR = {"batch_id": "01FC66621XXXXX119Z8PMV1QPQ", "type": "delivery_report_sms",
             "total_message_count": 1,
             "statuses": [{"code": 0, "count": 1, "status": "Delivered",
                           "recipients": ["14155550199"]}]}


def signed_request(data: object, *, secret: str = HMAC_SECRET, stamp: int | None = None,
                   body: bytes | None = None, headers: dict | None = None) -> WebhookRequest:
    raw = json.dumps(data, ensure_ascii=False).encode()
    nonce, ts = "01FJA8B4A7BM43YGWSG9GBV067", str(stamp or int(time.time()))
    signature = calculate_sinch_event_signature(compute_signed_data(raw.decode(), nonce, ts),
                                                secret)
    hdrs = {"Content-Type": "application/json", "x-sinch-webhook-signature": signature,
            "x-sinch-webhook-signature-nonce": nonce, "x-sinch-webhook-signature-timestamp": ts,
            "x-sinch-webhook-signature-algorithm": "HmacSHA256", **(headers or {})}
    return WebhookRequest("POST", f"{PUBLIC}/webhooks/sn", hdrs, [],
                          raw if body is None else body, "127.0.0.1")


@pytest.mark.parametrize("fixture", [MO_TEXT, MO_MEDIA, RECIPIENT_DLR, BATCH_DLR])
def test_fixtures_are_valid_for_the_sdk(fixture):
    event = SmsSinchEvent(HMAC_SECRET)
    req = signed_request(fixture)
    assert event.validate_authentication_header(dict(req.headers), req.body)
    event.parse_event(req.body)  # raises if the fixture is not a shape Sinch sends


def test_signature_helper_agrees_with_sdk():
    body = json.dumps(MO_TEXT, ensure_ascii=False)
    assert sinch_signature(HMAC_SECRET, body.encode(), "n", "1700000000") == (
        calculate_sinch_event_signature(compute_signed_data(body, "n", "1700000000"),
                                        HMAC_SECRET))


def test_mo_text_parses():
    provider = make_provider()
    req = signed_request(MO_TEXT)
    provider.verify(req)
    assert provider.parse(req) == [InboundMessage(
        "01W4FFL35P4NC4K35SMSBATCH8", "+12015555555", "+12017777777", "Hello John! 👋")]


def test_mo_media_parses_and_drops_failed_uploads():
    provider = make_provider()
    req = signed_request(MO_MEDIA)
    provider.verify(req)
    assert provider.parse(req) == [InboundMessage(
        "01W4FFL35P4NC4K35SMSBATCH9", "+12015555555", "+12017777777", "Pics\nLook at this",
        (MediaRef("https://media.example.com/1.jpg", "image/jpeg"),))]


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        ("Delivered", 0, DeliveryReport("01FC66621XXXXX119Z8PMV1QPQ", State.DELIVERED,
                                        "Delivered")),
        ("DISPATCHED", 401, DeliveryReport("01FC66621XXXXX119Z8PMV1QPQ", State.SENT,
                                           "DISPATCHED")),
        ("Failed", 402, DeliveryReport("01FC66621XXXXX119Z8PMV1QPQ", State.FAILED, "Failed",
                                       "402")),
        ("Expired", 406, DeliveryReport("01FC66621XXXXX119Z8PMV1QPQ", State.FAILED, "Expired",
                                        "406")),
        ("Queued", 400, None),
    ],
)
def test_recipient_delivery_reports_parse(status, code, expected):
    provider = make_provider()
    req = signed_request(dict(RECIPIENT_DLR, status=status, code=code))
    provider.verify(req)
    assert provider.parse(req) == ([expected] if expected else [])


def test_batch_delivery_report_parses():
    provider = make_provider()
    failed = dict(BATCH_DLR, statuses=[
        {"code": 0, "count": 1, "status": "Delivered"},
        {"code": 402, "count": 1, "status": "Failed"}])
    assert provider.parse(signed_request(BATCH_DLR)) == [
        DeliveryReport("01FC66621XXXXX119Z8PMV1QPQ", State.DELIVERED, "Delivered")]
    assert provider.parse(signed_request(failed)) == [
        DeliveryReport("01FC66621XXXXX119Z8PMV1QPQ", State.FAILED, "Failed", "402")]
    queued = dict(BATCH_DLR, statuses=[{"code": 400, "count": 1, "status": "Queued"}])
    assert provider.parse(signed_request(queued)) == []


@pytest.mark.parametrize("tamper", ["wrong_key", "body", "missing", "no_nonce", "stale",
                                    "future", "algorithm", "bad_timestamp"])
def test_bad_signatures_are_refused(tamper):
    provider = make_provider()
    if tamper == "wrong_key":
        req = signed_request(MO_TEXT, secret="some-other-secret-0123456789")
    elif tamper == "body":
        req = signed_request(MO_TEXT, body=json.dumps(dict(MO_TEXT, body="Send money")).encode())
    elif tamper == "stale":  # a replay of a callback signed ten minutes ago
        req = signed_request(MO_TEXT, stamp=int(time.time()) - 600)
    elif tamper == "future":
        req = signed_request(MO_TEXT, stamp=int(time.time()) + 600)
    elif tamper == "algorithm":
        req = signed_request(MO_TEXT, headers={"x-sinch-webhook-signature-algorithm": "HmacMD5"})
    else:
        req = signed_request(MO_TEXT)
        headers = dict(req.headers)
        if tamper == "missing":
            del headers["x-sinch-webhook-signature"]
        elif tamper == "no_nonce":
            del headers["x-sinch-webhook-signature-nonce"]
        else:
            headers["x-sinch-webhook-signature-timestamp"] = "yesterday"
        req = WebhookRequest(req.method, req.url, headers, [], req.body, req.remote)
    with pytest.raises(WebhookUnauthorized):
        provider.verify(req)


def basic_request(user: str, password: str, **kw) -> WebhookRequest:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return WebhookRequest("POST", f"{PUBLIC}/webhooks/sn",
                          {"Content-Type": "application/json", "Authorization": f"Basic {token}"},
                          [], json.dumps(MO_TEXT).encode(), "127.0.0.1", **kw)


def test_basic_auth_callbacks():
    provider = make_provider(webhook_secret=None, webhook_username="sinch",
                             webhook_password="callback-password")
    provider.verify(basic_request("sinch", "callback-password"))
    for user, password in (("sinch", "wrong"), ("other", "callback-password")):
        with pytest.raises(WebhookUnauthorized):
            provider.verify(basic_request(user, password))
    with pytest.raises(WebhookUnauthorized):
        provider.verify(WebhookRequest("POST", f"{PUBLIC}/webhooks/sn", {}, [], b"{}",
                                       "127.0.0.1"))


def test_unauthenticated_setup_requires_the_url_token():
    with pytest.raises(ValidationError):
        make_provider(webhook_secret=None)
    provider = make_provider(webhook_secret=None, webhook_token="tok-123456")
    body = json.dumps(MO_TEXT).encode()
    for token in (None, "wrong"):
        with pytest.raises(WebhookUnauthorized):
            provider.verify(WebhookRequest("POST", f"{PUBLIC}/webhooks/sn", {}, [], body,
                                           "127.0.0.1", path_token=token))
    provider.verify(WebhookRequest("POST", f"{PUBLIC}/webhooks/sn", {}, [], body, "127.0.0.1",
                                   path_token="tok-123456"))


@pytest.mark.parametrize(
    "data",
    [b"\x00\xffgarbage", b"[]", b'"mo_text"', b"{}", json.dumps({"type": 7}).encode(),
     json.dumps(dict(MO_TEXT, body={"x": 1})).encode(),
     json.dumps(dict(MO_TEXT, id=None)).encode(),
     json.dumps(dict(MO_TEXT, to=12017777777)).encode(),
     json.dumps(dict(MO_TEXT, **{"from": "not-a-number"})).encode(),
     json.dumps(dict(MO_MEDIA, body="text")).encode(),
     json.dumps(dict(MO_MEDIA, body={"media": "x"})).encode(),
     json.dumps(dict(MO_MEDIA, body={"media": ["x"]})).encode(),
     json.dumps(dict(RECIPIENT_DLR, batch_id=None)).encode(),
     json.dumps(dict(BATCH_DLR, statuses={"status": "Delivered"})).encode(),
     json.dumps(dict(BATCH_DLR, statuses=[{"count": 1}])).encode()],
)
def test_hostile_bodies_are_malformed(data):
    provider = make_provider()
    req = WebhookRequest("POST", f"{PUBLIC}/webhooks/sn", {"Content-Type": "application/json"},
                         [], data, "127.0.0.1")
    with pytest.raises(WebhookMalformed):
        provider.parse(req)


def test_binary_and_unknown_events_are_ignored():
    provider = make_provider()
    for kind in ("mo_binary", "something_new"):
        req = signed_request(dict(MO_TEXT, type=kind, udh="050003010201"))
        assert provider.parse(req) == []


def test_secrets_stay_out_of_reprs():
    provider = make_provider(webhook_username="u", webhook_password="callback-password")
    text = repr(provider.config) + repr(provider)
    assert TOKEN not in text and HMAC_SECRET not in text and "callback-password" not in text
