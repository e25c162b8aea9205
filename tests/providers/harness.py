"""One table of carriers for the tests every carrier must pass the same way.

Each ``Carrier`` row says how to build the adapter against a local ``CarrierServer``, what the
carrier answers when it accepts or refuses one API call (its documented bodies), and where a
recorded request carries the text. Tests parametrize over ``SPLITTING`` instead of each carrier
module repeating them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bridge.providers.bandwidth import BandwidthConfig, BandwidthProvider
from bridge.providers.base import Provider
from bridge.providers.plivo import PlivoConfig, PlivoProvider
from bridge.providers.signalwire import SignalWireConfig, SignalWireProvider
from bridge.providers.twilio import TwilioConfig, TwilioProvider
from bridge.providers.vonage import VonageConfig, VonageProvider
from tests.carrier_server import CannedResponse, RecordedRequest

PUBLIC = "https://bridge.example.com"
PROJECT = "ea108133-d6b3-407c-9536-9fad8a929a6a"


@dataclass(frozen=True)
class Carrier:
    name: str
    make: Callable[[str], Provider]  # api_base -> adapter
    accepted: Callable[[str], CannedResponse]  # carrier id -> the carrier's success answer
    refused: CannedResponse  # a permanent refusal of one call
    busy: CannedResponse  # a refusal worth retrying
    text_of: Callable[[RecordedRequest], str]
    limit: int  # characters of GSM-7 text one call may carry

    def __str__(self) -> str:
        return self.name


def _twilio(api_base: str) -> Provider:
    return TwilioProvider(TwilioConfig(
        name="tw", type="twilio", account_sid="AC" + "0123456789abcdef" * 2,
        auth_token="twilio-test-auth-token", api_base=api_base, timeout_seconds=2,
        status_callback=False), public_url=PUBLIC)


def _signalwire(api_base: str) -> Provider:
    return SignalWireProvider(SignalWireConfig(
        name="sw", type="signalwire", space="example", project_id=PROJECT,
        api_token="PTda745eb0123456789abcdef", signing_key="PSKtest1234567890abcdef",
        api_base=api_base, timeout_seconds=2, status_callback=False), public_url=PUBLIC)


def _plivo(api_base: str) -> Provider:
    return PlivoProvider(PlivoConfig(
        name="pl", type="plivo", auth_id="MAXXXXXXXXXXXXXXXXXX", auth_token="plivo-test-token",
        api_base=api_base, timeout_seconds=2), public_url=PUBLIC)


def _vonage_messages(api_base: str) -> Provider:
    return VonageProvider(VonageConfig(
        name="vg", type="vonage", api="messages", api_key="abcd1234",
        api_secret="vonage-api-secret-0", signature_secret="vonage-signature-secret-32-bytes",
        api_base=api_base, timeout_seconds=2, status_callback=False), public_url=PUBLIC)


def _bandwidth(api_base: str) -> Provider:
    return BandwidthProvider(BandwidthConfig(
        name="bw", type="bandwidth", account_id="9900000",
        application_id="93de2206-9669-4e07-948d-329f4b722ee2", username="api-user",
        password="bandwidth-api-password", webhook_username="bw-callbacks",
        webhook_password="callback-password", api_base=api_base, timeout_seconds=2),
        public_url=PUBLIC)


def _form_body(req: RecordedRequest) -> str:
    return dict(req.form())["Body"]


_TWILIO_REFUSED = CannedResponse(400, {"code": 21211, "message": "Invalid 'To' Phone Number",
                                       "status": 400})
_TWILIO_BUSY = CannedResponse(503, {"code": 20503, "message": "Service Unavailable"})

SPLITTING: list[Carrier] = [
    Carrier("twilio", _twilio, lambda i: CannedResponse(201, {"sid": i, "status": "queued"}),
            _TWILIO_REFUSED, _TWILIO_BUSY, _form_body, 1600),
    Carrier("signalwire", _signalwire,
            lambda i: CannedResponse(201, {"sid": i, "status": "queued"}),
            _TWILIO_REFUSED, _TWILIO_BUSY, _form_body, 1600),
    Carrier("plivo", _plivo,
            lambda i: CannedResponse(202, {"api_id": "a1", "message": "message(s) queued",
                                           "message_uuid": [i]}),
            CannedResponse(400, {"api_id": "a2", "error": "invalid dst"}),
            CannedResponse(500, {"api_id": "a3", "error": "internal error"}),
            lambda r: r.json()["text"], 1600),
    Carrier("vonage-messages", _vonage_messages,
            lambda i: CannedResponse(202, {"message_uuid": i}),
            CannedResponse(422, {"type": "https://developer.vonage.com/api-errors/messages#1150",
                                 "title": "Invalid params", "detail": "bad to"}),
            CannedResponse(503, {"title": "Service Unavailable"}),
            lambda r: r.json()["text"], 1000),
    Carrier("bandwidth", _bandwidth, lambda i: CannedResponse(202, {"id": i}),
            CannedResponse(400, {"type": "request-validation", "description": "bad to"}),
            CannedResponse(503, {"type": "service-unavailable", "description": "busy"}),
            lambda r: r.json()["text"], 2048),
]
