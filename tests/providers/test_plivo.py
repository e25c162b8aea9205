"""Plivo adapter: the request it sends, the webhooks it accepts, checked with Plivo's own SDK."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import pytest
from plivo.utils import validate_signature
from plivo.utils.signature_v3 import construct_post_url, get_signature_v3, validate_v3_signature

from bridge.model import (
    DeliveryReport,
    InboundMessage,
    MediaRef,
    OutboundSms,
    Sent,
    State,
)
from bridge.providers.base import WebhookMalformed, WebhookRequest, WebhookUnauthorized
from bridge.providers.plivo import (
    PlivoProvider,
    plivo_v2_signature,
    plivo_v3_signature,
)
from tests.carrier_server import CannedResponse, CarrierServer, send_once
from tests.providers.carriers import PLIVO as CARRIER
from tests.providers.harness import PUBLIC

AUTH_ID = CARRIER.fields["auth_id"]
TOKEN = CARRIER.fields["auth_token"]
SEND_OK = {"api_id": "948b53a2-3f08-11e7-b6f4-061564b78b75", "message": "message(s) queued",
           "message_uuid": ["5b40a428-bfc7-4daf-9d06-726c558bf3b8"]}


make_provider = CARRIER.make


send_via = send_once


def test_v2_signature_matches_published_vector():
    assert plivo_v2_signature("my_auth_token", "https://answer.url", "12345") == (
        "ehV3IKhLysWBxC1sy8INm0qGoQYdYsHwuoKjsX7FsXc=")
    assert validate_signature("https://answer.url", "12345",
                              plivo_v2_signature("my_auth_token", "https://answer.url?a=1",
                                                 "12345"), "my_auth_token")


@pytest.mark.parametrize("url", ["https://bridge.example.com/webhooks/pl",
                                 "https://bridge.example.com/webhooks/pl?b=2&a=1&a=0"])
def test_v3_signature_matches_sdk(url):
    params = [("From", "14155550100"), ("To", "14155550199"), ("Text", "hi & bye=1")]
    mine = plivo_v3_signature(TOKEN, "POST", url, params, "987654")
    assert validate_v3_signature("POST", url, "987654", TOKEN, mine, dict(params))
    get_sig = plivo_v3_signature(TOKEN, "GET", url, params, "987654")
    assert validate_v3_signature("GET", url, "987654", TOKEN, get_sig, dict(params))


async def test_sms_send_is_the_documented_request():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(202, SEND_OK))
        result = await send_via(make_provider(srv.url),
                                OutboundSms(1, "+14155550100", "+14155550199", "héllo 😀"))
    assert result == Sent("5b40a428-bfc7-4daf-9d06-726c558bf3b8", detail="message(s) queued")
    (req,) = srv.requests
    assert (req.method, req.path) == ("POST", f"/v1/Account/{AUTH_ID}/Message/")
    assert req.content_type == "application/json"
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(
        f"{AUTH_ID}:{TOKEN}".encode()).decode()
    assert req.json() == {"src": "14155550100", "dst": "14155550199", "text": "héllo 😀",
                          "type": "sms", "url": f"{PUBLIC}/webhooks/pl", "method": "POST"}


async def test_mms_send_is_the_documented_request():
    media = (MediaRef("https://cdn.example.com/a.jpg", "image/jpeg"),
             MediaRef("https://cdn.example.com/b.png"))
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(202, SEND_OK))
        result = await send_via(make_provider(srv.url, status_callback=False),
                                OutboundSms(2, "+14155550100", "+14155550199", "pics", media))
    assert isinstance(result, Sent)
    assert srv.requests[0].json() == {
        "src": "14155550100", "dst": "14155550199", "text": "pics", "type": "mms",
        "media_urls": ["https://cdn.example.com/a.jpg", "https://cdn.example.com/b.png"]}


async def test_powerpack_is_used_when_there_is_no_sender():
    uuid = "d35f2e82-d387-427f-8594-6fa07613c43a"
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(202, SEND_OK))
        await send_via(make_provider(srv.url, powerpack_uuid=uuid),
                       OutboundSms(1, "", "+14155550199", "x"))
    body = srv.requests[0].json()
    assert body["powerpack_uuid"] == uuid and "src" not in body


# --- webhooks --------------------------------------------------------------------------------

def v2_request(provider: PlivoProvider, params: dict[str, str], *, token: str = TOKEN,
               header: str = "X-Plivo-Signature-V2", nonce: str = "05429567804466091622",
               method: str = "POST") -> WebhookRequest:
    url = provider.webhook_url()
    signature = plivo_v2_signature(token, url, nonce)
    assert validate_signature(url, nonce, signature, token)  # the SDK agrees
    headers = {header: signature, "X-Plivo-Signature-V2-Nonce": nonce,
               "Content-Type": "application/x-www-form-urlencoded"}
    if method == "GET":
        return WebhookRequest("GET", f"{url}?{urlencode(params)}", headers,
                              list(params.items()), b"", "127.0.0.1")
    return WebhookRequest("POST", url, headers, [], urlencode(params).encode(), "127.0.0.1")


def v3_request(provider: PlivoProvider, params: dict[str, str], token: str = TOKEN,
               nonce: str = "31625369542326471") -> WebhookRequest:
    url = provider.webhook_url()
    signature = get_signature_v3(token, construct_post_url(url, dict(params)), nonce).decode()
    headers = {"X-Plivo-Signature-V3": f"other-signature,{signature}",
               "X-Plivo-Signature-V3-Nonce": nonce,
               "Content-Type": "application/x-www-form-urlencoded"}
    return WebhookRequest("POST", url, headers, [], urlencode(params).encode(), "127.0.0.1")


INBOUND_SMS = {"From": "14155550100", "To": "14155550199", "Type": "sms",
               "Text": "Hello, this is a long message that Plivo joined", "Units": "2",
               "MessageUUID": "a1b2c3d4-0000-1111-2222-333344445555", "TotalRate": "0.00000",
               "TotalAmount": "0.00000", "MessageIntent": "", "PowerpackUUID": ""}
INBOUND_MMS = {"From": "14155550100", "To": "14155550199", "Type": "mms", "Body": "hi",
               "MessageUUID": "b1b2c3d4-0000-1111-2222-333344445555", "Units": "1",
               "MediaCount": "2", "Media1": "https://media.plivo.com/Account/MA/Media/1",
               "Media2": "https://media.plivo.com/Account/MA/Media/2", "TotalRate": "0.0",
               "TotalAmount": "0.0", "PowerpackUUID": ""}


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_inbound_sms_parses(method):
    provider = make_provider()
    req = v2_request(provider, INBOUND_SMS, method=method)
    provider.verify(req)
    assert provider.parse(req) == [InboundMessage(
        "a1b2c3d4-0000-1111-2222-333344445555", "+14155550100", "+14155550199",
        "Hello, this is a long message that Plivo joined")]


def test_inbound_mms_parses():
    provider = make_provider()
    req = v2_request(provider, INBOUND_MMS, header="X-Plivo-Signature-Ma-V2")
    provider.verify(req)
    (event,) = provider.parse(req)
    assert event.text == "hi"
    assert event.media == (MediaRef("https://media.plivo.com/Account/MA/Media/1"),
                           MediaRef("https://media.plivo.com/Account/MA/Media/2"))


def test_inbound_mms_with_zero_based_media_parses():
    provider = make_provider()
    params = dict(INBOUND_MMS, MediaCount="1", Media0="https://media.plivo.com/0")
    del params["Media1"], params["Media2"]
    (event,) = provider.parse(v2_request(provider, params))
    assert event.media == (MediaRef("https://media.plivo.com/0"),)


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        ("delivered", "000", DeliveryReport("parent-uuid", State.DELIVERED, "delivered")),
        ("sent", "", DeliveryReport("parent-uuid", State.SENT, "sent")),
        ("undelivered", "200", DeliveryReport("parent-uuid", State.FAILED, "undelivered",
                                              "200")),
        ("failed", "450", DeliveryReport("parent-uuid", State.FAILED, "failed", "450")),
        ("queued", "", None),
    ],
)
def test_status_callbacks_parse(status, error, expected):
    provider = make_provider()
    params = {"MessageUUID": "part-2-uuid", "ParentMessageUUID": "parent-uuid",
              "PartInfo": "2 of 2", "From": "14155550100", "To": "14155550199",
              "Status": status, "ErrorCode": error, "Units": "1", "TotalRate": "0.0035",
              "TotalAmount": "0.0035", "MCC": "310", "MNC": "260", "Type": "sms",
              "Sequence": "2", "MessageTime": "2024-01-01 12:00:00"}
    req = v2_request(provider, params)
    provider.verify(req)
    assert provider.parse(req) == ([expected] if expected else [])
    if expected and expected.error == "200":
        assert expected.error in provider.opt_out_codes


@pytest.mark.parametrize("tamper", ["wrong_token", "missing", "no_nonce", "nonce", "url"])
def test_bad_v2_signatures_are_refused(tamper):
    provider = make_provider()
    req = v2_request(provider, INBOUND_SMS, token="wrong" if tamper == "wrong_token" else TOKEN)
    headers = dict(req.headers)
    if tamper == "missing":
        del headers["X-Plivo-Signature-V2"]
    elif tamper == "no_nonce":
        del headers["X-Plivo-Signature-V2-Nonce"]
    elif tamper == "nonce":
        headers["X-Plivo-Signature-V2-Nonce"] = "1"
    url = req.url.replace("/webhooks/pl", "/webhooks/other") if tamper == "url" else req.url
    with pytest.raises(WebhookUnauthorized):
        provider.verify(WebhookRequest(req.method, url, headers, [], req.body, req.remote))


def test_v3_signed_by_sdk_is_accepted():
    provider = make_provider(signature_version="v3")
    req = v3_request(provider, INBOUND_SMS)
    provider.verify(req)
    assert provider.parse(req)[0].carrier_id == INBOUND_SMS["MessageUUID"]


@pytest.mark.parametrize("tamper", ["wrong_token", "body", "missing", "v2_only"])
def test_bad_v3_signatures_are_refused(tamper):
    provider = make_provider(signature_version="v3")
    if tamper == "v2_only":
        req = v2_request(provider, INBOUND_SMS)
    else:
        req = v3_request(provider, INBOUND_SMS,
                         token="wrong" if tamper == "wrong_token" else TOKEN)
    if tamper == "body":
        req = WebhookRequest(req.method, req.url, req.headers, [],
                             req.body.replace(b"Hello", b"Jello"), req.remote)
    elif tamper == "missing":
        req = WebhookRequest(req.method, req.url, {}, [], req.body, req.remote)
    with pytest.raises(WebhookUnauthorized):
        provider.verify(req)


def test_url_token_is_checked_before_the_signature():
    provider = make_provider(webhook_token="tok-123456")
    req = v2_request(provider, INBOUND_SMS)
    with pytest.raises(WebhookUnauthorized):
        provider.verify(req)  # no path token
    provider.verify(WebhookRequest(req.method, req.url, req.headers, [], req.body, req.remote,
                                   path_token="tok-123456"))


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe\x00", b"From=14155550100&To=14155550199",
     urlencode(dict(INBOUND_SMS, From="nonsense")).encode(),
     urlencode(dict(INBOUND_SMS, To="")).encode(),
     urlencode(dict(INBOUND_MMS, MediaCount="lots")).encode()],
)
def test_hostile_bodies_are_malformed(body):
    provider = make_provider()
    req = WebhookRequest("POST", provider.webhook_url(),
                         {"Content-Type": "application/x-www-form-urlencoded"}, [], body,
                         "127.0.0.1")
    with pytest.raises(WebhookMalformed):
        provider.parse(req)


def test_secrets_stay_out_of_reprs():
    provider = make_provider()
    assert TOKEN not in repr(provider.config) + repr(provider)
