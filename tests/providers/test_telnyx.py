"""Telnyx adapter: the request it sends, the webhooks it accepts.

Webhooks are signed with PyNaCl following telnyx-python's ``lib/webhook_verification.py`` (the
SDK can verify but not sign), and every signed test request is checked against the SDK's own
verifier too, so our signer, our verifier and Telnyx's agree.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import time
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from bridge.model import (
    DeliveryReport,
    InboundMessage,
    MediaRef,
    OutboundSms,
    SendFailed,
    Sent,
    State,
)
from bridge.numbers import segments
from bridge.providers.base import WebhookMalformed, WebhookRequest, WebhookUnauthorized
from bridge.providers.telnyx import TelnyxConfig, TelnyxProvider, split_for_telnyx
from tests.carrier_server import CannedResponse
from tests.providers.carriers import TELNYX as CARRIER
from tests.providers.carriers import TELNYX_SIGNING_KEY as SIGNING_KEY
from tests.providers.harness import PUBLIC

FIXTURES = Path(__file__).parent / "fixtures" / "telnyx"
API_KEY = CARRIER.fields["api_key"]
PUBLIC_KEY = CARRIER.fields["public_key"]
OTHER_KEY = SigningKey(bytes(range(1, 33)))


make_provider = CARRIER.make


def sign(body: bytes, timestamp: int, key: SigningKey = SIGNING_KEY) -> str:
    message = f"{timestamp}|".encode() + body
    return base64.b64encode(key.sign(message).signature).decode()


def signed_request(body: bytes, *, key: SigningKey = SIGNING_KEY, age: float = 0,
                   path_token: str | None = None) -> WebhookRequest:
    now = time.time()
    timestamp = int(now - age)
    headers = {
        "Content-Type": "application/json",
        "Telnyx-Signature-Ed25519": sign(body, timestamp, key),
        "Telnyx-Timestamp": str(timestamp),
    }
    return WebhookRequest("POST", f"{PUBLIC}/webhooks/tx", headers, [], body, "127.0.0.1",
                          path_token=path_token, received_at=now)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@pytest.fixture(scope="module")
def sdk_verify():
    """telnyx-python's verify_webhook_signature, loaded straight from its file so the test
    does not pay for importing the whole generated client (~3 s)."""
    spec = importlib.util.find_spec("telnyx")
    assert spec is not None and spec.origin is not None, "telnyx (test dependency) missing"
    path = Path(spec.origin).parent / "lib" / "webhook_verification.py"
    module_spec = importlib.util.spec_from_file_location("_telnyx_webhook_verification", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


send = CARRIER.send


SUCCESS = {"data": {"record_type": "message", "direction": "outbound",
                    "id": "40385f64-5717-4562-b3fc-2c963f66afa6", "type": "SMS",
                    "from": {"phone_number": "+15551230001"},
                    "to": [{"phone_number": "+15557654321", "status": "queued"}],
                    "text": "héllo 😀", "parts": 1, "encoding": "UCS-2"}}


# --- sending ---------------------------------------------------------------------------------


async def test_send_sms_is_the_documented_request():
    result, (req,) = await send(OutboundSms(7, "+15551230001", "+15557654321", "héllo 😀"),
                                CannedResponse(200, SUCCESS))
    assert result == Sent("40385f64-5717-4562-b3fc-2c963f66afa6", detail="queued")
    assert req.method == "POST"
    assert req.path == "/messages"
    assert req.headers["Authorization"] == f"Bearer {API_KEY}"
    assert req.content_type == "application/json"
    assert req.headers["Idempotency-Key"].startswith("sip-sms-bridge-7-0-")
    assert req.json() == {"from": "+15551230001", "to": "+15557654321", "text": "héllo 😀",
                          "webhook_url": f"{PUBLIC}/webhooks/tx"}


async def test_send_mms_is_the_documented_request():
    msg = OutboundSms(8, "+15551230001", "+15557654321", "",
                      (MediaRef("https://bridge.example.com/media/a.jpg", "image/jpeg"),
                       MediaRef("https://bridge.example.com/media/b.png", "image/png")))
    mms = {"data": {**SUCCESS["data"], "id": "mms-1", "type": "MMS"}}
    result, (req,) = await send(msg, CannedResponse(200, mms), delivery_reports=False,
                                messaging_profile_id="4000eba1-a0c0-4563-9925-b25e842a7cb6")
    assert result == Sent("mms-1", detail="queued")
    assert req.json() == {
        "from": "+15551230001", "to": "+15557654321",
        "media_urls": ["https://bridge.example.com/media/a.jpg",
                       "https://bridge.example.com/media/b.png"],
        "messaging_profile_id": "4000eba1-a0c0-4563-9925-b25e842a7cb6",
    }


async def test_alphanumeric_sender_goes_in_from():
    msg = OutboundSms(9, "", "+447700900123", "hi", sender_id="ACME")
    _, (req,) = await send(msg, CannedResponse(200, SUCCESS), messaging_profile_id="prof-1")
    assert req.json()["from"] == "ACME"
    assert req.json()["messaging_profile_id"] == "prof-1"


async def test_text_over_ten_segments_is_sent_in_parts():
    text = " ".join(["word"] * 400)  # 1,999 GSM-7 characters: 14 segments
    parts = split_for_telnyx(text)
    assert len(parts) == 2 and all(segments(p).count <= 10 for p in parts)
    assert " ".join(parts) == text
    first = {"data": {**SUCCESS["data"], "id": "part-1"}}
    second = {"data": {**SUCCESS["data"], "id": "part-2"}}
    result, reqs = await send(OutboundSms(10, "+15551230001", "+15557654321", text),
                              CannedResponse(200, first), CannedResponse(200, second))
    assert result.carrier_id == "part-1"
    assert [r.json()["text"] for r in reqs] == parts
    keys = {r.headers["Idempotency-Key"] for r in reqs}
    assert len(keys) == 2


def test_unicode_text_splits_at_the_ucs2_limit():
    text = "ü" * 700 + "😀" * 10  # UCS-2, 720 code units
    parts = split_for_telnyx(text)
    assert "".join(parts) == text
    assert all(segments(p).count <= 10 for p in parts)


async def test_a_failed_later_part_is_reported_with_the_part_sent():
    text = " ".join(["word"] * 400)
    first = {"data": {**SUCCESS["data"], "id": "part-1"}}
    result, _ = await send(OutboundSms(11, "+15551230001", "+15557654321", text),
                           CannedResponse(200, first),
                           CannedResponse(500, {"errors": [{"code": "10007",
                                                            "title": "Unexpected error"}]}))
    assert isinstance(result, SendFailed) and result.retryable
    assert result.accepted_parts == ("part-1",)
    assert result.reason.startswith("part 2 of 2 refused (1 sent): ")


def test_stop_blocks_are_opt_outs():
    assert "40300" in TelnyxProvider.opt_out_codes


# --- inbound ---------------------------------------------------------------------------------


def test_inbound_sms_from_the_documented_example(sdk_verify):
    provider = make_provider()
    body = fixture("inbound_sms.json")
    req = signed_request(body)
    sdk_verify.verify_webhook_signature(body, req.headers, PUBLIC_KEY)
    provider.verify(req)
    assert provider.parse(req) == [InboundMessage(
        "7ee4241c-f127-47e5-9c34-3aac291f8058", "+18665550001", "+18445550001",
        "Hello, World!")]


def test_inbound_mms():
    provider = make_provider()
    req = signed_request(fixture("inbound_mms.json"))
    provider.verify(req)
    (event,) = provider.parse(req)
    assert isinstance(event, InboundMessage)
    assert event.text == "Look at this 📷"
    assert event.media == (MediaRef(
        "https://media.telnyx.com/4031938e-60e4-4235-a8dd-0b1c55a23e8a/IMG_0001.jpg",
        "image/jpeg", 183254),)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("message_sent.json", DeliveryReport("40385f64-5717-4562-b3fc-2c963f66afa6",
                                             State.SENT, carrier_status="sent")),
        ("message_finalized_delivered.json",
         DeliveryReport("b301ed3f-1490-491f-995f-6e64e69674d4", State.DELIVERED,
                        carrier_status="delivered")),
        ("message_finalized_failed.json",
         DeliveryReport("e1d7b7b2-5c55-4a8f-9f3c-8a6f0b3c9d21", State.FAILED,
                        carrier_status="delivery_failed",
                        error="40008: Undeliverable: The message was not accepted by the "
                              "carrier.")),
    ],
)
def test_delivery_events_parse(name, expected):
    provider = make_provider()
    req = signed_request(fixture(name))
    provider.verify(req)
    assert provider.parse(req) == [expected]


@pytest.mark.parametrize("status", ["queued", "sending"])
def test_statuses_without_news_are_dropped(status):
    doc = json.loads(fixture("message_sent.json"))
    doc["data"]["payload"]["to"][0]["status"] = status
    req = signed_request(json.dumps(doc).encode())
    assert make_provider().parse(req) == []


def test_other_event_types_are_ignored():
    body = json.dumps({"data": {"event_type": "call.initiated", "id": "x",
                                "payload": {"call_control_id": "y"}}}).encode()
    assert make_provider().parse(signed_request(body)) == []


# --- signatures ------------------------------------------------------------------------------


def test_good_signature_is_accepted_by_us_and_by_the_sdk(sdk_verify):
    body = fixture("message_sent.json")
    req = signed_request(body)
    sdk_verify.verify_webhook_signature(body, req.headers, PUBLIC_KEY)
    make_provider().verify(req)


def test_lowercase_header_names_work():
    req = signed_request(fixture("message_sent.json"))
    headers = {k.lower(): v for k, v in req.headers.items()}
    make_provider().verify(WebhookRequest("POST", req.url, headers, [], req.body, req.remote,
                                          received_at=req.received_at))


@pytest.mark.parametrize("tamper", ["body", "wrong_key", "missing_signature",
                                    "missing_timestamp", "timestamp_changed", "garbage",
                                    "short_signature", "not_a_number", "huge_timestamp"])
def test_bad_signatures_are_refused(tamper, sdk_verify):
    body = fixture("inbound_sms.json")
    req = signed_request(body, key=OTHER_KEY if tamper == "wrong_key" else SIGNING_KEY)
    headers = dict(req.headers)
    if tamper == "body":
        body = body.replace(b"Hello, World!", b"Hello, Moon!!")
    elif tamper == "missing_signature":
        del headers["Telnyx-Signature-Ed25519"]
    elif tamper == "missing_timestamp":
        del headers["Telnyx-Timestamp"]
    elif tamper == "timestamp_changed":
        headers["Telnyx-Timestamp"] = str(int(headers["Telnyx-Timestamp"]) + 1)
    elif tamper == "garbage":
        headers["Telnyx-Signature-Ed25519"] = "not base64 at all!"
    elif tamper == "short_signature":
        headers["Telnyx-Signature-Ed25519"] = base64.b64encode(b"x" * 32).decode()
    elif tamper == "not_a_number":
        headers["Telnyx-Timestamp"] = "yesterday"
    elif tamper == "huge_timestamp":
        headers["Telnyx-Timestamp"] = "9" * 400
    bad = WebhookRequest("POST", req.url, headers, [], body, req.remote,
                         received_at=req.received_at)
    with pytest.raises(WebhookUnauthorized):
        make_provider().verify(bad)
    with pytest.raises(sdk_verify.WebhookVerificationError):
        sdk_verify.verify_webhook_signature(body, headers, PUBLIC_KEY)


@pytest.mark.parametrize("age", [301, -301, 86400])
def test_replays_outside_the_window_are_refused(age):
    req = signed_request(fixture("inbound_sms.json"), age=age)
    with pytest.raises(WebhookUnauthorized):
        make_provider().verify(req)


def test_tolerance_is_configurable():
    req = signed_request(fixture("inbound_sms.json"), age=500)
    make_provider(webhook_tolerance_seconds=600).verify(req)
    with pytest.raises(WebhookUnauthorized):
        make_provider(webhook_tolerance_seconds=60).verify(
            signed_request(fixture("inbound_sms.json"), age=120))


def test_url_token_is_checked_when_configured():
    provider = make_provider(webhook_token="s3cret-path-token")
    with pytest.raises(WebhookUnauthorized):
        provider.verify(signed_request(fixture("inbound_sms.json")))
    with pytest.raises(WebhookUnauthorized):
        provider.verify(signed_request(fixture("inbound_sms.json"), path_token="wrong"))
    provider.verify(signed_request(fixture("inbound_sms.json"), path_token="s3cret-path-token"))


@pytest.mark.parametrize("key", ["not-base64!", base64.b64encode(b"short").decode()])
def test_config_refuses_a_bad_public_key(key):
    with pytest.raises(ValueError, match="public_key"):
        TelnyxConfig(name="tx", type="telnyx", api_key=API_KEY, public_key=key)


def test_api_key_stays_out_of_reprs():
    provider = make_provider()
    assert API_KEY not in repr(provider.config)
    assert API_KEY not in str(provider.config.model_dump())


# --- hostile bodies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe garbage",
        b"not json",
        b"[]",
        b'"a string"',
        b"{}",
        b'{"data": []}',
        b'{"data": {"event_type": 5, "payload": {}}}',
        b'{"data": {"event_type": "message.received"}}',
        b'{"data": {"event_type": "message.received", "payload": []}}',
        b'{"data": {"event_type": "message.received", "payload": {"id": "x"}}}',
        b'{"data": {"event_type": "message.received", "payload": {"id": 5, "from": {}}}}',
        b'{"data": {"event_type": "message.received", "payload": {"id": "x", '
        b'"from": {"phone_number": "+18665550001"}, "to": []}}}',
        b'{"data": {"event_type": "message.received", "payload": {"id": "x", '
        b'"from": {"phone_number": "+18665550001"}, "to": [7]}}}',
        b'{"data": {"event_type": "message.received", "payload": {"id": "x", '
        b'"from": {"phone_number": "not a number"}, '
        b'"to": [{"phone_number": "+18445550001"}]}}}',
        b'{"data": {"event_type": "message.received", "payload": {"id": "x", '
        b'"from": {"phone_number": 18665550001}, '
        b'"to": [{"phone_number": "+18445550001"}]}}}',
        b'{"data": {"event_type": "message.received", "payload": {"id": "x", '
        b'"from": {"phone_number": "+18665550001"}, '
        b'"to": [{"phone_number": "+18445550001"}], "text": ["a"]}}}',
        b'{"data": {"event_type": "message.received", "payload": {"id": "x", '
        b'"from": {"phone_number": "+18665550001"}, '
        b'"to": [{"phone_number": "+18445550001"}], "media": {"url": "x"}}}}',
        b'{"data": {"event_type": "message.received", "payload": {"id": "x", '
        b'"from": {"phone_number": "+18665550001"}, '
        b'"to": [{"phone_number": "+18445550001"}], "media": [{"url": 3}]}}}',
        b'{"data": {"event_type": "message.finalized", "payload": {"id": "x"}}}',
        b'{"data": {"event_type": "message.finalized", "payload": {"id": "x", "to": "y"}}}',
        b'{"data": {"event_type": "message.finalized", "payload": {"id": "x", '
        b'"to": [{"status": null}]}}}',
        b'{"data": {"event_type": "message.finalized", "payload": {"id": ["x"], '
        b'"to": [{"status": "delivered"}]}}}',
    ],
)
def test_hostile_bodies_are_malformed(body):
    with pytest.raises(WebhookMalformed):
        make_provider().parse(signed_request(body))


def test_failure_without_error_detail_still_parses():
    doc = json.loads(fixture("message_finalized_failed.json"))
    doc["data"]["payload"]["errors"] = ["odd"]
    (event,) = make_provider().parse(signed_request(json.dumps(doc).encode()))
    assert event.state is State.FAILED and event.error is None
