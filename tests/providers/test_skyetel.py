"""Skyetel adapter: the /v1/out request, the callback it accepts, the URL token."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlencode

import pytest

from bridge.model import InboundMessage, MediaRef, OutboundSms, SendFailed, Sent
from bridge.providers.base import WebhookMalformed, WebhookRequest, WebhookUnauthorized
from tests.carrier_server import CannedResponse, CarrierServer
from tests.providers.carriers import SKYETEL as CARRIER
from tests.providers.harness import PUBLIC

SID = CARRIER.fields["sid"]
SECRET = CARRIER.fields["secret"]
TOKEN = CARRIER.fields["webhook_token"]


make_provider = CARRIER.make


send = CARRIER.send_to


def webhook(body: object, token: str | None = TOKEN) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return WebhookRequest("POST", f"{PUBLIC}/webhooks/sky/{token}",
                          {"Content-Type": "application/json"}, [], raw, "203.0.113.50",
                          path_token=token)


async def test_sms_is_the_documented_request():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {"id": "sk-1"}))
        result = await send(srv, OutboundSms(1, "+15558004321", "+15558001234",
                                             "You are awesome 😀"))
    assert result == Sent("sk-1")
    (req,) = srv.requests
    assert (req.method, req.path, req.query) == ("POST", "/v1/out", [("from", "15558004321")])
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(
        f"{SID}:{SECRET}".encode()).decode()
    assert req.content_type == "application/json"
    assert req.json() == {"to": "15558001234", "text": "You are awesome 😀"}


async def test_mms_and_an_undocumented_empty_answer():
    media = (MediaRef("https://media.giphy.com/media/LXONhtCmN32YU/giphy-tumblr.gif"),)
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, ""))
        result = await send(srv, OutboundSms(2, "+15558004321", "+15558001234",
                                             "ARRR! THE SHIP BE SINKING!", media))
    assert isinstance(result, Sent) and result.carrier_id.startswith("skyetel-")
    assert srv.requests[0].json() == {"to": "15558001234", "text": "ARRR! THE SHIP BE SINKING!",
                                      "media": [media[0].url]}


async def test_text_over_1024_characters_is_split():
    text = "y" * 2100
    async with CarrierServer() as srv:
        srv.respond(*(CannedResponse(200, {"id": f"p{n}"}) for n in range(3)))
        result = await send(srv, OutboundSms(3, "+15558004321", "+15558001234", text))
    assert result == Sent("p0", "3 parts", ("p0", "p1", "p2"))
    assert "".join(r.json()["text"] for r in srv.requests) == text


async def test_failure_after_a_sent_part_keeps_the_part_sent():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, {}), CannedResponse(500, "boom"))
        result = await send(srv, OutboundSms(3, "+15558004321", "+15558001234", "z" * 1500))
    assert isinstance(result, SendFailed) and result.retryable  # a 500: worth another try
    assert len(result.accepted_parts) == 1 and "part 2 of 2 refused" in result.reason


async def test_403_can_be_made_permanent():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(403, "Forbidden"))
        result = await send(srv, OutboundSms(1, "+15558004321", "+15558001234", "x"),
                            retry_403=False)
    assert isinstance(result, SendFailed) and not result.retryable


def test_inbound_sms_and_mms():
    provider = make_provider()
    req = webhook({"to": "15558004321", "from": "15558001234", "text": "Hi!",
                   "media": ["https://sms.skyetel.com/media/abc.jpg"]})
    provider.verify(req)
    (event,) = provider.parse(req)
    assert isinstance(event, InboundMessage)
    assert (event.from_number, event.to_number, event.text) == (
        "+15558001234", "+15558004321", "Hi!")
    assert event.media == (MediaRef("https://sms.skyetel.com/media/abc.jpg"),)
    assert event.carrier_id.startswith("skyetel-")


def test_inbound_get_callback():
    provider = make_provider()
    params = {"to": "15558004321", "from": "+15558001234", "text": "via GET", "id": "42"}
    req = WebhookRequest("GET", f"{PUBLIC}/webhooks/sky/{TOKEN}?{urlencode(params)}", {},
                         list(params.items()), b"", "203.0.113.50", path_token=TOKEN)
    assert provider.parse(req) == [
        InboundMessage("42", "+15558001234", "+15558004321", "via GET")]


@pytest.mark.parametrize(("token", "configured"),
                         [(None, TOKEN), ("nope", TOKEN), (TOKEN, None)])
def test_url_token_is_required(token, configured):
    provider = make_provider(webhook_token=configured)
    with pytest.raises(WebhookUnauthorized):
        provider.verify(webhook({"to": "1", "from": "2", "text": "x"}, token=token))


@pytest.mark.parametrize(
    "body",
    [
        b"\x89PNG", b"[]", b"true",
        {"from": "15558001234", "text": "x"},
        {"to": "15558004321", "text": "x"},
        {"to": "15558004321", "from": "15558001234", "text": 5},
        {"to": "15558004321", "from": "15558001234", "text": "x", "media": {"a": 1}},
        {"to": "15558004321", "from": "15558001234", "text": "x", "media": [None]},
        {"to": "15558004321", "from": "12", "text": "x"},
    ],
)
def test_hostile_bodies_are_malformed(body):
    with pytest.raises(WebhookMalformed):
        make_provider().parse(webhook(body))
