"""VoiceMeUp adapter: the queue_sms form, inbound webhooks (split MMS), the URL token."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest

from bridge.model import InboundMessage, MediaRef, OutboundSms, SendFailed, Sent
from bridge.providers.base import WebhookMalformed, WebhookRequest, WebhookUnauthorized
from tests.carrier_server import CannedResponse, CarrierServer
from tests.providers.carriers import VOICEMEUP as CARRIER
from tests.providers.carriers import voicemeup_error as error
from tests.providers.harness import PUBLIC

USER = CARRIER.fields["username"]
AUTH_TOKEN = CARRIER.fields["auth_token"]
TOKEN = CARRIER.fields["webhook_token"]


def success(sms_hash: str = "hash-42") -> dict:
    return {"response_details": {"response_status": "success", "response_messages": {
        "message": [{"code": "queued_sms_hash", "_content": sms_hash}]}}}


make_provider = CARRIER.make


send = CARRIER.send_to


def webhook(body: dict | bytes, *, form: bool = False, token: str | None = TOKEN,
            ) -> WebhookRequest:
    if form and isinstance(body, dict):
        raw, ctype = urlencode(body).encode(), "application/x-www-form-urlencoded"
    else:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        ctype = "application/json"
    return WebhookRequest("POST", f"{PUBLIC}/webhooks/vmu/{token}", {"Content-Type": ctype},
                          [], raw, "192.0.2.80", path_token=token)


# A real inbound MMS payload, as quoted in roomkit's tests.
REAL_MMS = {
    "sms_log_id": "5236238", "sms_hash": "ce650cb8-1c2d-a751-d397-31b901ec4efd",
    "datetime": "2026-01-28 10:29:05", "date": "2026-01-28", "time": "10:29:02",
    "direction": "inbound", "source_number": "14188050723",
    "destination_number": "14184805945", "client_did_id": "87289", "message": "",
    "attachment": "https://clients.voicemeup.com/file/ce650cb8.mms.jpg",
    "attachment_size": "93002", "attachment_mime_type": "image/jpeg", "status": "enabled",
    "transmission_status": "completed", "datetime_transmission": "2026-01-28 10:29:02",
}


async def test_sms_is_the_documented_form():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, success("hash-42")))
        result = await send(srv, OutboundSms(1, "+15145551234", "+15145559999",
                                             "Bonjour, ça va? 😀"))
    assert result == Sent("hash-42")
    (req,) = srv.requests
    assert (req.method, req.path) == ("POST", "/api/v1.1/json/queue_sms")
    assert req.content_type == "application/x-www-form-urlencoded"
    assert req.query == []
    assert req.form() == [("username", USER), ("auth_token", AUTH_TOKEN),
                          ("source_number", "15145551234"),
                          ("destination_number", "15145559999"),
                          ("message", "Bonjour, ça va? 😀")]


async def test_mms_sends_one_attachment_per_request():
    media = (MediaRef("https://example.com/a.jpg"), MediaRef("https://example.com/b.jpg"))
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, success("h1")), CannedResponse(200, success("h2")))
        result = await send(srv, OutboundSms(2, "+15145551234", "+15145559999", "Check this!",
                                             media))
    assert result == Sent("h1", "2 parts", ("h1", "h2"))
    first, second = (dict(r.form()) for r in srv.requests)
    assert (first["message"], first["attachment"]) == ("Check this!", media[0].url)
    assert "message" not in second and second["attachment"] == media[1].url


async def test_long_text_is_split_at_1000():
    async with CarrierServer() as srv:
        srv.respond(*(CannedResponse(200, success(f"h{n}")) for n in range(3)))
        result = await send(srv, OutboundSms(3, "+15145551234", "+15145559999", "A" * 2500))
    assert result == Sent("h0", "3 parts", ("h0", "h1", "h2"))
    assert [len(dict(r.form())["message"]) for r in srv.requests] == [1000, 1000, 500]


async def test_429_with_retry_after():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(429, "slow", {"Retry-After": "3"}))
        result = await send(srv, OutboundSms(1, "+15145551234", "+15145559999", "x"))
    assert isinstance(result, SendFailed) and result.retryable and result.retry_after == 3.0


async def test_configured_retryable_code():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, error("queue_full")))
        result = await send(srv, OutboundSms(1, "+15145551234", "+15145559999", "x"),
                            retryable_codes=("queue_full",))
    assert isinstance(result, SendFailed) and result.retryable


def test_inbound_sms():
    provider = make_provider()
    req = webhook({"message": "Hello from user", "source_number": "+15145551111",
                   "destination_number": "+15145552222", "direction": "inbound",
                   "sms_hash": "hash-abc", "datetime_transmission": "2026-01-27T10:30:00Z"})
    provider.verify(req)
    assert provider.parse(req) == [InboundMessage(
        "hash-abc", "+15145551111", "+15145552222", "Hello from user")]


def test_inbound_real_mms_payload_as_form():
    (event,) = make_provider().parse(webhook(REAL_MMS, form=True))
    assert event == InboundMessage(
        "ce650cb8-1c2d-a751-d397-31b901ec4efd", "+14188050723", "+14184805945", "",
        (MediaRef("https://clients.voicemeup.com/file/ce650cb8.mms.jpg", "image/jpeg"),))


def test_split_mms_is_two_messages_and_the_wrapper_is_dropped():
    provider = make_provider()
    first = {**REAL_MMS, "sms_hash": "c3efc8a3", "message": "Look at this photo!",
             "attachment": "https://clients.voicemeup.com/file/c3efc8a3.mms.html",
             "attachment_mime_type": "text/html", "attachment_size": "343"}
    second = {**REAL_MMS, "sms_hash": "249fad7f",
              "attachment": "https://clients.voicemeup.com/file/249fad7f.mms.jpg"}
    events = provider.parse(webhook(first)) + provider.parse(webhook(second))
    assert events == [
        InboundMessage("c3efc8a3", "+14188050723", "+14184805945", "Look at this photo!"),
        InboundMessage("249fad7f", "+14188050723", "+14184805945", "",
                       (MediaRef("https://clients.voicemeup.com/file/249fad7f.mms.jpg",
                                 "image/jpeg"),)),
    ]


def test_wrapper_without_text_yields_nothing():
    body = {**REAL_MMS, "attachment": "https://clients.voicemeup.com/file/x.mms.html",
            "attachment_mime_type": "text/html"}
    assert make_provider().parse(webhook(body)) == []


def test_legacy_attachment_fields_and_outbound_echo():
    provider = make_provider()
    (event,) = provider.parse(webhook({
        "message": "", "source_number": "+15145551111", "destination_number": "+15145552222",
        "sms_hash": "hash-mms2", "attachment_url": "https://cdn.voicemeup.com/img.jpg",
        "attachment_type": "image/jpeg"}))
    assert event.media == (MediaRef("https://cdn.voicemeup.com/img.jpg", "image/jpeg"),)
    assert provider.parse(webhook({**REAL_MMS, "direction": "outbound"})) == []


@pytest.mark.parametrize(("token", "configured"),
                         [(None, TOKEN), ("nope", TOKEN), (TOKEN, None)])
def test_url_token_is_required(token, configured):
    provider = make_provider(webhook_token=configured)
    with pytest.raises(WebhookUnauthorized):
        provider.verify(webhook(REAL_MMS, token=token))


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x01", b"[\"a\"]", b"3.5",
        {"destination_number": "14184805945", "message": "x"},
        {"source_number": "14188050723", "message": "x"},
        {"source_number": "14188050723", "destination_number": "14184805945", "message": 1},
        {"source_number": "14188050723", "destination_number": "14184805945",
         "attachment": ["https://x/y.jpg"]},
        {"source_number": "14188050723", "destination_number": "14184805945",
         "attachment": "https://x/y.jpg", "attachment_mime_type": 7},
        {"source_number": "nope", "destination_number": "14184805945", "message": "x"},
        {"direction": 1, "source_number": "14188050723"},
    ],
)
def test_hostile_bodies_are_malformed(body):
    with pytest.raises(WebhookMalformed):
        make_provider().parse(webhook(body))
