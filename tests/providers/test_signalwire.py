"""SignalWire adapter: the request it sends, the webhooks it accepts.

Neither SignalWire SDK can sign a webhook, so test requests are signed with Twilio's official
``RequestValidator`` keyed with the Signing Key (what SignalWire's own legacy Python SDK does)
or, for JSON, with the formula, and every signed request is also checked with SignalWire's
current SDK validator (``signalwire-sdk``). The SDK's published test vectors are checked too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from bridge.model import (
    DeliveryReport,
    InboundMessage,
    MediaRef,
    OutboundSms,
    Sent,
    State,
)
from bridge.providers.base import WebhookMalformed, WebhookRequest, WebhookUnauthorized
from bridge.providers.signalwire import (
    SignalWireProvider,
    scheme_a_signature,
    scheme_b_signature,
)
from tests.carrier_server import CannedResponse, CarrierServer
from tests.providers.carriers import SIGNALWIRE as CARRIER
from tests.providers.harness import PUBLIC

PROJECT = CARRIER.fields["project_id"]
API_TOKEN = CARRIER.fields["api_token"]
SIGNING_KEY = CARRIER.fields["signing_key"]
SID = "0a059168-ead0-41af-9d1f-343dae832527"


make_provider = CARRIER.make


def form_request(params: dict[str, str] | list[tuple[str, str]], *, key: str = SIGNING_KEY,
                 header: str = "X-SignalWire-Signature", url: str | None = None,
                 path_token: str | None = None) -> WebhookRequest:
    url = url or f"{PUBLIC}/webhooks/sw"
    items = list(params.items()) if isinstance(params, dict) else params
    signature = RequestValidator(key).compute_signature(url, dict(items))
    return WebhookRequest("POST", url, {header: signature,
                                        "Content-Type": "application/x-www-form-urlencoded"},
                          [], urlencode(items).encode(), "127.0.0.1", path_token=path_token)


@pytest.fixture(scope="module")
def sw_validator():
    import signalwire.core.security.webhook_validator as validator  # test dependency

    return validator


send = CARRIER.send


def created(sid: str = SID, **fields) -> CannedResponse:
    body = {"account_sid": PROJECT, "api_version": "2010-04-01", "body": "Hello World!",
            "num_segments": 1, "num_media": 0, "date_created": "Mon, 13 Aug 2018 21:38:46 +0000",
            "date_sent": None, "date_updated": "Mon, 13 Aug 2018 21:38:46 +0000",
            "direction": "outbound-api", "error_code": None, "error_message": None,
            "from": "+15551234567", "price": None, "price_unit": "USD", "sid": sid,
            "status": "queued", "to": "+15557654321", "messaging_service_sid": None,
            "uri": f"/api/laml/2010-04-01/Accounts/{PROJECT}/Messages/{sid}", **fields}
    return CannedResponse(201, body)


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["example", "Example", "example.signalwire.com",
                                   "https://example.signalwire.com/"])
def test_space_becomes_the_api_base(space):
    provider = make_provider(space=space)
    assert provider.config.space == "example"
    assert provider.api_base == "https://example.signalwire.com"


@pytest.mark.parametrize("space", ["", "exa mple", "-x", "a/b", "evil.com/x"])
def test_bad_space_is_refused(space):
    with pytest.raises(ValueError, match="space"):
        make_provider(space=space)


def test_secrets_stay_out_of_reprs():
    cfg = make_provider().config
    for secret in (API_TOKEN, SIGNING_KEY):
        assert secret not in repr(cfg)
        assert secret not in str(cfg.model_dump())


# --- sending ---------------------------------------------------------------------------------


async def test_send_sms_is_the_documented_request():
    result, (req,) = await send(OutboundSms(1, "+15551234567", "+15557654321", "héllo 😀"),
                                created())
    assert result == Sent(SID, detail="queued")
    assert req.method == "POST"
    assert req.path == f"/api/laml/2010-04-01/Accounts/{PROJECT}/Messages.json"
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(
        f"{PROJECT}:{API_TOKEN}".encode()).decode()
    assert req.content_type == "application/x-www-form-urlencoded"
    assert req.form() == [("To", "+15557654321"), ("From", "+15551234567"),
                          ("Body", "héllo 😀"), ("StatusCallback", f"{PUBLIC}/webhooks/sw")]


async def test_send_mms_is_the_documented_request():
    msg = OutboundSms(2, "+15551234567", "+15557654321", "pics",
                      (MediaRef("https://bridge.example.com/media/a.jpg", "image/jpeg"),
                       MediaRef("https://bridge.example.com/media/b.png", "image/png")))
    result, (req,) = await send(msg, created(num_media=2), status_callback=False)
    assert result == Sent(SID, detail="queued")
    assert req.form() == [("To", "+15557654321"), ("From", "+15551234567"), ("Body", "pics"),
                          ("MediaUrl", "https://bridge.example.com/media/a.jpg"),
                          ("MediaUrl", "https://bridge.example.com/media/b.png")]


async def test_body_over_1600_characters_is_sent_in_parts():
    text = " ".join(["word"] * 500)  # 2,499 characters
    result, reqs = await send(OutboundSms(3, "+15551234567", "+15557654321", text),
                              created("p1"), created("p2"))
    assert result.carrier_id == "p1"
    bodies = [dict(r.form())["Body"] for r in reqs]
    assert all(len(b) <= 1600 for b in bodies) and " ".join(bodies) == text


def test_opt_out_codes():
    assert {"21610", "30004"} <= SignalWireProvider.opt_out_codes


# --- signatures: published vectors ------------------------------------------------------------


def test_published_vectors(sw_validator):
    body_a = b'{"event":"call.state","params":{"call_id":"abc-123","state":"answered"}}'
    assert scheme_a_signature(SIGNING_KEY, "https://example.ngrok.io/webhook", body_a) == \
        "c3c08c1fefaf9ee198a100d5906765a6f394bf0f"
    params = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675309"), ("Digits", "1234"),
              ("From", "+14158675309"), ("To", "+18005551212")]
    assert scheme_b_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2",
                              params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    url_json = ("https://example.ngrok.io/webhook?bodySHA256="
                "69f3cbfc18e386ef8236cb7008cd5a54b7fed637a8cb3373b5a1591d7f0fd5f4")
    assert scheme_b_signature(SIGNING_KEY, url_json, []) == "dfO9ek8mxyFtn2nMz24plPmPfIY="
    # and the SDK agrees on all three
    assert sw_validator.validate_webhook_signature(
        SIGNING_KEY, "c3c08c1fefaf9ee198a100d5906765a6f394bf0f",
        "https://example.ngrok.io/webhook", body_a.decode())
    assert sw_validator.validate_request("12345", "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
                                         "https://mycompany.com/myapp.php?foo=1&bar=2",
                                         dict(params))
    assert sw_validator.validate_webhook_signature(
        SIGNING_KEY, "dfO9ek8mxyFtn2nMz24plPmPfIY=", url_json, '{"event":"call.state"}')


@pytest.mark.parametrize(
    ("url", "body", "signature"),
    [
        ("https://example.ngrok.io/webhook",
         b'{"event":"call.state","params":{"call_id":"abc-123","state":"answered"}}',
         "c3c08c1fefaf9ee198a100d5906765a6f394bf0f"),
        ("https://example.ngrok.io/webhook?bodySHA256="
         "69f3cbfc18e386ef8236cb7008cd5a54b7fed637a8cb3373b5a1591d7f0fd5f4",
         b'{"event":"call.state"}', "dfO9ek8mxyFtn2nMz24plPmPfIY="),
    ],
)
def test_json_vectors_pass_verify(url, body, signature):
    req = WebhookRequest("POST", url, {"X-SignalWire-Signature": signature,
                                       "Content-Type": "application/json"},
                         [], body, "127.0.0.1")
    make_provider().verify(req)


def test_body_sha256_must_match_the_body():
    url = ("https://example.ngrok.io/webhook?bodySHA256="
           "69f3cbfc18e386ef8236cb7008cd5a54b7fed637a8cb3373b5a1591d7f0fd5f4")
    req = WebhookRequest("POST", url, {"X-SignalWire-Signature": "dfO9ek8mxyFtn2nMz24plPmPfIY="},
                         [], b'{"event":"call.other"}', "127.0.0.1")
    with pytest.raises(WebhookUnauthorized):
        make_provider().verify(req)


def test_sha256_header_is_accepted():
    url, body = f"{PUBLIC}/webhooks/sw", b'{"event":"message.received"}'
    sig = hmac.new(SIGNING_KEY.encode(), url.encode() + body, hashlib.sha256).hexdigest()
    make_provider().verify(WebhookRequest("POST", url, {"X-SignalWire-Sha256-Signature": sig},
                                          [], body, "127.0.0.1"))
    with pytest.raises(WebhookUnauthorized):
        make_provider().verify(WebhookRequest(
            "POST", url, {"X-SignalWire-Sha256-Signature": sig}, [], body + b" ", "127.0.0.1"))


# --- inbound and status callbacks ------------------------------------------------------------

INBOUND_MMS = {
    "MessageSid": "8b0f5f4a-3b39-4d0d-a0a4-05d3e2a0c8f1", "SmsSid": "8b0f5f4a-3b39-4d0d-a0a4-"
    "05d3e2a0c8f1", "AccountSid": PROJECT, "From": "+15557654321", "To": "+15551234567",
    "Body": "Hi 👋", "NumMedia": "1", "NumSegments": "1", "SmsStatus": "received",
    "MessageStatus": "received", "ApiVersion": "2010-04-01",
    "MediaUrl0": f"https://example.signalwire.com/api/laml/2010-04-01/Accounts/{PROJECT}/"
                 "Messages/8b0f5f4a-3b39-4d0d-a0a4-05d3e2a0c8f1/Media/"
                 "5d8c3c0e-1b7e-4a9f-8a55-1c2f3e4d5a6b",
    "MediaContentType0": "image/jpeg",
}


def test_inbound_mms_signed_like_signalwire_parses(sw_validator):
    provider = make_provider()
    req = form_request(INBOUND_MMS)
    assert sw_validator.validate_webhook_signature(
        SIGNING_KEY, req.headers["X-SignalWire-Signature"], req.url, req.body.decode())
    provider.verify(req)
    (event,) = provider.parse(req)
    assert event == InboundMessage(
        "8b0f5f4a-3b39-4d0d-a0a4-05d3e2a0c8f1", "+15557654321", "+15551234567", "Hi 👋",
        (MediaRef(INBOUND_MMS["MediaUrl0"], "image/jpeg"),))
    answer = provider.answer([event])
    assert answer.content_type == "text/xml" and "<Response>" in answer.body


async def test_inbound_media_on_the_space_host_is_fetched_with_the_project_credentials():
    """SignalWire's Media sub-resource lives on the Space host and takes the API's Basic
    credentials (project id + API token)."""
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, b"\xff\xd8jpeg", {"Content-Type": "image/jpeg"}))
        provider = make_provider(api_base=srv.url)
        await provider.start()
        try:
            media_url = (f"{srv.url}/api/laml/2010-04-01/Accounts/{PROJECT}/Messages/{SID}"
                         "/Media/ME123")
            data, ctype = await provider.fetch_media(media_url)
        finally:
            await provider.close()
    assert (data, ctype) == (b"\xff\xd8jpeg", "image/jpeg")
    expected = base64.b64encode(f"{PROJECT}:{API_TOKEN}".encode()).decode()
    assert srv.requests[0].headers["Authorization"] == f"Basic {expected}"


async def test_media_elsewhere_gets_no_credentials():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(200, b"gif", {"Content-Type": "image/gif"}))
        provider = make_provider()  # api_base is the real Space host, not this server
        await provider.start()
        try:
            await provider.fetch_media(f"{srv.url}/media/a.gif")
        finally:
            await provider.close()
    assert "Authorization" not in srv.requests[0].headers


def test_twilio_alias_header_is_accepted():
    make_provider().verify(form_request(INBOUND_MMS, header="X-Twilio-Signature"))


def test_lowercase_header_is_accepted():
    make_provider().verify(form_request(INBOUND_MMS, header="x-signalwire-signature"))


def test_repeated_names_in_submission_order_are_accepted(sw_validator):
    url = f"{PUBLIC}/webhooks/sw"
    params = [("MessageSid", SID), ("Tag", "zeta"), ("Tag", "alpha")]
    signature = scheme_b_signature(SIGNING_KEY, url, params)
    body = urlencode(params)
    assert sw_validator.validate_webhook_signature(SIGNING_KEY, signature, url, body)
    make_provider().verify(WebhookRequest("POST", url, {"X-SignalWire-Signature": signature},
                                          [], body.encode(), "127.0.0.1"))


def test_signature_with_explicit_default_port(sw_validator):
    url = f"{PUBLIC}/webhooks/sw"
    signed_url = url.replace("bridge.example.com", "bridge.example.com:443")
    signature = RequestValidator(SIGNING_KEY).compute_signature(signed_url, INBOUND_MMS)
    body = urlencode(INBOUND_MMS)
    assert sw_validator.validate_webhook_signature(SIGNING_KEY, signature, url, body)
    make_provider().verify(WebhookRequest("POST", url, {"X-SignalWire-Signature": signature},
                                          [], body.encode(), "127.0.0.1"))


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        ("sent", "", DeliveryReport(SID, State.SENT, carrier_status="sent")),
        ("delivered", "", DeliveryReport(SID, State.DELIVERED, carrier_status="delivered")),
        ("undelivered", "30004", DeliveryReport(SID, State.FAILED, carrier_status="undelivered",
                                                error="30004: Message blocked or opted out")),
        ("failed", "30008", DeliveryReport(SID, State.FAILED, carrier_status="failed",
                                           error="30008: Unknown error")),
    ],
)
def test_status_callbacks_parse(status, error, expected):
    params = {"MessageSid": SID, "SmsSid": SID, "AccountSid": PROJECT,
              "From": "+15551234567", "To": "+15557654321", "MessageStatus": status,
              "SmsStatus": status, "ApiVersion": "2010-04-01"}
    if error:
        params["ErrorCode"] = error
        params["ErrorMessage"] = expected.error.split(": ", 1)[1]
    provider = make_provider()
    req = form_request(params)
    provider.verify(req)
    assert provider.parse(req) == [expected]


@pytest.mark.parametrize("status", ["queued", "sending", "accepted"])
def test_statuses_without_news_are_dropped(status):
    req = form_request({"MessageSid": SID, "MessageStatus": status})
    assert make_provider().parse(req) == []


@pytest.mark.parametrize("tamper", ["body", "wrong_key", "auth_token_key", "missing", "url",
                                    "twilio_header_wrong"])
def test_bad_signatures_are_refused(tamper, sw_validator):
    key = {"wrong_key": "PSKwrong", "auth_token_key": API_TOKEN}.get(tamper, SIGNING_KEY)
    req = form_request(INBOUND_MMS, key=key)
    headers, body, url = dict(req.headers), req.body, req.url
    if tamper == "body":
        body = body.replace(b"NumMedia=1", b"NumMedia=2")
    elif tamper == "missing":
        headers.pop("X-SignalWire-Signature")
    elif tamper == "url":
        url += "?x=1"
    elif tamper == "twilio_header_wrong":
        headers = {"X-Twilio-Signature": "AAAA" + headers.pop("X-SignalWire-Signature")[4:]}
    bad = WebhookRequest("POST", url, headers, [], body, "127.0.0.1")
    with pytest.raises(WebhookUnauthorized):
        make_provider().verify(bad)
    signature = headers.get("X-SignalWire-Signature") or headers.get("X-Twilio-Signature", "")
    assert not sw_validator.validate_webhook_signature(SIGNING_KEY, signature, url,
                                                       body.decode())


def test_url_token_is_checked_when_configured():
    provider = make_provider(webhook_token="s3cret-path-token")
    url = f"{PUBLIC}/webhooks/sw/s3cret-path-token"
    with pytest.raises(WebhookUnauthorized):
        provider.verify(form_request(INBOUND_MMS, url=url))
    with pytest.raises(WebhookUnauthorized):
        provider.verify(form_request(INBOUND_MMS, url=url, path_token="wrong"))
    provider.verify(form_request(INBOUND_MMS, url=url, path_token="s3cret-path-token"))


# --- hostile bodies --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"From": "+15557654321", "To": "+15551234567", "Body": "x"},
        {"MessageSid": SID, "From": "nobody", "To": "+15551234567"},
        {"MessageSid": SID, "From": "+15557654321"},
        {"MessageSid": SID, "From": "+15557654321", "To": "+15551234567", "NumMedia": "lots"},
    ],
)
def test_hostile_forms_are_malformed(params):
    with pytest.raises(WebhookMalformed):
        make_provider().parse(form_request(params))


def test_non_utf8_body_is_refused():
    url = f"{PUBLIC}/webhooks/sw"
    body = b"MessageSid=\xff\xfe"
    signature = scheme_a_signature(SIGNING_KEY, url, body)
    req = WebhookRequest("POST", url, {"X-SignalWire-Signature": signature}, [], body,
                         "127.0.0.1")
    make_provider().verify(req)  # scheme A signs raw bytes
    with pytest.raises(WebhookMalformed):
        make_provider().parse(req)
    garbage = WebhookRequest("POST", url, {"X-SignalWire-Signature": "x"}, [], body,
                             "127.0.0.1")
    with pytest.raises(WebhookUnauthorized):
        make_provider().verify(garbage)


def test_json_body_is_not_mistaken_for_a_form():
    body = json.dumps({"MessageSid": SID}).encode()
    req = WebhookRequest("POST", f"{PUBLIC}/webhooks/sw", {"Content-Type": "application/json"},
                         [], body, "127.0.0.1")
    with pytest.raises(WebhookMalformed):
        make_provider().parse(req)


async def test_more_than_ten_media_go_in_further_messages():
    """SignalWire documents "up to a maximum of 10 media URLs per message"."""
    media = tuple(MediaRef(f"https://cdn.example.com/{n}.jpg") for n in range(12))
    result, reqs = await send(OutboundSms(7, "+15551234567", "+15557654321", "pics", media),
                              created("m1"), created("m2"))
    assert result == Sent("m1", "2 parts", ("m1", "m2"))
    counts = [sum(1 for k, _ in r.form() if k == "MediaUrl") for r in reqs]
    assert counts == [10, 2]
    assert [dict(r.form())["Body"] for r in reqs] == ["pics", ""]
