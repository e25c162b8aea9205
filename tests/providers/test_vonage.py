"""Vonage adapter: SMS API and Messages API requests, webhooks signed by Vonage's own SDK."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from urllib.parse import urlencode

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError
from vonage_http_client.auth import Auth
from vonage_jwt import verify_signature

from bridge.model import (
    DeliveryReport,
    InboundMessage,
    MediaRef,
    OutboundSms,
    PartInfo,
    SendFailed,
    Sent,
    State,
)
from bridge.providers.base import WebhookMalformed, WebhookRequest, WebhookUnauthorized
from bridge.providers.vonage import VonageProvider, vonage_sms_signature
from tests.carrier_server import CannedResponse, CarrierServer, send_once
from tests.providers.carriers import VONAGE as CARRIER
from tests.providers.harness import PUBLIC

KEY = CARRIER.fields["api_key"]
SECRET = CARRIER.fields["api_secret"]
SIG_SECRET = CARRIER.fields["signature_secret"]
APP_ID = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
SMS_OK = {"message-count": "1", "messages": [{
    "to": "447700900000", "message-id": "0A0000000123ABCD1", "status": "0",
    "remaining-balance": "3.14159265", "message-price": "0.03330000", "network": "12345"}]}


make_provider = CARRIER.make


@pytest.fixture(scope="module")
def rsa_pem() -> tuple[str, object]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return pem, key.public_key()


send_via = send_once


# --- SMS API signatures ----------------------------------------------------------------------

def test_signature_matches_sdk_test_vectors():
    params = {"param1": "value1", "param2": "value2", "timestamp": 1234567890}
    assert vonage_sms_signature(params, "signature_secret", "sha256") == (
        "280c4320703dbc98bfa22db676655ed2acfbfe8792b062ff7622e67f1183c287")
    assert vonage_sms_signature(params, "signature_secret", "md5") == (
        "724c2bf6ca423c36e20631b11d1c5753")
    special = {"param1": "value&1", "param2": "value=2", "timestamp": 1234567890}
    assert vonage_sms_signature(special, "signature_secret", "md5") == (
        "2bbf0abafb2c55e5af6231513896a2ac")
    # Legacy "MD5 hash" (vonage-python-sdk 3.x test_signature): md5(pairs + secret).
    legacy = {"a": "1", "b": "2", "timestamp": "1461605396"}
    assert vonage_sms_signature(legacy, "secret", "md5hash") == "6af838ef94998832dbfc29020b564830"


@pytest.mark.parametrize("method", ["md5", "sha1", "sha256", "sha512"])
def test_signature_agrees_with_sdk(method):
    params = {"msisdn": "447700900001", "to": "447700900000", "text": "a=b & c",
              "messageId": "0A0000000123ABCD1", "timestamp": "1578787200", "nonce": "n-1"}
    expected = Auth(api_key=KEY, signature_secret=SIG_SECRET,
                    signature_method=method).sign_params(dict(params))
    assert vonage_sms_signature(params, SIG_SECRET, method) == expected


# --- SMS API sending -------------------------------------------------------------------------

async def test_sms_send_is_the_documented_request():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, SMS_OK))
        result = await send_via(make_provider(srv.url),
                                OutboundSms(7, "+14155550100", "+447700900000", "héllo 😀"))
    assert result == Sent("0A0000000123ABCD1")
    (req,) = srv.requests
    assert (req.method, req.path) == ("POST", "/sms/json")
    assert req.content_type == "application/x-www-form-urlencoded"
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(
        f"{KEY}:{SECRET}".encode()).decode()
    form = dict(req.form())
    assert form == {"from": "14155550100", "to": "447700900000", "text": "héllo 😀",
                    "type": "unicode", "client-ref": "7", "status-report-req": "1",
                    "callback": f"{PUBLIC}/webhooks/vg"}


async def test_sms_send_gsm_text_and_alphanumeric_sender():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, SMS_OK))
        await send_via(make_provider(srv.url, status_callback=False),
                       OutboundSms(1, "+14155550100", "+447700900000", "hi", sender_id="AcmeInc"))
    form = dict(srv.requests[0].form())
    assert form["from"] == "AcmeInc" and form["type"] == "text"
    assert "callback" not in form and "status-report-req" not in form


async def test_sms_send_signed_with_signature_secret_is_valid_for_the_sdk():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, SMS_OK))
        await send_via(make_provider(srv.url, api_secret=None),
                       OutboundSms(1, "+14155550100", "+447700900000", "hi"))
    (req,) = srv.requests
    assert "Authorization" not in req.headers
    form = dict(req.form())
    assert form["api_key"] == KEY and "api_secret" not in form
    assert abs(int(form["timestamp"]) - time.time()) < 60
    auth = Auth(api_key=KEY, signature_secret=SIG_SECRET, signature_method="sha256")
    assert auth.check_signature(form)


async def test_sms_send_partial_acceptance_is_a_permanent_failure_naming_the_parts_sent():
    body = {"message-count": "2", "messages": [
        {"to": "447700900000", "message-id": "0A01", "status": "0"},
        {"to": "447700900000", "status": "1", "error-text": "Throttled"}]}
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, body))
        result = await send_via(make_provider(srv.url),
                                OutboundSms(1, "+14155550100", "+447700900000", "x" * 300))
    # Vonage split the text itself: the refused part cannot be sent again on its own
    assert isinstance(result, SendFailed) and not result.retryable
    assert result.accepted_parts == ("0A01",)
    assert result.reason.startswith("part 2 of 2 refused (1 sent): Vonage error 1: Throttled")


async def test_sms_api_refuses_mms_without_calling_vonage():
    async with CarrierServer() as srv:
        result = await send_via(make_provider(srv.url), OutboundSms(
            1, "+14155550100", "+14155550199", "x", (MediaRef("https://x/a.jpg"),)))
    assert isinstance(result, SendFailed) and not result.retryable
    assert srv.requests == []


# --- Messages API sending --------------------------------------------------------------------

async def test_messages_sms_send_with_jwt_is_the_documented_request(rsa_pem):
    pem, public_key = rsa_pem
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(202, {"message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"}))
        provider = make_provider(srv.url, api="messages", api_secret=None,
                                 application_id=APP_ID, private_key=pem)
        result = await send_via(provider, OutboundSms(3, "+14155550100", "+447700900000", "hi"))
    assert result == Sent("aaaaaaaa-bbbb-cccc-dddd-0123456789ab")
    (req,) = srv.requests
    assert (req.method, req.path, req.content_type) == ("POST", "/v1/messages", "application/json")
    scheme, token = req.headers["Authorization"].split(" ", 1)
    assert scheme == "Bearer"
    claims = jwt.decode(token, public_key, algorithms=["RS256"])
    assert claims["application_id"] == APP_ID and claims["exp"] > time.time()
    assert req.json() == {"channel": "sms", "message_type": "text", "to": "447700900000",
                          "from": "14155550100", "text": "hi", "client_ref": "3",
                          "webhook_url": f"{PUBLIC}/webhooks/vg", "webhook_version": "v1"}


async def test_messages_mms_sends_one_message_per_media_item():
    media = (MediaRef("https://cdn.example.com/a.jpg", "image/jpeg"),
             MediaRef("https://cdn.example.com/b.mp4", None))
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(202, {"message_uuid": "u-1"}),
                    CannedResponse(202, {"message_uuid": "u-2"}))
        provider = make_provider(srv.url, api="messages", status_callback=False)
        result = await send_via(provider, OutboundSms(4, "+14155550100", "+14155550199",
                                                      "look", media))
    assert result == Sent("u-1", "2 parts", ("u-1", "u-2"))
    first, second = (r.json() for r in srv.requests)
    assert srv.requests[0].headers["Authorization"].startswith("Basic ")
    assert first == {"channel": "mms", "message_type": "image", "to": "14155550199",
                     "from": "14155550100", "client_ref": "4",
                     "image": {"url": "https://cdn.example.com/a.jpg", "caption": "look"}}
    assert second["message_type"] == "video"
    assert second["video"] == {"url": "https://cdn.example.com/b.mp4"}


async def test_messages_bad_private_key_fails_without_leaking_it():
    key = "-----BEGIN PRIVATE KEY-----\nnot-a-key\n-----END PRIVATE KEY-----"
    async with CarrierServer() as srv:
        provider = make_provider(srv.url, api="messages", api_secret=None,
                                 application_id=APP_ID, private_key=key)
        result = await send_via(provider, OutboundSms(1, "+14155550100", "+447700900000", "x"))
    assert isinstance(result, SendFailed) and not result.retryable
    assert "not-a-key" not in result.reason and srv.requests == []


# --- SMS API webhooks ------------------------------------------------------------------------

def sdk_signed(params: dict[str, str], secret: str = SIG_SECRET, method: str = "sha256",
               timestamp: int | None = None) -> dict[str, str]:
    signed = dict(params, timestamp=str(timestamp or int(time.time())), nonce="n-42")
    signed["sig"] = Auth(api_key=KEY, signature_secret=secret,
                         signature_method=method).sign_params(dict(signed))
    return signed


def form_request(params: dict[str, str], method: str = "POST", **kw) -> WebhookRequest:
    if method == "GET":
        return WebhookRequest("GET", f"{PUBLIC}/webhooks/vg?{urlencode(params)}", {},
                              list(params.items()), b"", "127.0.0.1", **kw)
    return WebhookRequest("POST", f"{PUBLIC}/webhooks/vg",
                          {"Content-Type": "application/x-www-form-urlencoded"}, [],
                          urlencode(params).encode(), "127.0.0.1", **kw)


def json_request(data: object, headers: dict[str, str] | None = None, **kw) -> WebhookRequest:
    return WebhookRequest("POST", f"{PUBLIC}/webhooks/vg",
                          {"Content-Type": "application/json", **(headers or {})}, [],
                          json.dumps(data).encode(), "127.0.0.1", **kw)


INBOUND = {"msisdn": "447700900001", "to": "447700900000", "messageId": "0A0000000123ABCD1",
           "text": "Hello world", "type": "text", "keyword": "HELLO",
           "message-timestamp": "2020-01-01 12:00:00", "api-key": KEY}


@pytest.mark.parametrize("how", ["GET", "POST", "JSON"])
def test_inbound_sms_signed_by_sdk_parses(how):
    provider = make_provider()
    params = sdk_signed(INBOUND)
    req = json_request(params) if how == "JSON" else form_request(params, how)
    provider.verify(req)
    assert provider.parse(req) == [InboundMessage(
        "0A0000000123ABCD1", "+447700900001", "+447700900000", "Hello world")]


def test_inbound_legacy_md5_hash_signature_is_accepted():
    provider = make_provider(signature_method="md5hash")
    params = dict(INBOUND, timestamp=str(int(time.time())), nonce="n")
    params["sig"] = hashlib.md5(("".join(
        f"&{k}={params[k]}" for k in sorted(params)) + SIG_SECRET).encode()).hexdigest().upper()
    provider.verify(form_request(params))


def test_concatenated_inbound_parts_carry_part_info():
    provider = make_provider()
    events = []
    for index, text in ((2, "world"), (1, "Hello ")):
        params = sdk_signed(dict(INBOUND, messageId=f"0A0{index}", text=text, concat="true",
                                 **{"concat-ref": "108", "concat-total": "2",
                                    "concat-part": str(index)}))
        req = form_request(params)
        provider.verify(req)
        events.extend(provider.parse(req))
    assert [e.part for e in events] == [PartInfo("108", 2, 2), PartInfo("108", 1, 2)]
    assert [e.carrier_id for e in events] == ["0A02", "0A01"]


@pytest.mark.parametrize(
    ("status", "err", "expected"),
    [
        ("delivered", "0", DeliveryReport("0A0000001234567B", State.DELIVERED, "delivered")),
        ("accepted", "0", DeliveryReport("0A0000001234567B", State.SENT, "accepted")),
        ("failed", "9", DeliveryReport("0A0000001234567B", State.FAILED, "failed",
                                       "opted-out: err-code 9")),
        ("rejected", "9", DeliveryReport("0A0000001234567B", State.FAILED, "rejected",
                                         "opted-out: err-code 9")),
        ("expired", "1", DeliveryReport("0A0000001234567B", State.FAILED, "expired", "1")),
        ("unknown", "1", None),
    ],
)
def test_delivery_receipts_parse(status, err, expected):
    provider = make_provider()
    receipt = {"msisdn": "447700900000", "to": "AcmeInc", "network-code": "12345",
               "messageId": "0A0000001234567B", "price": "0.03330000", "status": status,
               "scts": "2001011400", "err-code": err, "api-key": KEY,
               "message-timestamp": "2020-01-01 12:00:00"}
    req = json_request(sdk_signed(receipt))
    provider.verify(req)
    assert provider.parse(req) == ([expected] if expected else [])


@pytest.mark.parametrize(("api", "cls"), [("sms", "VonageSmsProvider"),
                                          ("messages", "VonageMessagesProvider")])
def test_one_config_type_two_provider_classes(api, cls):
    provider = make_provider(api=api)
    assert type(provider).__name__ == cls and isinstance(provider, VonageProvider)
    assert provider.supports_mms is (api == "messages")


def test_opted_out_receipt_is_an_opt_out_code():
    """err-code 9 on a receipt (Vonage's opt-out guide) must reach the core as an opt-out."""
    from bridge.core import _error_code

    provider = make_provider()
    receipt = {"msisdn": "447700900000", "to": "AcmeInc", "messageId": "0A0000001234567B",
               "status": "failed", "err-code": "9", "api-key": KEY,
               "message-timestamp": "2020-01-01 12:00:00"}
    (report,) = provider.parse(json_request(sdk_signed(receipt)))
    assert _error_code(report.error) in provider.opt_out_codes
    assert "9" not in provider.opt_out_codes  # a send status 9 is a quota error, not STOP


@pytest.mark.parametrize("age", [600, 2 * 3600, 23 * 3600])
def test_a_retry_signed_when_vonage_first_pushed_is_accepted(age):
    """Vonage resends for 24 h with the first push's timestamp: a retry after an outage of
    the bridge is not refused for good."""
    provider = make_provider()
    req = form_request(sdk_signed(INBOUND, timestamp=int(time.time()) - age))
    provider.verify(req)
    assert provider.parse(req)


@pytest.mark.parametrize("tamper", ["wrong_key", "body", "missing", "stale", "future",
                                    "no_timestamp", "garbage"])
def test_bad_sms_signatures_are_refused(tamper):
    provider = make_provider()
    if tamper == "wrong_key":
        req = form_request(sdk_signed(INBOUND, secret="not-the-secret"))
    elif tamper == "body":
        req = form_request(dict(sdk_signed(INBOUND), text="Send money"))
    elif tamper == "missing":
        req = form_request(INBOUND)
    elif tamper == "stale":  # older than Vonage's 24 h of retries
        req = form_request(sdk_signed(INBOUND, timestamp=int(time.time()) - 86400 - 600))
    elif tamper == "future":  # ten minutes ahead of our clock
        req = form_request(sdk_signed(INBOUND, timestamp=int(time.time()) + 600))
    elif tamper == "no_timestamp":
        params = dict(INBOUND)
        params["sig"] = vonage_sms_signature(params, SIG_SECRET, "sha256")
        req = form_request(params)
    else:
        req = WebhookRequest("POST", f"{PUBLIC}/webhooks/vg",
                             {"Content-Type": "application/json"}, [], b"\xff{", "127.0.0.1")
    with pytest.raises(WebhookUnauthorized):
        provider.verify(req)


def test_unsigned_setup_requires_the_url_token():
    with pytest.raises(ValidationError):
        make_provider(signature_secret=None)
    provider = make_provider(signature_secret=None, webhook_token="tok-123456")
    for token in (None, "wrong"):
        with pytest.raises(WebhookUnauthorized):
            provider.verify(form_request(INBOUND, path_token=token))
    provider.verify(form_request(INBOUND, path_token="tok-123456"))


@pytest.mark.parametrize(
    "body",
    [b"\x00\xff garbage", b"[1, 2]", b'"text"', b"{}",
     json.dumps(dict(INBOUND, msisdn=["447700900001"])).encode(),
     json.dumps(dict(INBOUND, text={"a": 1})).encode(),
     json.dumps(dict(INBOUND, msisdn="not a number")).encode(),
     json.dumps(dict(INBOUND, messageId=None)).encode(),
     json.dumps(dict(INBOUND, concat="true", **{"concat-ref": "1", "concat-part": "x",
                                                "concat-total": "2"})).encode(),
     json.dumps(dict(INBOUND, concat="true", **{"concat-ref": "1", "concat-part": "3",
                                                "concat-total": "2"})).encode()],
)
def test_hostile_sms_bodies_are_malformed(body):
    provider = make_provider()
    req = WebhookRequest("POST", f"{PUBLIC}/webhooks/vg", {"Content-Type": "application/json"},
                         [], body, "127.0.0.1")
    with pytest.raises(WebhookMalformed):
        provider.parse(req)


def test_secrets_stay_out_of_reprs():
    provider = make_provider(api="messages")
    text = repr(provider.config) + repr(provider)
    assert SECRET not in text and SIG_SECRET not in text


# --- Messages API webhooks -------------------------------------------------------------------

def messages_request(data: dict, secret: str = SIG_SECRET, iat: int | None = None,
                     body: bytes | None = None) -> WebhookRequest:
    raw = json.dumps(data).encode()
    claims = {"iat": iat or int(time.time()), "jti": "j-1", "iss": "Vonage",
              "payload_hash": hashlib.sha256(raw).hexdigest(), "api_key": KEY,
              "application_id": APP_ID}
    token = jwt.encode(claims, secret, algorithm="HS256")
    return WebhookRequest("POST", f"{PUBLIC}/webhooks/vg",
                          {"Content-Type": "application/json",
                           "Authorization": f"Bearer {token}"}, [],
                          body if body is not None else raw, "127.0.0.1")


MSG_INBOUND = {"channel": "sms", "message_uuid": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
               "to": "447700900000", "from": "447700900001",
               "timestamp": "2025-02-03T12:14:25Z", "text": "Hello From Vonage!",
               "sms": {"num_messages": "1"}, "usage": {"price": "0.0057", "currency": "EUR"},
               "message_type": "text"}


def test_messages_inbound_sms_signed_jwt_parses():
    provider = make_provider(api="messages")
    req = messages_request(MSG_INBOUND)
    assert verify_signature(req.headers["Authorization"].split()[1], SIG_SECRET)
    provider.verify(req)
    assert provider.parse(req) == [InboundMessage(
        "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "+447700900001", "+447700900000",
        "Hello From Vonage!")]


def test_messages_inbound_mms_parses():
    provider = make_provider(api="messages")
    data = {"channel": "mms", "message_uuid": "m-1", "to": "14155550199",
            "from": "14155550100", "message_type": "image",
            "image": {"url": "https://api-us.nexmo.com/v3/media/abc", "caption": "cat"}}
    req = messages_request(data)
    provider.verify(req)
    assert provider.parse(req) == [InboundMessage(
        "m-1", "+14155550100", "+14155550199", "cat",
        (MediaRef("https://api-us.nexmo.com/v3/media/abc"),))]


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        ("submitted", None, DeliveryReport("u-1", State.SENT, "submitted")),
        ("delivered", None, DeliveryReport("u-1", State.DELIVERED, "delivered")),
        ("rejected", {"type": "https://developer.vonage.com/api-errors/messages#1000",
                      "title": 1000, "detail": "Throttled"},
         DeliveryReport("u-1", State.FAILED, "rejected", "1000: Throttled")),
        ("undeliverable", None, DeliveryReport("u-1", State.FAILED, "undeliverable")),
        ("accepted", None, None),
    ],
)
def test_messages_status_webhooks_parse(status, error, expected):
    provider = make_provider(api="messages")
    data = {"message_uuid": "u-1", "to": "447700900000", "from": "447700900001",
            "timestamp": "2023-05-01T14:00:00.000Z", "status": status, "channel": "sms"}
    if error:
        data["error"] = error
    req = messages_request(data)
    provider.verify(req)
    assert provider.parse(req) == ([expected] if expected else [])


@pytest.mark.parametrize("tamper", ["wrong_key", "body", "missing", "stale", "not_jwt",
                                    "alg_none"])
def test_bad_messages_jwts_are_refused(tamper):
    provider = make_provider(api="messages")
    if tamper == "wrong_key":
        req = messages_request(MSG_INBOUND, secret="another-secret-entirely-32-bytes-long")
    elif tamper == "body":
        req = messages_request(MSG_INBOUND, body=json.dumps(
            dict(MSG_INBOUND, text="Send money")).encode())
    elif tamper == "missing":
        req = json_request(MSG_INBOUND)
    elif tamper == "stale":  # a replay of a webhook signed ten minutes ago
        req = messages_request(MSG_INBOUND, iat=int(time.time()) - 600)
    elif tamper == "not_jwt":
        req = json_request(MSG_INBOUND, {"Authorization": "Bearer abc.def"})
    else:
        raw = json.dumps(MSG_INBOUND).encode()
        token = jwt.encode({"iat": int(time.time()),
                            "payload_hash": hashlib.sha256(raw).hexdigest()}, None,
                           algorithm="none")
        req = json_request(MSG_INBOUND, {"Authorization": f"Bearer {token}"})
    with pytest.raises(WebhookUnauthorized):
        provider.verify(req)


@pytest.mark.parametrize(
    "data",
    [[1], {"message_uuid": "u"}, dict(MSG_INBOUND, to=None),
     dict(MSG_INBOUND, message_type="image"), dict(MSG_INBOUND, text=5),
     dict(MSG_INBOUND, message_uuid={"x": 1})],
)
def test_hostile_messages_bodies_are_malformed(data):
    provider = make_provider(api="messages")
    with pytest.raises(WebhookMalformed):
        provider.parse(json_request(data))


def test_messages_other_channels_are_ignored():
    provider = make_provider(api="messages")
    assert provider.parse(json_request(dict(MSG_INBOUND, channel="whatsapp"))) == []
