"""VoIP.ms adapter: the rest.php calls it makes, the callbacks it accepts, the URL token."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlencode

import pytest

from bridge.model import InboundMessage, MediaRef, OutboundSms, SendFailed, Sent
from bridge.providers.base import WebhookMalformed, WebhookRequest, WebhookUnauthorized
from tests.carrier_server import CannedResponse, CarrierServer
from tests.providers.carriers import VOIPMS as CARRIER
from tests.providers.harness import PUBLIC

USER = CARRIER.fields["api_username"]
PASSWORD = CARRIER.fields["api_password"]
TOKEN = CARRIER.fields["webhook_token"]


make_provider = CARRIER.make


send = CARRIER.send_to


def sms(text: str = "hello", **kw) -> OutboundSms:
    return OutboundSms(1, kw.pop("from_number", "+15145550100"),
                       kw.pop("to_number", "+14165550199"), text, **kw)


def callback(params: dict[str, str] | str, token: str | None = TOKEN) -> WebhookRequest:
    query = params if isinstance(params, str) else urlencode(params)
    path = "/webhooks/vm" + (f"/{token}" if token else "")
    pairs = parse_qsl(query, keep_blank_values=True)
    return WebhookRequest("GET", f"{PUBLIC}{path}?{query}", {}, pairs, b"", "203.0.113.7",
                          path_token=token)


def json_webhook(body: object, token: str | None = TOKEN) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return WebhookRequest("POST", f"{PUBLIC}/webhooks/vm/{token}",
                          {"Content-Type": "application/json"}, [], raw, "203.0.113.7",
                          path_token=token)


# --- outbound ---------------------------------------------------------------------------------


async def test_sms_is_the_documented_post():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {"status": "success", "sms": 23434}))
        result = await send(srv, sms("héllo 😀 & co"))
    assert result == Sent("23434")
    (req,) = srv.requests
    assert (req.method, req.path) == ("POST", "/api/v1/rest.php")
    assert req.content_type == "application/x-www-form-urlencoded"
    assert req.query == []  # the password stays out of the URL
    assert req.form() == [
        ("api_username", USER), ("api_password", PASSWORD), ("method", "sendSMS"),
        ("did", "5145550100"), ("dst", "4165550199"), ("message", "héllo 😀 & co"),
    ]


async def test_sms_as_get_puts_the_parameters_in_the_query():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {"status": "success", "sms": "9"}))
        result = await send(srv, sms("hi"), request_method="GET")
    assert result == Sent("9")
    (req,) = srv.requests
    assert req.method == "GET"
    assert dict(req.query) == {"api_username": USER, "api_password": PASSWORD,
                               "method": "sendSMS", "did": "5145550100",
                               "dst": "4165550199", "message": "hi"}


async def test_long_sms_is_split_at_160_characters():
    text = " ".join(["word"] * 70)  # 349 characters
    async with CarrierServer() as srv:
        srv.respond(*(CannedResponse(200, {"status": "success", "sms": str(n)})
                      for n in (1, 2, 3)))
        result = await send(srv, sms(text))
    assert result == Sent("1", "3 parts", ("1", "2", "3"))
    parts = [dict(r.form())["message"] for r in srv.requests]
    assert len(parts) == 3 and all(len(p) <= 160 for p in parts)
    assert " ".join(parts) == text


async def test_long_text_as_mms_when_configured():
    text = "x" * 400
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {"status": "success", "mms": "77"}))
        result = await send(srv, sms(text), long_text_as_mms=True)
    assert result == Sent("77")
    (req,) = srv.requests
    assert dict(req.form())["method"] == "sendMMS"
    assert dict(req.form())["message"] == text


async def test_failure_after_a_sent_part_keeps_the_part_sent():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {"status": "success", "sms": "1"}),
                    CannedResponse(503, "busy"))
        result = await send(srv, sms("a " * 150))
    assert isinstance(result, SendFailed) and result.retryable  # a 503
    assert result.accepted_parts == ("1",)
    assert "part 2 of 2 refused" in result.reason


async def test_mms_sends_three_media_per_request():
    media = tuple(MediaRef(f"https://cdn.example.com/{n}.jpg", "image/jpeg") for n in range(4))
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {"status": "success", "mms": "501"}),
                    CannedResponse(200, {"status": "success", "mms": "502"}))
        result = await send(srv, sms("look", media=media))
    assert result == Sent("501", "2 parts", ("501", "502"))
    first, second = (r.form() for r in srv.requests)
    assert first[2:] == [("method", "sendMMS"), ("did", "5145550100"), ("dst", "4165550199"),
                         ("message", "look"), ("media1", media[0].url),
                         ("media2", media[1].url), ("media3", media[2].url)]
    assert second[2:] == [("method", "sendMMS"), ("did", "5145550100"),
                          ("dst", "4165550199"), ("media1", media[3].url)]


async def test_configured_retryable_status():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {"status": "sms_failed"}))
        result = await send(srv, sms(), retryable_statuses=("sms_failed",))
    assert isinstance(result, SendFailed) and result.retryable


@pytest.mark.parametrize("kw", [{"to_number": "+447700900123"}, {"sender_id": "ACME"}])
async def test_unsupported_destinations_fail_without_a_request(kw):
    async with CarrierServer() as srv:
        result = await send(srv, sms(**kw))
    assert isinstance(result, SendFailed) and not result.retryable
    assert srv.requests == []


def test_secrets_stay_out_of_reprs():
    provider = make_provider()
    assert PASSWORD not in repr(provider.config) and TOKEN not in repr(provider.config)
    assert PASSWORD not in repr(provider)


# --- inbound ----------------------------------------------------------------------------------


def test_webhook_url_is_the_callback_template():
    url = make_provider().webhook_url(masked=True)
    assert url == (f"{PUBLIC}/webhooks/vm/<webhook_token>?to={{TO}}&from={{FROM}}"
                   "&message={MESSAGE}&id={ID}&date={TIMESTAMP}&media={MEDIA}")


def test_legacy_callback_sms():
    provider = make_provider()
    req = callback({"to": "5145550100", "from": "4165550199", "message": "Salut, ça va?",
                    "id": "88123", "date": "2024-10-28 10:59:07", "media": "{MEDIA}"})
    provider.verify(req)
    assert provider.parse(req) == [
        InboundMessage("88123", "+14165550199", "+15145550100", "Salut, ça va?")]
    answer = provider.answer([])
    assert (answer.status, answer.body) == (200, "ok")


def test_legacy_callback_mms_and_eleven_digit_numbers():
    provider = make_provider()
    req = callback({"to": "15145550100", "from": "+14165550199", "message": "",
                    "id": "9", "date": "2024-10-28 10:59:07",
                    "media": "https://voip.ms/media/a.jpg,https://voip.ms/media/b.png"})
    (event,) = provider.parse(req)
    assert (event.from_number, event.to_number, event.text) == (
        "+14165550199", "+15145550100", "")
    assert [m.url for m in event.media] == ["https://voip.ms/media/a.jpg",
                                           "https://voip.ms/media/b.png"]


def test_semicolon_separated_callback_template():
    provider = make_provider()
    req = callback("to=5145550100;from=4165550199;message=hi%20there;id=5;date=x;media=")
    assert provider.parse(req) == [
        InboundMessage("5", "+14165550199", "+15145550100", "hi there")]


def test_each_segment_callback_is_its_own_message():
    provider = make_provider()
    one = callback({"to": "5145550100", "from": "4165550199", "message": "a" * 153, "id": "1"})
    two = callback({"to": "5145550100", "from": "4165550199", "message": "b", "id": "2"})
    events = provider.parse(one) + provider.parse(two)
    assert [(e.carrier_id, e.part) for e in events] == [("1", None), ("2", None)]


def test_json_webhook():
    provider = make_provider()
    body = {"data": {"id": "evt-1", "event_type": "message.received", "payload": {
        "id": "msg-42", "direction": "inbound", "type": "MMS",
        "from": {"phone_number": "+14165550199"},
        "to": [{"phone_number": "+15145550100"}],
        "text": "pic", "received_at": "2025-01-02T03:04:05Z",
        "media": [{"url": "https://voip.ms/m/1.jpg", "content_type": "image/jpeg"}]}}}
    req = json_webhook(body)
    provider.verify(req)
    assert provider.parse(req) == [InboundMessage(
        "msg-42", "+14165550199", "+15145550100", "pic",
        (MediaRef("https://voip.ms/m/1.jpg", "image/jpeg"),))]


def test_json_webhook_other_events_carry_nothing():
    provider = make_provider()
    req = json_webhook({"data": {"id": "e", "event_type": "message.sent", "payload": {}}})
    assert provider.parse(req) == []


@pytest.mark.parametrize(("token", "configured"),
                         [(None, TOKEN), ("wrong", TOKEN), (TOKEN, None)])
def test_url_token_is_required(token, configured):
    provider = make_provider(webhook_token=configured)
    req = callback({"to": "5145550100", "from": "4165550199", "message": "x", "id": "1"},
                   token=token)
    with pytest.raises(WebhookUnauthorized):
        provider.verify(req)


@pytest.mark.parametrize(
    "params",
    [
        {"to": "5145550100", "from": "4165550199", "message": "x"},  # no id
        {"to": "5145550100", "from": "{FROM}", "message": "x", "id": "1"},
        {"to": "5145550100", "from": "not-a-number", "message": "x", "id": "1"},
        {},
    ],
)
def test_bad_callbacks_are_malformed(params):
    with pytest.raises(WebhookMalformed):
        make_provider().parse(callback(params))


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe\x00garbage", b"[1, 2]", b"null", b'"text"',
        {"data": []}, {"data": {"payload": "x"}},
        {"data": {"payload": {"id": "1", "from": {"phone_number": 5}, "to": [], "text": "x"}}},
        {"data": {"payload": {"id": "1", "from": "+14165550199",
                              "to": [{"phone_number": "+15145550100"}], "text": 7}}},
        {"data": {"payload": {"id": "1", "from": "+14165550199",
                              "to": "+15145550100", "media": "x"}}},
        {"data": {"payload": {"id": ["1"], "from": "+14165550199", "to": "+15145550100"}}},
        {"data": {"payload": {"id": "1", "from": "+14165550199", "to": "+15145550100",
                              "media": [3]}}},
    ],
)
def test_hostile_json_is_malformed(body):
    with pytest.raises(WebhookMalformed):
        make_provider().parse(json_webhook(body))
