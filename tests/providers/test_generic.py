"""Generic adapter: configured as Twilio or Telnyx it must send and parse what those carriers
document (and, for Twilio, exactly what the real Twilio adapter does); HMAC signatures;
hostile webhooks; config validation."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import time
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bridge.model import (
    DeliveryReport,
    InboundMessage,
    MediaRef,
    OutboundSms,
    SendFailed,
    Sent,
    State,
)
from bridge.providers import generic
from bridge.providers.base import WebhookMalformed, WebhookRequest, WebhookUnauthorized
from bridge.providers.generic import GenericConfig, GenericProvider
from bridge.providers.twilio import EMPTY_TWIML, TwilioConfig, TwilioProvider
from tests.carrier_server import CannedResponse, CarrierServer, send_once
from tests.providers.harness import PUBLIC

EXAMPLE = Path(__file__).parents[2] / "config" / "generic.example.toml"

PATH_TOKEN = "p4th-t0ken-0123456789abcdef"
SID = "AC" + "0123456789abcdef" * 2
TW_TOKEN = "twilio-test-auth-token"
TELNYX_KEY = "KEY0123456789ABCDEF_telnyx-secret"
FORM = "application/x-www-form-urlencoded"


def twilio_like(**send_over: Any) -> dict[str, Any]:
    """Twilio as providers.md §1 documents it, written as generic config."""
    return {
        "name": "tw", "type": "generic", "webhook_token": PATH_TOKEN,
        "send": {
            "url": "https://api.twilio.com/2010-04-01/Accounts/{account}/Messages.json",
            "method": "POST", "encoding": "form", "number_format": "e164",
            "vars": {"account": SID},
            "auth": {"type": "basic", "username": SID, "password": TW_TOKEN},
            "fields": {"from": "From", "to": "To", "text": "Body", "media": "MediaUrl",
                       "status_callback": "StatusCallback"},
            "id_path": "sid", "success_status": [200, 201],
            "error_code_path": "code", "error_message_path": "message",
            "opt_out_codes": [21610],
            **send_over,
        },
        "inbound": {
            "method": "POST", "encoding": "form",
            "fields": {"id": "MessageSid", "from": "From", "to": "To", "text": "Body",
                       "media_prefix": "MediaUrl", "media_type_prefix": "MediaContentType"},
            "report": {
                "when": {"path": "MessageStatus", "not_values": ["received", "receiving"]},
                "id": "MessageSid", "status": "MessageStatus",
                "error": "ErrorCode", "error_message": "ErrorMessage",
                "states": {"sent": "sent", "delivered": "delivered", "read": "delivered",
                           "undelivered": "failed", "failed": "failed", "canceled": "failed"},
            },
            "reply_body": EMPTY_TWIML, "reply_content_type": "text/xml",
        },
    }


def telnyx_like(**send_over: Any) -> dict[str, Any]:
    """Telnyx as providers.md §2 documents it (telnyx-python types), as generic config."""
    return {
        "name": "tl", "type": "generic", "webhook_token": PATH_TOKEN,
        "send": {
            "url": "https://api.telnyx.com/v2/messages", "encoding": "json",
            "auth": {"type": "bearer", "token": TELNYX_KEY},
            "fields": {"from": "from", "to": "to", "text": "text", "media": "media_urls",
                       "status_callback": "webhook_url"},
            "id_path": "data.id",
            "error_code_path": "errors.0.code", "error_message_path": "errors.0.detail",
            "opt_out_codes": ["40300"],
            **send_over,
        },
        "inbound": {
            "encoding": "json",
            "when": {"path": "data.event_type", "values": ["message.received"]},
            "fields": {"id": "data.payload.id", "from": "data.payload.from.phone_number",
                       "to": "data.payload.to.0.phone_number", "text": "data.payload.text",
                       "media": "data.payload.media", "media_url": "url",
                       "media_type": "content_type"},
            "report": {
                "when": {"path": "data.event_type",
                         "values": ["message.sent", "message.finalized"]},
                "id": "data.payload.id", "status": "data.payload.to.0.status",
                "error": "data.payload.errors.0.code",
                "error_message": "data.payload.errors.0.title",
                "states": {"sent": "sent", "delivered": "delivered",
                           "delivery_failed": "failed", "sending_failed": "failed",
                           "expired": "failed"},
            },
        },
    }


def make(cfg: dict[str, Any], api_base: str | None = None, **over: Any) -> GenericProvider:
    data = {**copy.deepcopy(cfg), "timeout_seconds": 2, **over}
    if api_base:
        data["api_base"] = api_base
    return GenericProvider(GenericConfig.model_validate(data), public_url=PUBLIC)


async def send(provider, msg: OutboundSms):
    return await send_once(provider, msg)


def webhook(provider, body: bytes | str | dict, *, content_type: str = FORM,
            method: str = "POST", query=(), token: str | None = PATH_TOKEN,
            headers: dict[str, str] | None = None, received_at: float | None = None):
    if isinstance(body, dict):
        body = urlencode(body).encode() if content_type == FORM else json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    extra = {"received_at": received_at} if received_at is not None else {}
    return WebhookRequest(
        method=method, url=provider.public_url + provider.webhook_path(),
        headers={"Content-Type": content_type, **(headers or {})}, query=list(query),
        body=body, remote="127.0.0.1", path_token=token, **extra,
    )


SMS = OutboundSms(1, "+15551230001", "+15557654321", "héllo 😀")
MMS = OutboundSms(2, "+15551230001", "+15557654321", "look",
                  (MediaRef("https://files.example.com/a.jpg", "image/jpeg"),
                   MediaRef("https://files.example.com/b.png", "image/png")))


# --- Twilio imitation: the same wire requests and results as the real Twilio adapter ---------


def real_twilio(api_base: str = "https://api.twilio.com") -> TwilioProvider:
    cfg = TwilioConfig(name="tw", type="twilio", account_sid=SID, auth_token=TW_TOKEN,
                       api_base=api_base, timeout_seconds=2, webhook_token=PATH_TOKEN)
    return TwilioProvider(cfg, public_url=PUBLIC)


@pytest.mark.parametrize("msg", [SMS, MMS], ids=["sms", "mms"])
async def test_twilio_like_send_is_twilios_request(msg):
    ok = CannedResponse(201, {"sid": "SM" + "1" * 32, "status": "queued"})
    async with CarrierServer() as srv:
        srv.respond(ok, ok)
        expected = await send(real_twilio(srv.url), msg)
        result = await send(make(twilio_like(), srv.url), msg)
    want, got = srv.requests
    assert got.method == want.method == "POST"
    assert got.path == want.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert got.headers["Authorization"] == want.headers["Authorization"] == "Basic " + (
        base64.b64encode(f"{SID}:{TW_TOKEN}".encode()).decode())
    assert got.content_type == want.content_type == FORM
    assert sorted(got.form()) == sorted(want.form())
    form = got.form()
    assert ("To", "+15557654321") in form and ("From", "+15551230001") in form
    assert [v for k, v in form if k == "MediaUrl"] == [m.url for m in msg.media]
    assert ("StatusCallback", f"{PUBLIC}/webhooks/tw/{PATH_TOKEN}") in form
    assert isinstance(result, Sent) and result.carrier_id == expected.carrier_id


@pytest.mark.parametrize(
    ("status", "body", "headers"),
    [
        (400, {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400}, {}),
        (400, {"code": 21610, "message": "Attempt to send to unsubscribed recipient"}, {}),
        (429, {"code": 20429, "message": "Too Many Requests"}, {"Retry-After": "3"}),
        (500, {"code": 20500, "message": "Internal Server Error"}, {}),
        (503, "<html>unavailable</html>", {}),
        (201, {"status": "queued"}, {}),  # accepted but no sid: never retried
    ],
)
async def test_twilio_like_errors_classified_like_twilio(status, body, headers):
    canned = CannedResponse(status, body, headers)
    async with CarrierServer() as srv:
        srv.respond(canned, canned)
        expected = await send(real_twilio(srv.url), SMS)
        provider = make(twilio_like(), srv.url)
        result = await send(provider, SMS)
    assert isinstance(expected, SendFailed) and isinstance(result, SendFailed)
    assert (result.retryable, result.code, result.retry_after) == (
        expected.retryable, expected.code, expected.retry_after)
    assert (result.code in provider.opt_out_codes) == (result.code == "21610")


async def test_timeout_is_retryable():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(201, {"sid": "SMx"}, delay=0.8))
        result = await send(make(twilio_like(), srv.url, timeout_seconds=0.2), SMS)
    assert isinstance(result, SendFailed) and result.retryable


TWILIO_MMS_WEBHOOK = {
    "MessageSid": "MM" + "a" * 32, "SmsSid": "MM" + "a" * 32, "AccountSid": SID,
    "From": "+14155550100", "To": "+14155550199", "Body": "Hi 👋", "NumMedia": "2",
    "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME1",
    "MediaContentType0": "image/jpeg",
    "MediaUrl1": "https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME2",
    "MediaContentType1": "video/mp4", "NumSegments": "1", "SmsStatus": "received",
}


@pytest.mark.parametrize(
    "params",
    [
        TWILIO_MMS_WEBHOOK,
        {"MessageSid": "SM1", "From": "+14155550100", "To": "+14155550199", "Body": "plain",
         "NumMedia": "0", "SmsStatus": "received"},
        {"MessageSid": "SM1", "MessageStatus": "delivered", "SmsStatus": "delivered",
         "ErrorCode": "", "AccountSid": SID, "From": "+14155550199", "To": "+14155550100"},
        {"MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30003",
         "ErrorMessage": "Unreachable destination handset", "From": "+1", "To": "+2"},
        {"MessageSid": "SM1", "MessageStatus": "sent", "From": "+1", "To": "+2"},
        {"MessageSid": "SM1", "MessageStatus": "queued"},
    ],
    ids=["mms", "sms", "delivered", "undelivered", "sent", "queued"],
)
def test_twilio_like_webhooks_parse_like_twilio(params):
    provider = make(twilio_like())
    req = webhook(provider, params)
    provider.verify(req)
    assert provider.parse(req) == real_twilio().parse(req)
    assert provider.answer([]) == real_twilio().answer([])


def test_twilio_like_mms_event():
    provider = make(twilio_like())
    (event,) = provider.parse(webhook(provider, TWILIO_MMS_WEBHOOK))
    assert event == InboundMessage(
        "MM" + "a" * 32, "+14155550100", "+14155550199", "Hi 👋",
        (MediaRef(TWILIO_MMS_WEBHOOK["MediaUrl0"], "image/jpeg"),
         MediaRef(TWILIO_MMS_WEBHOOK["MediaUrl1"], "video/mp4")))


@pytest.mark.parametrize("token", [None, "", "wrong-token", PATH_TOKEN + "x"])
def test_path_token_refused(token):
    for cfg in (twilio_like(), telnyx_like()):
        provider = make(cfg)
        assert provider.requires_webhook_token
        with pytest.raises(WebhookUnauthorized):
            provider.verify(webhook(provider, b"", token=token))


def test_path_token_accepted():
    provider = make(twilio_like())
    provider.verify(webhook(provider, TWILIO_MMS_WEBHOOK))
    assert "/<webhook_token>" in provider.webhook_url(masked=True)


# --- Telnyx imitation (providers.md §2) ------------------------------------------------------

TELNYX_ID = "40385f64-5717-4562-b3fc-2c963f66afa6"
TELNYX_OK = {"data": {"record_type": "message", "id": TELNYX_ID, "type": "SMS",
                      "direction": "outbound", "to": [{"phone_number": "+15557654321",
                                                        "status": "queued"}],
                      "parts": 1, "encoding": "UCS-2"}}


@pytest.mark.parametrize("msg", [SMS, MMS], ids=["sms", "mms"])
async def test_telnyx_like_send_is_telnyx_request(msg):
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, TELNYX_OK))
        result = await send(make(telnyx_like(), srv.url), msg)
    (req,) = srv.requests
    assert req.method == "POST"
    assert req.path == "/v2/messages"
    assert req.headers["Authorization"] == f"Bearer {TELNYX_KEY}"
    assert req.content_type == "application/json"
    expected: dict[str, Any] = {"from": "+15551230001", "to": "+15557654321", "text": msg.text,
                                "webhook_url": f"{PUBLIC}/webhooks/tl/{PATH_TOKEN}"}
    if msg.media:
        expected["media_urls"] = [m.url for m in msg.media]
    assert req.json() == expected
    assert result == Sent(TELNYX_ID)


@pytest.mark.parametrize(
    ("status", "body", "headers", "retryable", "code"),
    [
        (400, {"errors": [{"code": "40310", "title": "Invalid 'to' address",
                           "detail": "The 'to' address should be a single valid number.",
                           "source": {"pointer": "/to"}}]}, {}, False, "40310"),
        (400, {"errors": [{"code": "40300", "title": "Blocked due to STOP message",
                           "detail": "Messages cannot be sent from '+15551230001' to "
                                     "'+15557654321' due to an existing block rule."}]},
         {}, False, "40300"),
        (401, {"errors": [{"code": "10009", "title": "Authentication failed"}]}, {}, False,
         "10009"),
        (429, {"errors": [{"code": "10011", "title": "Too many requests"}]},
         {"Retry-After": "2"}, True, "10011"),
        (500, {"errors": [{"code": "10007", "title": "Unexpected error"}]}, {}, True, "10007"),
        (502, "<html>bad gateway</html>", {}, True, "502"),
    ],
)
async def test_telnyx_like_errors(status, body, headers, retryable, code):
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(status, body, headers))
        provider = make(telnyx_like(), srv.url)
        result = await send(provider, SMS)
    assert isinstance(result, SendFailed)
    assert (result.retryable, result.code) == (retryable, code)
    assert (code in provider.opt_out_codes) == (code == "40300")
    if headers:
        assert result.retry_after == 2.0
    assert TELNYX_KEY not in result.reason


def telnyx_event(event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"data": {"record_type": "event", "id": "bf63e2a4-0000-4000-8000-000000000001",
                     "event_type": event_type, "occurred_at": "2024-01-01T00:00:00.000+00:00",
                     "payload": payload},
            "meta": {"attempt": 1, "delivered_to": f"{PUBLIC}/webhooks/tl/{PATH_TOKEN}"}}


TELNYX_SMS_IN = telnyx_event("message.received", {
    "id": "7ee4241c-f127-47e5-9c34-3aac291f8058", "record_type": "message",
    "direction": "inbound", "type": "SMS",
    "from": {"phone_number": "+18665550001", "carrier": "T-Mobile", "line_type": "Wireless"},
    "to": [{"phone_number": "+18445550001", "status": "delivered"}],
    "text": "Hello, World!", "media": [], "encoding": "GSM-7", "parts": 1,
})
TELNYX_MMS_IN = telnyx_event("message.received", {
    "id": "7ee4241c-f127-47e5-9c34-3aac291f8059", "direction": "inbound", "type": "MMS",
    "from": {"phone_number": "+18665550001"},
    "to": [{"phone_number": "+18445550001", "status": "delivered"}], "text": "",
    "media": [{"url": "https://media.telnyx.example/1.jpg", "content_type": "image/jpeg",
               "hash_sha256": "00", "size": 1234}],
})


def dlr(event_type: str, status: str, errors=()) -> dict[str, Any]:
    return telnyx_event(event_type, {
        "id": TELNYX_ID, "direction": "outbound", "type": "SMS",
        "from": {"phone_number": "+15551230001"},
        "to": [{"phone_number": "+15557654321", "status": status}], "errors": list(errors),
    })


@pytest.mark.parametrize(
    ("body", "events"),
    [
        (TELNYX_SMS_IN, [InboundMessage("7ee4241c-f127-47e5-9c34-3aac291f8058",
                                        "+18665550001", "+18445550001", "Hello, World!")]),
        (TELNYX_MMS_IN, [InboundMessage("7ee4241c-f127-47e5-9c34-3aac291f8059",
                                        "+18665550001", "+18445550001", "",
                                        (MediaRef("https://media.telnyx.example/1.jpg",
                                                  "image/jpeg"),))]),
        (dlr("message.sent", "sent"), [DeliveryReport(TELNYX_ID, State.SENT, "sent")]),
        (dlr("message.finalized", "delivered"),
         [DeliveryReport(TELNYX_ID, State.DELIVERED, "delivered")]),
        (dlr("message.finalized", "delivery_failed",
             [{"code": "40001", "title": "Not routable"}]),
         [DeliveryReport(TELNYX_ID, State.FAILED, "delivery_failed", "40001: Not routable")]),
        (dlr("message.finalized", "sending_failed", [{"code": "40008", "title": "Undeliverable"}]),
         [DeliveryReport(TELNYX_ID, State.FAILED, "sending_failed", "40008: Undeliverable")]),
        (dlr("message.finalized", "delivery_unconfirmed"), []),
        (dlr("message.sent", "queued"), []),
        (dlr("message.read", "delivered"), []),
    ],
    ids=["sms", "mms", "sent", "delivered", "delivery_failed", "sending_failed",
         "unconfirmed", "queued", "other-event"],
)
def test_telnyx_like_webhooks(body, events):
    provider = make(telnyx_like())
    req = webhook(provider, body, content_type="application/json")
    provider.verify(req)
    assert provider.parse(req) == events
    assert provider.answer(events).status == 200


# --- HMAC signatures -------------------------------------------------------------------------

SIGNING_SECRET = "whsec-test-0123456789"


def signed_cfg(**sig: Any) -> dict[str, Any]:
    return {
        "name": "sig", "type": "generic",
        "send": {"url": "https://api.example.com/sms", "auth": {"type": "none"},
                 "fields": {"from": "from", "to": "to", "text": "text"}},
        "inbound": {"encoding": "json",
                    "fields": {"id": "id", "from": "from", "to": "to", "text": "text"},
                    "signature": {"secret": SIGNING_SECRET, "header": "X-Signature", **sig}},
    }


def sign(key: bytes, data: bytes, algo: str = "sha256", encoding: str = "hex") -> str:
    digest = hmac.new(key, data, getattr(hashlib, algo)).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


BODY = json.dumps({"id": "m1", "from": "+15557654321", "to": "+15551230001",
                   "text": "hi"}).encode()


def test_github_published_vector_is_accepted():
    # docs.github.com "Validating webhook deliveries": test secret, payload and signature.
    provider = make(signed_cfg(secret="It's a Secret to Everybody", header="X-Hub-Signature-256",
                               prefix="sha256="))
    vector = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    provider.verify(webhook(provider, "Hello, World!", token=None,
                            headers={"X-Hub-Signature-256": vector}))
    with pytest.raises(WebhookUnauthorized):
        provider.verify(webhook(provider, "Hello, World?", token=None,
                                headers={"X-Hub-Signature-256": vector}))
    assert not provider.requires_webhook_token
    assert "HMAC-SHA256" in provider.webhook_auth


@pytest.mark.parametrize(
    ("sig", "make_header"),
    [
        ({}, lambda b, url, ts: sign(SIGNING_SECRET.encode(), b)),
        ({"algorithm": "sha1", "encoding": "base64"},
         lambda b, url, ts: sign(SIGNING_SECRET.encode(), b, "sha1", "base64")),
        ({"algorithm": "sha512", "prefix": "v1="},
         lambda b, url, ts: "v1=" + sign(SIGNING_SECRET.encode(), b, "sha512")),
        ({"signed": "url+body"},
         lambda b, url, ts: sign(SIGNING_SECRET.encode(), url.encode() + b)),
        ({"signed": "timestamp.body", "timestamp_header": "X-Timestamp", "encoding": "base64"},
         lambda b, url, ts: sign(SIGNING_SECRET.encode(), f"{ts}.".encode() + b, "sha256",
                                 "base64")),
        ({"secret": base64.b64encode(b"\x00\x01binary-key").decode(),
          "secret_encoding": "base64"},
         lambda b, url, ts: sign(b"\x00\x01binary-key", b)),
        ({}, lambda b, url, ts: "0" * 64 + "," + sign(SIGNING_SECRET.encode(), b)),  # rotation
    ],
    ids=["sha256-hex", "sha1-b64", "sha512-prefix", "url+body", "timestamp", "b64-key",
         "two-signatures"],
)
def test_signature_accepted_and_tampering_refused(sig, make_header):
    provider = make(signed_cfg(**sig))
    now = time.time()
    ts = str(int(now))
    url = provider.public_url + provider.webhook_path()

    def request(body=BODY, header=None, stamp=ts, received_at=now, url_suffix=""):
        headers = {"X-Signature": make_header(BODY, url, ts) if header is None else header}
        if stamp is not None:
            headers["X-Timestamp"] = stamp
        req = webhook(provider, body, content_type="application/json", token=None,
                      headers=headers, received_at=received_at)
        return WebhookRequest(req.method, req.url + url_suffix, req.headers, req.query,
                              req.body, req.remote, req.path_token, req.received_at)

    good = request()
    provider.verify(good)
    assert provider.parse(good) == [InboundMessage("m1", "+15557654321", "+15551230001", "hi")]

    refused = [
        request(body=BODY.replace(b'"hi"', b'"hI"')),  # tampered body
        request(header=""),  # missing header
        request(header="not a signature!"),
        request(header=make_header(BODY, url, ts)[:-4]),  # truncated
    ]
    wrong = make(signed_cfg(**{**sig, "secret": base64.b64encode(b"another-key").decode()}))
    if sig.get("signed") == "url+body":
        refused.append(request(url_suffix="?x=1"))
    if sig.get("signed") == "timestamp.body":
        refused += [
            request(received_at=now + 301),  # a replay of an old signed request
            request(received_at=now - 301),  # from the future
            request(stamp=None),
            request(stamp="yesterday"),
            request(stamp=str(int(now) + 1)),  # timestamp is signed
        ]
    for req in refused:
        with pytest.raises(WebhookUnauthorized):
            provider.verify(req)
    with pytest.raises(WebhookUnauthorized):
        wrong.verify(good)


def test_millisecond_timestamps_and_tolerance_setting():
    provider = make(signed_cfg(signed="timestamp.body", timestamp_header="X-Timestamp"),
                    webhook_tolerance_seconds=30)
    now = time.time()
    stamp = str(int(now * 1000))
    headers = {"X-Timestamp": stamp,
               "X-Signature": sign(SIGNING_SECRET.encode(), stamp.encode() + b"." + BODY)}
    provider.verify(webhook(provider, BODY, token=None, headers=headers, received_at=now + 20))
    with pytest.raises(WebhookUnauthorized):
        provider.verify(webhook(provider, BODY, token=None, headers=headers,
                                received_at=now + 40))


def test_signature_and_path_token_both_checked():
    provider = make(signed_cfg(), webhook_token=PATH_TOKEN)
    headers = {"X-Signature": sign(SIGNING_SECRET.encode(), BODY)}
    provider.verify(webhook(provider, BODY, headers=headers))
    with pytest.raises(WebhookUnauthorized):
        provider.verify(webhook(provider, BODY, headers=headers, token="wrong"))


# --- the other knobs: query/GET send, header/field auth, nesting, splitting, rules ----------


def custom(send: dict[str, Any], inbound: dict[str, Any] | None = None) -> dict[str, Any]:
    base_send = {"url": "https://api.example.com/sms", "auth": {"type": "none"},
                 "fields": {"from": "from", "to": "to", "text": "text"}}
    base_in = {"fields": {"id": "id", "from": "from", "to": "to", "text": "text"}}
    return {"name": "cu", "type": "generic", "webhook_token": PATH_TOKEN,
            "send": {**base_send, **send}, "inbound": {**base_in, **(inbound or {})}}


API_PASSWORD = "voipms-api-password"


async def test_get_query_send_with_query_auth_and_200_errors():
    cfg = custom({
        "url": "https://voip.example/api/v1/rest.php?method=sendSMS", "method": "GET",
        "encoding": "query", "number_format": "national10",
        "auth": {"type": "query", "params": {"api_username": "me@example.com",
                                             "api_password": API_PASSWORD}},
        "fields": {"from": "did", "to": "dst", "text": "message"},
        "id_path": "sms", "success_when": {"path": "status", "values": ["success"]},
        "error_code_path": "status", "error_message_path": "status",
    })
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {"status": "success", "sms": 23434}),
                    CannedResponse(200, {"status": "invalid_dst"}),
                    CannedResponse(200, {"status": f"bad password {API_PASSWORD}"}))
        provider = make(cfg, srv.url)
        ok = await send(provider, SMS)
        bad = await send(provider, SMS)
        echoed = await send(provider, SMS)
    req = srv.requests[0]
    assert req.method == "GET" and req.path == "/api/v1/rest.php" and req.body == b""
    assert dict(req.query) == {"method": "sendSMS", "api_username": "me@example.com",
                               "api_password": API_PASSWORD, "did": "5551230001",
                               "dst": "5557654321", "message": "héllo 😀"}
    assert ok == Sent("23434")
    assert isinstance(bad, SendFailed) and not bad.retryable and bad.code == "invalid_dst"
    assert isinstance(echoed, SendFailed) and API_PASSWORD not in echoed.reason


async def test_json_nesting_header_auth_relative_url_and_placeholders():
    cfg = custom({
        "url": "/v3/{account}/from/{from}/messages", "vars": {"account": 12345},
        "encoding": "json", "number_format": "digits", "to_list": True,
        "auth": {"type": "header", "header": "X-Api-Key", "value": "header-secret"},
        "headers": {"Accept": "application/json"},
        "fields": {"from": "from", "to": "to", "text": "message_body.text",
                   "media": "message_body.media"},
        "extra": {"tag": "bridge", "validity": 3600, "flags": {"smart": True}},
        "id_path": "messages.0.id",
    })
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(202, {"messages": [{"id": "abc-1"}]}))
        result = await send(make(cfg, api_base=srv.url + "/prefix"), MMS)
    (req,) = srv.requests
    assert req.path == "/prefix/v3/12345/from/15551230001/messages"
    assert req.headers["X-Api-Key"] == "header-secret"
    assert req.headers["Accept"] == "application/json"
    assert req.json() == {"from": "15551230001", "to": ["15557654321"],
                          "message_body": {"text": "look", "media": [m.url for m in MMS.media]},
                          "tag": "bridge", "validity": 3600, "flags": {"smart": True}}
    assert result == Sent("abc-1")


async def test_placeholder_values_are_escaped_and_api_base_replaces_host():
    cfg = custom({"url": "https://api.example.com/send/{to}?from={from}"})
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {}))
        result = await send(make(cfg, srv.url), SMS)
    (req,) = srv.requests
    assert req.path == "/send/+15557654321"
    assert dict(req.query)["from"] == "+15551230001"
    assert result.carrier_id.startswith("cu-")  # no id_path: a local id


async def test_fields_auth_form_and_media_without_mms_config():
    cfg = custom({"auth": {"type": "fields", "fields": {"username": "u", "auth_token": "tok1"}}})
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {"id": 1}))
        await send(make(cfg, srv.url), SMS)
        result = await send(make(cfg, srv.url), MMS)
    (req,) = srv.requests  # the MMS never left
    assert req.content_type == FORM
    assert dict(req.form()) == {"from": "+15551230001", "to": "+15557654321",
                                "text": "héllo 😀", "username": "u", "auth_token": "tok1"}
    assert isinstance(result, SendFailed) and not result.retryable and result.code == "no_mms"


async def test_long_text_is_split_and_first_id_returned():
    cfg = custom({"max_chars": 20, "id_path": "id"})
    text = "one two three four five six seven eight nine ten"
    async with CarrierServer() as srv:
        srv.respond(*(CannedResponse(200, {"id": f"p{i}"}) for i in range(5)))
        result = await send(make(cfg, srv.url), OutboundSms(3, "+15551230001",
                                                            "+15557654321", text))
    parts = [dict(r.form())["text"] for r in srv.requests]
    assert all(len(p) <= 20 for p in parts) and " ".join(parts) == text
    assert result == Sent("p0", "3 parts", ("p0", "p1", "p2"))


async def test_a_retry_after_a_refused_part_does_not_send_the_earlier_parts_again():
    cfg = custom({"max_chars": 20, "id_path": "id"})
    msg = OutboundSms(3, "+15551230001", "+15557654321",
                      "one two three four five six seven eight nine ten")
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {"id": "p0"}), CannedResponse(502, {}))
        first = await send(make(cfg, srv.url), msg)
        assert isinstance(first, SendFailed) and first.retryable
        assert first.accepted_parts == ("p0",)
        srv.respond(CannedResponse(200, {"id": "p1"}), CannedResponse(200, {"id": "p2"}))
        second = await send(make(cfg, srv.url),
                            OutboundSms(3, msg.from_number, msg.to_number, msg.text,
                                        accepted_parts=first.accepted_parts))
    texts = [dict(r.form())["text"] for r in srv.requests]
    assert second == Sent("p0", "3 parts", ("p0", "p1", "p2"))
    assert texts.count(texts[0]) == 1 and texts[1] == texts[2]  # part 1 went out once


@pytest.mark.parametrize(
    ("status", "body", "retryable", "code"),
    [
        (400, {"error": {"code": "throttled"}}, True, "throttled"),
        (400, {"error": {"code": "bad_number"}}, False, "bad_number"),
        (503, {}, False, "503"),  # rule overrides the shared rule
        (502, {}, True, "502"),
        (409, {"error": {"code": 7}}, False, "7"),
        (408, b"\xff\xfe not json", True, "408"),
    ],
)
async def test_error_rules(status, body, retryable, code):
    cfg = custom({"error_code_path": "error.code", "id_path": "id",
                  "rules": [{"code": ["throttled"], "retryable": True},
                            {"status": ["503"], "retryable": False},
                            {"status": ["4xx"], "code": ["7"], "retryable": False}]})
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(status, body))
        result = await send(make(cfg, srv.url), SMS)
    assert isinstance(result, SendFailed)
    assert (result.retryable, result.code) == (retryable, code)


async def test_unformattable_number_is_permanent_without_a_request():
    cfg = custom({"number_format": "national10"})
    async with CarrierServer() as srv:
        result = await send(make(cfg, srv.url),
                            OutboundSms(1, "+15551230001", "+447700900123", "x"))
    assert srv.requests == []
    assert isinstance(result, SendFailed) and not result.retryable


def test_query_get_webhook_with_separated_media():
    provider = make(custom({}, {
        "method": "GET", "encoding": "query",
        "fields": {"id": "id", "from": "from", "to": "to", "text": "message",
                   "media": "media", "media_separator": ","},
        "content_types": ["text/plain"],
    }))
    assert provider.webhook_content_types == {"text/plain"}
    query = [("id", "42"), ("from", "5557654321"), ("to", "15551230001"),
             ("message", "hi there"),
             ("media", "https://m.example/1.jpg,https://m.example/2.jpg")]
    (event,) = provider.parse(webhook(provider, b"", method="GET", query=query))
    assert event == InboundMessage("42", "+15557654321", "+15551230001", "hi there",
                                   (MediaRef("https://m.example/1.jpg"),
                                    MediaRef("https://m.example/2.jpg")))


def test_batched_json_and_form_repeated_media():
    provider = make(custom({}, {"encoding": "json", "batch": True, "fields": {
        "id": "message.id", "from": "message.from", "to": "message.to.0",
        "text": "message.text", "media": "message.media"}}))
    body = [{"message": {"id": "a", "from": "+15557654321", "to": ["+15551230001"],
                         "text": "1", "media": ["https://m.example/x.gif"]}},
            {"message": {"id": "b", "from": "+15557654321", "to": ["+15551230001"]}}]
    events = provider.parse(webhook(provider, json.dumps(body)))
    assert provider.webhook_content_types == {"application/json"}
    assert [e.carrier_id for e in events] == ["a", "b"]
    assert events[0].media == (MediaRef("https://m.example/x.gif"),) and events[1].text == ""

    form = make(custom({}, {"fields": {"id": "id", "from": "from", "to": "to",
                                       "media": "media"}}))
    body2 = urlencode([("id", "c"), ("from", "5557654321"), ("to", "5551230001"),
                       ("media", "https://m.example/1"), ("media", "https://m.example/2")])
    (event,) = form.parse(webhook(form, body2))
    assert form.webhook_content_types == {FORM}
    assert [m.url for m in event.media] == ["https://m.example/1", "https://m.example/2"]


# --- hostile webhooks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe\x00garbage", b"", b"null", b"[]", b'"string"', b"{",
        b"[" * 100_000 + b"]" * 100_000,  # nesting deep enough to blow the recursion limit
        json.dumps({"data": {"event_type": "message.received"}}).encode(),
        json.dumps({"data": {"event_type": "message.received", "payload": "x"}}).encode(),
        json.dumps({"data": {"event_type": "message.received",
                             "payload": {"id": "1", "from": {"phone_number": ["+1"]},
                                         "to": [{"phone_number": "+18445550001"}]}}}).encode(),
        json.dumps({"data": {"event_type": "message.received",
                             "payload": {"id": {"x": 1}, "from": {"phone_number": "+18665550001"},
                                         "to": [{"phone_number": "+18445550001"}]}}}).encode(),
        json.dumps({"data": {"event_type": "message.received",
                             "payload": {"id": "1", "from": {"phone_number": "not a number"},
                                         "to": [{"phone_number": "+18445550001"}]}}}).encode(),
        json.dumps({"data": {"event_type": "message.received",
                             "payload": {"id": "1", "from": {"phone_number": "+18665550001"},
                                         "to": [{"phone_number": "+18445550001"}],
                                         "text": ["a"]}}}).encode(),
        json.dumps({"data": {"event_type": "message.received",
                             "payload": {"id": "1", "from": {"phone_number": "+18665550001"},
                                         "to": "+18445550001"}}}).encode(),
        json.dumps({"data": {"event_type": "message.received",
                             "payload": {"id": "1", "from": {"phone_number": "+18665550001"},
                                         "to": [{"phone_number": "+18445550001"}],
                                         "media": [{"url": "file:///etc/passwd"}]}}}).encode(),
        json.dumps({"data": {"event_type": "message.received",
                             "payload": {"id": "1", "from": {"phone_number": "+18665550001"},
                                         "to": [{"phone_number": "+18445550001"}],
                                         "media": [7]}}}).encode(),
        json.dumps({"data": {"event_type": "message.finalized",
                             "payload": {"id": "1", "to": [{"status": {"x": 1}}]}}}).encode(),
        json.dumps({"data": {"event_type": "message.finalized",
                             "payload": {"to": [{"status": "delivered"}]}}}).encode(),
    ],
)
def test_hostile_json_is_malformed(body):
    provider = make(telnyx_like())
    with pytest.raises(WebhookMalformed):
        provider.parse(webhook(provider, body, content_type="application/json"))


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe\x00garbage",
        b"",
        b"MessageSid=SM1&From=%2B14155550100",  # no To
        b"MessageSid=SM1&From=%2B14155550100&From=%2B14155550101&To=%2B14155550199",
        b"MessageSid=SM1&From=abc&To=%2B14155550199",
        b"From=%2B14155550100&To=%2B14155550199&Body=no+id",
        b"MessageSid=SM1&From=%2B14155550100&To=%2B14155550199&MediaUrl0=javascript:x",
        b"MessageStatus=delivered",  # a report without an id
    ],
)
def test_hostile_form_is_malformed(body):
    provider = make(twilio_like())
    with pytest.raises(WebhookMalformed):
        provider.parse(webhook(provider, body))


def test_wrong_method_and_too_much_media():
    provider = make(twilio_like())
    with pytest.raises(WebhookMalformed):
        provider.parse(webhook(provider, b"", method="GET", query=[("MessageSid", "SM1")]))
    params = {"MessageSid": "SM1", "From": "+14155550100", "To": "+14155550199",
              **{f"MediaUrl{i}": f"https://m.example/{i}" for i in range(500)}}
    (event,) = provider.parse(webhook(provider, params))
    assert len(event.media) == generic.MAX_MEDIA


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["data", "payload", "id", "from", "to", "text", "media", "event_type",
                         "phone_number", "status", "url", "0", "errors", "code"]),
        inner, max_size=5),
    max_leaves=25,
)
FUZZ_TELNYX = make(telnyx_like())
FUZZ_TWILIO = make(twilio_like())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, event_type=st.sampled_from(
    ["message.received", "message.finalized", "message.sent", None]))
def test_fuzzed_json_never_crashes(value, event_type):
    body = {"data": {"event_type": event_type, "payload": value}} if event_type else value
    try:
        events = FUZZ_TELNYX.parse(webhook(FUZZ_TELNYX, json.dumps(body),
                                           content_type="application/json"))
    except WebhookMalformed:
        return
    assert isinstance(events, list)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200) | st.lists(
    st.tuples(st.sampled_from(["MessageSid", "From", "To", "Body", "MediaUrl0",
                               "MediaContentType0", "MessageStatus", "ErrorCode"]),
              st.text(max_size=30)), max_size=10).map(lambda p: urlencode(p).encode()))
def test_fuzzed_form_never_crashes(raw):
    try:
        events = FUZZ_TWILIO.parse(webhook(FUZZ_TWILIO, raw))
    except WebhookMalformed:
        return
    assert isinstance(events, list)


# --- config validation -----------------------------------------------------------------------


def _with(cfg: dict[str, Any], section: str, **values: Any) -> dict[str, Any]:
    cfg = copy.deepcopy(cfg)
    cfg[section].update(values)
    return cfg


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (_with(custom({}), "send", url="https://api.example.com/{acount}/sms"),
         "placeholder {acount} is not defined"),
        (_with(custom({}), "send", method="GET"), 'use encoding = "query"'),
        (_with(custom({}), "send", url="/relative"), "set api_base"),
        (_with(custom({}), "send", url="ftp://x/y"), "url must be an http(s) URL"),
        (_with(custom({}), "send", url="https://{host}/y"), "no {placeholders} in the host"),
        (_with(custom({}), "send", auth={"type": "oauth"}), "does not match any of the expected"),
        (_with(custom({}), "send", feilds={}), "Extra inputs are not permitted"),
        (_with(custom({}), "send", success_status=["2x9"]), "is not an HTTP status"),
        (_with(custom({}), "send", rules=[{"retryable": True}]), "needs a status list"),
        (_with(custom({}), "send", id_path="data..id"), "is not a field path"),
        (_with(custom({}), "send", extra={"to": "x"}), "field name(s) used twice: to"),
        (_with(custom({}), "send", encoding="json", extra={"text.x": 1}), "clashes"),
        (_with(custom({}), "send", to_list=True), "to_list needs"),
        (_with(custom({}), "inbound", encoding="json", method="GET"), 'use method = "POST"'),
        (_with(custom({}), "inbound", fields={"from": "f", "to": "t", "media": "m",
                                             "media_prefix": "M"}), "not both"),
        ({**custom({}), "webhook_token": None}, "set webhook_token"),
        (_with(signed_cfg(), "inbound", signature={"secret": "x", "header": "X-Sig",
                                                   "signed": "timestamp.body"}),
         "needs timestamp_header"),
        (_with(signed_cfg(), "inbound", signature={"secret": "zz", "header": "X-Sig",
                                                   "secret_encoding": "hex"}),
         "not valid hex"),
        (_with(signed_cfg(), "inbound", signature={"secret": "x", "header": "Bad Header"}),
         "not a valid HTTP header name"),
    ],
)
def test_config_errors_are_clear(cfg, message):
    with pytest.raises(ValidationError) as info:
        GenericConfig.model_validate(cfg)
    assert message in str(info.value)


def test_config_errors_and_reprs_hide_secrets():
    cfg = _with(custom({}), "send", method="GET")
    cfg["send"]["auth"] = {"type": "bearer", "token": "top-secret-api-key"}
    with pytest.raises(ValidationError) as info:
        GenericConfig.model_validate(cfg)
    assert "top-secret-api-key" not in str(info.value)
    provider = make(telnyx_like())
    assert TELNYX_KEY not in repr(provider.config) and PATH_TOKEN not in repr(provider.config)


def test_the_example_file_is_valid_and_works(monkeypatch):
    """config/generic.example.toml is the configuration reference: it must load and work."""
    for var in ("VOIPINNOV_WEBHOOK_TOKEN", "VOIPINNOV_API_KEY", "VOIPINNOV_WEBHOOK_SECRET"):
        monkeypatch.setenv(var, var.lower() + "-value")
    snippet = EXAMPLE.read_text()
    (entry,) = tomllib.loads(snippet)["providers"]
    provider = GenericProvider(GenericConfig.model_validate(entry), public_url=PUBLIC)
    body = json.dumps({"event": "message.received",
                       "message": {"id": "x1", "from": "15557654321", "to": "15551230001",
                                   "body": "hello", "media": [
                                       {"url": "https://m.example/a.png", "mime_type": "image/png"}
                                   ]}}).encode()
    stamp = str(int(time.time()))
    digest = sign(b"voipinnov_webhook_secret-value", stamp.encode() + b"." + body)
    req = webhook(provider, body, content_type="application/json",
                  token="voipinnov_webhook_token-value",
                  headers={"X-Signature": "sha256=" + digest, "X-Timestamp": stamp})
    provider.verify(req)
    assert provider.parse(req) == [InboundMessage(
        "x1", "+15557654321", "+15551230001", "hello",
        (MediaRef("https://m.example/a.png", "image/png"),))]
