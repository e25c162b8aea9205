"""The carrier table the tests feed on: one ``Carrier`` row per adapter (see harness.py).

Each row's refusals are the carrier's documented error answers (sources in the adapter's
docstring) and how the adapter must classify them.
"""

from __future__ import annotations

import base64

from nacl.signing import SigningKey

from bridge.model import OutboundSms
from bridge.providers.bandwidth import BandwidthProvider
from bridge.providers.commio import CommioProvider
from bridge.providers.flowroute import FlowrouteProvider
from bridge.providers.plivo import PlivoProvider
from bridge.providers.questblue import QuestBlueProvider
from bridge.providers.signalwire import SignalWireProvider
from bridge.providers.sinch import SinchProvider
from bridge.providers.skyetel import SkyetelProvider
from bridge.providers.telnyx import TelnyxProvider
from bridge.providers.twilio import TwilioProvider
from bridge.providers.voicemeup import VoiceMeUpProvider
from bridge.providers.voipms import VoipmsProvider
from bridge.providers.vonage import VonageProvider
from bridge.providers.voxtelesys import VoxtelesysProvider
from bridge.providers.wavix import WavixProvider
from tests.carrier_server import CannedResponse, RecordedRequest
from tests.providers.harness import Carrier, Refusal, Split

US_A, US_B = "+15551230001", "+15557654321"
TELNYX_SIGNING_KEY = SigningKey(bytes(range(32)))  # fixed seed: reproducible signatures


def _form_body(req: RecordedRequest) -> str:
    return dict(req.form())["Body"]


def _json_text(req: RecordedRequest) -> str:
    return req.json()["text"]


def voicemeup_error(code: str, content: str = "") -> dict:
    return {"response_details": {"response_status": "error", "response_messages": {
        "message": [{"code": code, "_content": content or code}]}}}


_TWILIO_REFUSED = CannedResponse(400, {"code": 21211, "message": "Invalid 'To' Phone Number",
                                       "status": 400})
_TWILIO_BUSY = CannedResponse(503, {"code": 20503, "message": "Service Unavailable"})
_TWILIO_BUSY_REFUSALS = (
    Refusal(429, {"code": 20429, "message": "Too Many Requests"}, True, "20429",
            {"Retry-After": "3"}),
    Refusal(500, {"code": 20500, "message": "Internal Server Error"}, True, "20500"),
    Refusal(503, "<html>unavailable</html>", True, "503"),
)
# SignalWire speaks Twilio's format, with the same 1,600-character Body limit
_TWILIO_SPLIT = Split(lambda i: CannedResponse(201, {"sid": i, "status": "queued"}),
                      _TWILIO_REFUSED, _TWILIO_BUSY, _form_body, 1600)

TWILIO = Carrier(
    TwilioProvider, "tw",
    {"account_sid": "AC" + "0123456789abcdef" * 2, "auth_token": "twilio-test-auth-token"},
    "https://api.twilio.com", OutboundSms(1, US_A, US_B, "x"),
    (Refusal(400, {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400},
             False, "21211"),
     Refusal(400, {"code": 21610, "message": "Attempt to send to unsubscribed recipient"},
             False, "21610"),
     *_TWILIO_BUSY_REFUSALS),
    _TWILIO_SPLIT,
)

SIGNALWIRE = Carrier(
    SignalWireProvider, "sw",
    {"space": "example", "project_id": "ea108133-d6b3-407c-9536-9fad8a929a6a",
     "api_token": "PTda745eb0123456789abcdefsignalwire", "signing_key": "PSKtest1234567890abcdef"},
    None, OutboundSms(1, "+15551234567", US_B, "x"),
    (Refusal(400, {"code": 21610, "message": "Attempt to send to unsubscribed recipient",
                   "more_info": "https://developer.signalwire.com/compatibility-api/reference/"
                                "error-codes", "status": 400}, False, "21610"),
     Refusal(400, {"code": 21212, "message": "Phone number is not in the correct format.",
                   "status": 400}, False, "21212"),
     Refusal(401, {"errors": [{"code": "unauthorized", "message": "Unauthorized"}]}, False,
             "unauthorized"),
     *_TWILIO_BUSY_REFUSALS),
    _TWILIO_SPLIT,
)

TELNYX = Carrier(
    TelnyxProvider, "tx",
    {"api_key": "KEY0123456789ABCDEF_telnyx-test-key",
     "public_key": base64.b64encode(bytes(TELNYX_SIGNING_KEY.verify_key)).decode()},
    "https://api.telnyx.com/v2", OutboundSms(1, US_A, US_B, "x"),
    (Refusal(400, {"errors": [{"code": "10002", "title": "Invalid phone number",
                               "detail": "The 'to' number is invalid.",
                               "source": {"pointer": "/to"}}]}, False, "10002"),
     Refusal(409, {"errors": [{"code": "40300", "title": "Blocked due to STOP message",
                               "detail": "Messages cannot be sent from '+15551230001' to "
                                         "'+15557654321' due to an existing block rule."}]},
             False, "40300"),
     Refusal(401, {"errors": [{"code": "10009", "title": "Authentication failed"}]}, False,
             "10009"),
     Refusal(429, {"errors": [{"code": "10011", "title": "Too many requests"}]}, True, "10011",
             {"Retry-After": "3"}),
     Refusal(500, {"errors": [{"code": "10007", "title": "Unexpected error"}]}, True, "10007"),
     Refusal(503, "<html>unavailable</html>", True, "503")),
)

BANDWIDTH = Carrier(
    BandwidthProvider, "bw",
    {"account_id": "9900000", "application_id": "93de2206-9669-4e07-948d-329f4b722ee2",
     "username": "api-user", "password": "bandwidth-api-password",
     "webhook_username": "bw-callbacks", "webhook_password": "callback-pässword"},
    "https://messaging.bandwidth.com", OutboundSms(1, "+12345678901", "+12345678902", "x"),
    (Refusal(400, {"type": "request-validation",
                   "description": "Your request could not be accepted",
                   "fieldErrors": [{"fieldName": "from",
                                    "description": "'+invalid' must be replaced with a valid "
                                                   "E164 formatted telephone number"}]},
             False, "400", says="from:"),
     Refusal(401, {"type": "unauthorized", "description": "Authentication Failed"}, False,
             "401", says="unauthorized"),
     Refusal(403, {"type": "forbidden", "description": "Access Denied"}, False, "403",
             says="forbidden"),
     Refusal(415, {"type": "unsupported-content-type",
                   "description": "Content type 'text/plain;charset=UTF-8' not supported."},
             False, "415", says="unsupported-content-type"),
     Refusal(429, {"type": "max-message-queue-size-exceeded",
                   "description": "The SMS queue for your account is full and cannot accept "
                                  "more messages right now."}, True, "429",
             {"Retry-After": "3"}, says="max-message-queue-size-exceeded"),
     Refusal(500, {"type": "internal-server-error", "description": "oops"}, True, "500",
             says="internal-server-error"),
     Refusal(503, "<html>unavailable</html>", True, "503")),
    Split(lambda i: CannedResponse(202, {"id": i}),
          CannedResponse(400, {"type": "request-validation", "description": "bad to"}),
          CannedResponse(503, {"type": "service-unavailable", "description": "busy"}),
          _json_text, 2048),
)

FLOWROUTE = Carrier(
    FlowrouteProvider, "fr",
    {"access_key": "12345678", "secret_key": "flowroute-secret-key-0123456789",
     "webhook_token": "fr-webhook-token-4f9c2e"},
    "https://api.flowroute.com", OutboundSms(1, "+12065550101", "+12065551234", "x"),
    (Refusal(401, {"errors": [{"id": "4f2a", "status": 401, "title": "Unauthorized",
                               "detail": "Authentication failed"}]}, False, "401",
             says="Unauthorized"),
     Refusal(403, {"errors": [{"id": "4f2b", "status": 403, "title": "Forbidden",
                               "detail": "The from number is not on your account"}]},
             False, "403", says="Forbidden"),
     Refusal(422, {"errors": [{"id": "4f2c", "status": 422, "title": "Unprocessable Entity",
                               "detail": "'to' is not a valid phone number"}]}, False, "422",
             says="Unprocessable Entity"),
     Refusal(429, {"errors": [{"id": "4f2d", "status": 429, "title": "Too Many Requests"}]},
             True, "429", {"Retry-After": "3"}, says="Too Many Requests"),
     Refusal(500, {"errors": [{"id": "4f2e", "status": 500,
                               "title": "Internal Server Error"}]}, True, "500",
             says="Internal Server Error"),
     Refusal(502, "<html>bad gateway</html>", True, "502")),
)

VONAGE = Carrier(
    VonageProvider, "vg",
    {"api_key": "abcd1234", "api_secret": "vonage-api-secret-0",
     "signature_secret": "vonage-signature-secret-of-32-bytes", "signature_method": "sha256"},
    "https://rest.nexmo.com", OutboundSms(1, "+14155550100", "+447700900000", "x"),
    (Refusal(200, {"message-count": "1", "messages": [
        {"status": "1", "error-text": "Throttled"}]}, True, "1"),
     Refusal(200, {"message-count": "1", "messages": [
         {"status": "4", "error-text": "Bad Credentials"}]}, False, "4"),
     Refusal(200, {"message-count": "1", "messages": [
         {"status": "9", "error-text": "Partner quota exceeded"}]}, False, "9"),
     Refusal(200, {"message-count": "1", "messages": [
         {"status": "5", "error-text": "Internal Error"}]}, True, "5"),
     Refusal(401, {"type": "https://developer.vonage.com/api-errors#unauthorized",
                   "title": "Unauthorized",
                   "detail": "You did not provide correct credentials."}, False, "unauthorized"),
     Refusal(429, "Too Many Requests", True, "429", {"Retry-After": "3"}),
     Refusal(500, "<html>oops</html>", True, "500"),
     Refusal(200, "not json", True, None)),
    label="vonage-sms",
)

VONAGE_MESSAGES = Carrier(
    VonageProvider, "vg", {**VONAGE.fields, "api": "messages", "status_callback": False},
    "https://api.nexmo.com", OutboundSms(1, "+14155550100", "+447700900000", "x"),
    (Refusal(422, {"type": "https://developer.vonage.com/api-errors/messages#1150",
                   "title": "Invalid params", "detail": "The value of `to` is not valid."},
             False, "1150"),
     Refusal(401, {"type": "https://developer.vonage.com/api-errors#unauthorized",
                   "title": "Unauthorized", "detail": "Invalid credentials"}, False,
             "unauthorized"),
     Refusal(429, {"type": "https://developer.vonage.com/api-errors#throttled",
                   "title": "Rate Limit Hit", "detail": "Please wait"}, True, "throttled",
             {"Retry-After": "2"}),
     Refusal(503, "unavailable", True, "503")),
    Split(lambda i: CannedResponse(202, {"message_uuid": i}),
          CannedResponse(422, {"type": "https://developer.vonage.com/api-errors/messages#1150",
                               "title": "Invalid params", "detail": "bad to"}),
          CannedResponse(503, {"title": "Service Unavailable"}), _json_text, 1000),
    label="vonage-messages",
)

PLIVO = Carrier(
    PlivoProvider, "pl", {"auth_id": "MAXXXXXXXXXXXXXXXXXX", "auth_token": "plivo-test-auth-token"},
    "https://api.plivo.com", OutboundSms(1, "+14155550100", "+14155550199", "x"),
    (Refusal(400, {"api_id": "a1",
                   "error": "text parameter length exceeds 737 unicode characters"},
             False, "400"),
     Refusal(401, {"api_id": "a2", "error": "authentication failed"}, False, "401"),
     Refusal(400, {"api_id": "a3", "error": {"dst": "invalid number"}}, False, "400"),
     Refusal(429, {"api_id": "a4", "error": "too many requests"}, True, "429",
             {"Retry-After": "3"}),
     Refusal(500, {"api_id": "a5", "error": "internal error"}, True, "500"),
     Refusal(503, "<html>down</html>", True, "503"),
     Refusal(202, {"api_id": "a6", "message": "message(s) queued", "message_uuid": [],
                   "invalid_number": ["1415"]}, False, "invalid_number"),
     Refusal(202, {"api_id": "a7"}, True, None)),
    Split(lambda i: CannedResponse(202, {"api_id": "a1", "message": "message(s) queued",
                                         "message_uuid": [i]}),
          CannedResponse(400, {"api_id": "a2", "error": "invalid dst"}),
          CannedResponse(500, {"api_id": "a3", "error": "internal error"}), _json_text, 1600),
)

SINCH = Carrier(
    SinchProvider, "sn",
    {"service_plan_id": "jd63jf88477ll123ab4567cd89012ef3",
     "api_token": "sinch-api-token-0123456789",
     "webhook_secret": "sinch-callback-secret-0123456789"},
    None, OutboundSms(1, "+14155550100", "+14155550199", "x"),
    (Refusal(400, {"code": "syntax_invalid_parameter_format",
                   "text": "Parameter 'to' must be valid E.164"}, False,
             "syntax_invalid_parameter_format"),
     Refusal(401, {"code": "unauthorized", "text": "Unauthorized"}, False, "unauthorized"),
     Refusal(403, {"code": "missing_service_plan_id", "text": "Unknown service plan"}, False,
             "missing_service_plan_id"),
     Refusal(429, {"code": "too_many_requests", "text": "Slow down"}, True,
             "too_many_requests", {"Retry-After": "3"}),
     Refusal(500, {"code": "internal_error", "text": "Oops"}, True, "internal_error"),
     Refusal(502, "<html>bad gateway</html>", True, "502"),
     Refusal(201, {"type": "mt_text"}, True, None)),
)

COMMIO = Carrier(
    CommioProvider, "cm",
    {"account_id": "1234", "username": "user1", "api_token": "sesame",
     "webhook_token": "commio-url-token"},
    "https://api.thinq.com", OutboundSms(1, "+12065551212", "+12067791234", "Error"),
    (Refusal(401, {"error": "failed"}, False, "401"),
     Refusal(400, {"error": "Invalid destination DID"}, False, "400"),
     Refusal(429, {"error": "failed"}, True, "429", {"Retry-After": "5"}),
     Refusal(500, {"error": "failed"}, True, "500")),
)

QUESTBLUE = Carrier(
    QuestBlueProvider, "qb",
    {"login": "qb-login", "password": "qb-password", "security_key": "qb-security-key",
     "webhook_token": "qb-url-token"},
    "https://api.questblue.com", OutboundSms(1, US_A, US_B, "x"),
    (Refusal(206, {"error": "DID is not SMS enabled"}, False, "206",
             says="DID is not SMS enabled"),
     Refusal(200, {"error": "Invalid destination"}, False, "200", says="Invalid destination"),
     Refusal(401, {"error": "Unauthorized"}, False, "401", says="Unauthorized"),
     Refusal(429, {"error": "Too many requests"}, True, "429", {"Retry-After": "4"},
             says="Too many requests"),
     Refusal(503, "down", True, "503")),
)

SKYETEL = Carrier(
    SkyetelProvider, "sky",
    {"sid": "skyetel-sid", "secret": "skyetel-secret", "webhook_token": "sky-url-token"},
    "https://sms.skyetel.com", OutboundSms(1, "+15558004321", "+15558001234", "x"),
    (Refusal(400, "Invalid destination", False, "400"),
     Refusal(401, "Unauthorized", False, "401"),
     Refusal(403, "Rate limit exceeded", True, "403", retry_after=300.0),
     Refusal(429, "slow", True, "429", {"Retry-After": "9"}),
     Refusal(500, "err", True, "500")),
)

VOICEMEUP = Carrier(
    VoiceMeUpProvider, "vmu",
    {"username": "testuser", "auth_token": "secret123", "webhook_token": "vmu-url-token"},
    "https://clients.voicemeup.com", OutboundSms(1, "+15145551234", "+15145559999", "x"),
    (Refusal(200, voicemeup_error("permission_refused"), False, "permission_refused"),
     Refusal(200, voicemeup_error("duplicate_entry", "SMS already queued"), False,
             "duplicate_entry"),
     Refusal(200, {"response_details": {"response_status": "error", "response_messages": {
         "message": {"code": "invalid_destination", "_content": "bad"}}}}, False,
         "invalid_destination"),
     Refusal(500, "Internal Server Error", True, "500"),
     Refusal(404, "Not Found", False, "404")),
)

VOIPMS = Carrier(
    VoipmsProvider, "vm",
    {"api_username": "owner@example.com", "api_password": "voipms-api-password",
     "webhook_token": "url-token-4c1f9e"},
    "https://voip.ms", OutboundSms(1, "+15145550100", "+14165550199", "hello"),
    (Refusal(200, {"status": "invalid_credentials",
                   "message": "Username or Password is incorrect"}, False, "invalid_credentials"),
     Refusal(200, {"status": "invalid_dst"}, False, "invalid_dst"),
     Refusal(429, "slow down", True, "429", {"Retry-After": "7"}),
     Refusal(500, "<html>oops</html>", True, "500"),
     Refusal(403, "forbidden", False, "403")),
)

VOXTELESYS = Carrier(
    VoxtelesysProvider, "vts",
    # the documented example token shape
    {"api_key": "f2d1c9b6-1158-11e6-bb4e-26a732fd0877", "webhook_token": "vts-url-token"},
    "https://smsapi.voxtelesys.net/api/v1", OutboundSms(1, "+17019299797", "+14024431550", "x"),
    (Refusal(400, {"error": {"code": "400", "description": "Invalid 'to'"}}, False, "400"),
     Refusal(401, {"message": "Unauthorized"}, False, "401"),
     Refusal(429, {"message": "Too Many Requests"}, True, "429", {"Retry-After": "1"}),
     Refusal(500, "oops", True, "500")),
)

WAVIX = Carrier(
    WavixProvider, "wx", {"api_key": "wavix-api-key-0123", "webhook_token": "wx-url-token"},
    "https://api.wavix.com", OutboundSms(1, US_A, US_B, "x"),
    (Refusal(422, {"error": "Destination number is invalid"}, False, "422"),
     Refusal(403, {"success": False, "message": "Outbound SMS messaging service is disabled"},
             False, "403", says="Outbound SMS messaging service is disabled"),
     Refusal(401, {"success": False, "error": True, "message": "Unauthorized"}, False, "401",
             says="Unauthorized"),
     Refusal(429, {"success": False, "message": "Rate limit exceeded"}, True, "429",
             {"Retry-After": "2"}, says="Rate limit exceeded"),
     Refusal(502, "<html>bad gateway</html>", True, "502")),
)

CARRIERS: list[Carrier] = [
    BANDWIDTH, COMMIO, FLOWROUTE, PLIVO, QUESTBLUE, SIGNALWIRE, SINCH, SKYETEL, TELNYX, TWILIO,
    VOICEMEUP, VOIPMS, VONAGE, VONAGE_MESSAGES, VOXTELESYS, WAVIX,
]
SPLITTING: list[Carrier] = [c for c in CARRIERS if c.split is not None]
