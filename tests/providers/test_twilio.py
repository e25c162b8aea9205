"""Twilio adapter: the request it sends, the webhooks it accepts, signed by Twilio's own SDK."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator, get_signature_algorithm

from bridge.model import DeliveryReport, InboundMessage, OutboundSms, Sent, State
from bridge.providers.base import WebhookRequest, WebhookUnauthorized
from bridge.providers.twilio import TwilioProvider, twilio_signature
from bridge.secrets import secret_values
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


# --- JSON webhooks (bodySHA256) and SharedKey signatures, signed by the SDK -------------------

JSON_BODY = '{"MessageSid": "SM1", "MessageStatus": "delivered"}'


def test_json_webhook_signed_with_body_sha256_by_the_sdk_passes_and_a_changed_body_fails():
    provider = make_provider()
    validator = RequestValidator(TOKEN)
    url = f"{provider.webhook_url()}?bodySHA256={validator.compute_hash(JSON_BODY)}"
    signature = validator.compute_signature(url, {})
    assert validator.validate(url, JSON_BODY, signature)
    headers = {"X-Twilio-Signature": signature, "Content-Type": "application/json"}
    provider.verify(WebhookRequest("POST", url, headers, [], JSON_BODY.encode(), "127.0.0.1"))
    with pytest.raises(WebhookUnauthorized, match="bodySHA256"):
        provider.verify(WebhookRequest("POST", url, headers, [],
                                       JSON_BODY.replace("SM1", "SM2").encode(), "127.0.0.1"))


SHARED_ID, SHARED_SECRET = "webhooks_sharedkey_01", "shared-key-secret-01"
NEXT_ID, NEXT_SECRET = "webhooks_sharedkey_02", "shared-key-secret-02"
PARAMS = {"MessageSid": "SM1", "From": "+14155550100", "To": "+14155550199", "Body": "x"}


def shared_key_request(provider, secret: str, settings: str | None, algorithm: str):
    url = provider.webhook_url()
    signature = RequestValidator(secret).compute_signature(url, PARAMS, algorithm)
    headers = {"X-Twilio-Signature": signature,
               "Content-Type": "application/x-www-form-urlencoded"}
    if settings is not None:
        headers["X-Twilio-Webhooks-Signature-Settings"] = settings
    return WebhookRequest("POST", url, headers, [], urlencode(PARAMS).encode(), "127.0.0.1")


def shared_key_provider():
    return make_provider(webhook_shared_keys={SHARED_ID: SHARED_SECRET,
                                              NEXT_ID: {"env": "TWILIO_NEXT_SHARED_KEY"}})


@pytest.mark.parametrize(("settings", "algorithm"), [
    (f"key={SHARED_ID},algorithm=HMAC_SHA256", "HMAC_SHA256"),
    (f"key={SHARED_ID},algorithm=HMAC_SHA1", "HMAC_SHA1"),
    (f" algorithm=hmac_sha256 , key={SHARED_ID} ", "HMAC_SHA256"),
    (f"key={SHARED_ID}", "HMAC_SHA1"),  # no algorithm named: the SDK's HMAC_SHA1
])
def test_shared_key_signatures_from_the_sdk_pass(monkeypatch, settings, algorithm):
    monkeypatch.setenv("TWILIO_NEXT_SHARED_KEY", NEXT_SECRET)
    provider = shared_key_provider()
    req = shared_key_request(provider, SHARED_SECRET, settings, algorithm)
    sdk_algorithm = get_signature_algorithm(settings)
    assert RequestValidator(SHARED_SECRET).validate(
        req.url, PARAMS, req.headers["X-Twilio-Signature"], sdk_algorithm.upper())
    provider.verify(req)


def test_both_keys_pass_while_a_shared_key_is_rotated(monkeypatch):
    monkeypatch.setenv("TWILIO_NEXT_SHARED_KEY", NEXT_SECRET)
    provider = shared_key_provider()
    for key_id, secret in ((SHARED_ID, SHARED_SECRET), (NEXT_ID, NEXT_SECRET)):
        provider.verify(shared_key_request(
            provider, secret, f"key={key_id},algorithm=HMAC_SHA256", "HMAC_SHA256"))


@pytest.mark.parametrize(("secret", "settings", "algorithm", "reason"), [
    # a key the config does not list: refused, naming it
    (SHARED_SECRET, "key=webhooks_sharedkey_99,algorithm=HMAC_SHA256", "HMAC_SHA256",
     "'webhooks_sharedkey_99', which is not in"),
    # the right key but the other key's secret
    (NEXT_SECRET, f"key={SHARED_ID},algorithm=HMAC_SHA256", "HMAC_SHA256", "does not match"),
    # a hash other than the one the header names
    (SHARED_SECRET, f"key={SHARED_ID},algorithm=HMAC_SHA256", "HMAC_SHA1", "does not match"),
    # an algorithm Twilio does not document
    (SHARED_SECRET, f"key={SHARED_ID},algorithm=HMAC_MD5", "HMAC_SHA1", "HMAC_MD5"),
    # the auth token's signature with a SharedKey header, and a SharedKey's without one
    (TOKEN, f"key={SHARED_ID},algorithm=HMAC_SHA1", "HMAC_SHA1", "does not match"),
    (SHARED_SECRET, None, "HMAC_SHA1", "does not match"),
])
def test_shared_key_signatures_that_do_not_hold_are_refused(monkeypatch, secret, settings,
                                                             algorithm, reason):
    monkeypatch.setenv("TWILIO_NEXT_SHARED_KEY", NEXT_SECRET)
    provider = shared_key_provider()
    with pytest.raises(WebhookUnauthorized, match=reason):
        provider.verify(shared_key_request(provider, secret, settings, algorithm))


def test_a_shared_key_header_without_configured_keys_is_refused_not_an_error():
    provider = make_provider()
    req = shared_key_request(provider, SHARED_SECRET, f"key={SHARED_ID},algorithm=HMAC_SHA256",
                             "HMAC_SHA256")
    with pytest.raises(WebhookUnauthorized, match="webhook_shared_keys"):
        provider.verify(req)


def test_shared_key_secrets_are_redacted_and_never_in_reprs(monkeypatch):
    monkeypatch.setenv("TWILIO_NEXT_SHARED_KEY", NEXT_SECRET)
    config = shared_key_provider().config
    assert {SHARED_SECRET, NEXT_SECRET} <= set(secret_values(config))
    assert SHARED_SECRET not in repr(config) and NEXT_SECRET not in repr(config)
