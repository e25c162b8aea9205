"""Twilio adapter: the request it sends, the webhooks it accepts, signed by Twilio's own SDK."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from bridge.model import DeliveryReport, InboundMessage, OutboundSms, Sent, State
from bridge.providers.base import WebhookRequest, WebhookUnauthorized
from bridge.providers.twilio import TwilioProvider, twilio_signature
from tests.carrier_server import CannedResponse, CarrierServer
from tests.providers.carriers import TWILIO as CARRIER
from tests.providers.harness import PUBLIC

SID = CARRIER.fields["account_sid"]
TOKEN = CARRIER.fields["auth_token"]



make_provider = CARRIER.make


def signed_request(provider: TwilioProvider, params: dict[str, str], token: str = TOKEN):
    url = provider.webhook_url()
    signature = RequestValidator(token).compute_signature(url, params)
    return WebhookRequest(
        method="POST", url=url,
        headers={"X-Twilio-Signature": signature,
                 "Content-Type": "application/x-www-form-urlencoded"},
        query=[], body=urlencode(params).encode(), remote="127.0.0.1",
    )


def test_signature_matches_published_vector():
    params = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675309"),
              ("Digits", "1234"), ("From", "+14158675309"), ("To", "+18005551212")]
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert twilio_signature("12345", url, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="


async def test_send_is_the_documented_request():
    async with CarrierServer() as srv:
        srv.respond(CannedResponse(201, {"sid": "SM" + "1" * 32, "status": "queued"}))
        provider = make_provider(srv.url)
        await provider.start()
        try:
            result = await provider.send(OutboundSms(1, "+15551230001", "+15557654321",
                                                     "héllo 😀"))
        finally:
            await provider.close()
    assert result == Sent("SM" + "1" * 32, detail="queued")
    (req,) = srv.requests
    assert req.method == "POST"
    assert req.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert req.content_type == "application/x-www-form-urlencoded"
    assert req.headers["Authorization"] == "Basic " + base64.b64encode(
        f"{SID}:{TOKEN}".encode()).decode()
    form = dict(req.form())
    assert form["To"] == "+15557654321"
    assert form["From"] == "+15551230001"
    assert form["Body"] == "héllo 😀"
    assert form["StatusCallback"] == f"{PUBLIC}/webhooks/tw"


def test_inbound_mms_signed_by_sdk_parses():
    provider = make_provider()
    params = {
        "MessageSid": "MM" + "a" * 32, "SmsSid": "MM" + "a" * 32, "AccountSid": SID,
        "From": "+14155550100", "To": "+14155550199", "Body": "Hi 👋", "NumMedia": "1",
        "MediaUrl0": "https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM/Media/ME1",
        "MediaContentType0": "image/jpeg", "NumSegments": "1", "SmsStatus": "received",
    }
    req = signed_request(provider, params)
    provider.verify(req)
    (event,) = provider.parse(req)
    assert isinstance(event, InboundMessage)
    assert event.carrier_id == "MM" + "a" * 32
    assert (event.from_number, event.to_number, event.text) == (
        "+14155550100", "+14155550199", "Hi 👋")
    assert event.media[0].content_type == "image/jpeg"


@pytest.mark.parametrize(
    ("status", "state"),
    [("delivered", State.DELIVERED), ("undelivered", State.FAILED), ("sent", State.SENT)],
)
def test_status_callback_parses(status, state):
    provider = make_provider()
    req = signed_request(provider, {"MessageSid": "SM1", "MessageStatus": status,
                                    "ErrorCode": "30003" if state is State.FAILED else "",
                                    "AccountSid": SID, "From": "+1", "To": "+2"})
    provider.verify(req)
    (event,) = provider.parse(req)
    assert event == DeliveryReport("SM1", state, carrier_status=status,
                                   error="30003" if state is State.FAILED else None)


def test_queued_status_carries_no_event():
    provider = make_provider()
    req = signed_request(provider, {"MessageSid": "SM1", "MessageStatus": "queued"})
    assert provider.parse(req) == []


@pytest.mark.parametrize("tamper", ["wrong_token", "body", "missing", "url"])
def test_bad_signatures_are_refused(tamper):
    provider = make_provider()
    params = {"MessageSid": "SM1", "From": "+14155550100", "To": "+14155550199", "Body": "x"}
    req = signed_request(provider, params, token="wrong" if tamper == "wrong_token" else TOKEN)
    if tamper == "body":
        req = WebhookRequest(req.method, req.url, req.headers, [],
                             req.body.replace(b"Body=x", b"Body=y"), req.remote)
    elif tamper == "missing":
        req = WebhookRequest(req.method, req.url, {}, [], req.body, req.remote)
    elif tamper == "url":
        req = WebhookRequest(req.method, req.url + "?x=1", req.headers, [], req.body,
                             req.remote)
    with pytest.raises(WebhookUnauthorized):
        provider.verify(req)


def test_signature_accepted_with_explicit_default_port():
    provider = make_provider()
    params = {"MessageSid": "SM1", "From": "+14155550100", "To": "+14155550199", "Body": "x"}
    url = provider.webhook_url().replace("bridge.example.com", "bridge.example.com:443")
    signature = RequestValidator(TOKEN).compute_signature(url, params)
    req = WebhookRequest("POST", provider.webhook_url(), {"X-Twilio-Signature": signature},
                         [], urlencode(params).encode(), "127.0.0.1")
    provider.verify(req)


class _MultiDict(dict):
    """A form with repeated names, as the SDK's validator reads one (``getlist``)."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        super().__init__(items)
        self._items = items

    def getlist(self, name: str) -> list[str]:
        return [v for k, v in self._items if k == name]


def test_repeated_identical_values_are_signed_once_as_the_sdk_does():
    """twilio-python request_validator.py signs ``sorted(set(values))`` per name."""
    provider = make_provider()
    url = provider.webhook_url()
    items = [("MessageSid", "SM" + "b" * 32), ("From", "+14155550100"), ("To", "+14155550199"),
             ("Body", "x"), ("Tag", "same"), ("Tag", "same"), ("Tag", "other")]
    signature = RequestValidator(TOKEN).compute_signature(url, _MultiDict(items))
    assert RequestValidator(TOKEN).validate(url, _MultiDict(items), signature)
    req = WebhookRequest("POST", url, {"X-Twilio-Signature": signature,
                                       "Content-Type": "application/x-www-form-urlencoded"},
                         [], urlencode(items).encode(), "127.0.0.1")
    provider.verify(req)
