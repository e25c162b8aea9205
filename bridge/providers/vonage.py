"""Vonage (formerly Nexmo): the SMS API by default, or Messages API v1 with ``api = "messages"``.

One config type (``type = "vonage"``), two provider classes: ``VonageSmsProvider`` and
``VonageMessagesProvider``; building a ``VonageProvider`` gives the one ``api`` names.

Facts and sources (see also shared providers.md §5):

SMS API (``api = "sms"``)
- Send: ``POST https://rest.nexmo.com/sms/json``, form fields ``from``, ``to`` (E.164 digits,
  no '+'), ``text``, ``type`` (``unicode`` outside GSM-7), ``status-report-req``, ``callback``
  (DLR URL, at most 100 characters in the SDK), ``client-ref``. Auth: HTTP Basic
  api_key:api_secret (what vonage-python-sdk v4 sends), or ``api_key`` + ``timestamp`` +
  ``sig`` signed with the signature secret. The answer is always HTTP 200
  ``{"message-count", "messages": [{"message-id", "status": "0" | error, "error-text"}]}``,
  one entry per SMS part. Status 1 (throttled), 5 (internal error) and 10 (too many binds)
  are worth retrying. [spec] Nexmo/api-specification definitions/sms.yml; [sdk]
  vonage-python-sdk sms/src/vonage_sms/sms.py; [doc] developer.vonage.com/api-errors/sms
- No MMS in the SMS API: MMS needs ``api = "messages"``.
- Inbound and delivery receipts arrive as GET, form POST or JSON POST (a dashboard setting).
  Inbound: ``msisdn`` (sender), ``to``, ``messageId``, ``text``, ``type``; long texts arrive
  in parts with ``concat-ref`` / ``concat-part`` (1-based) / ``concat-total``, which we pass
  on as ``PartInfo``. Receipts: ``messageId``, ``status`` (delivered, expired, failed,
  rejected, accepted, buffered, unknown), ``err-code`` ("0" = no error; "9" on a failed or
  rejected receipt means the recipient opted out: it is reported as code ``opted-out``, an
  opt-out code, so the bridge records the opt-out and stops texting them. [doc]
  developer.vonage.com/en/opt-out-assist/guides/messaging-opted-out-numbers). A send
  answer's status 9 is "Partner Quota Violation", not an opt-out. [spec] InboundMessage,
  DeliveryReceipt; [doc] developer.vonage.com/api-errors/sms
- ``sig``: the parameters other than ``sig``, sorted by name, each value with '&' and '='
  replaced by '_', concatenated as ``&name=value``; then hex HMAC-md5/sha1/sha256/sha512 of
  that string keyed with the signature secret, or for the legacy "MD5 hash" method the md5 of
  the string followed by the secret. ``timestamp`` (unix seconds) is part of the signed set
  is checked: Vonage resends an unacknowledged inbound SMS "for the next 24 hours", and
  ``timestamp`` is "the unix timestamp representation of message-timestamp", the time
  "Vonage started to push this inbound message" [doc] messaging/sms/guides/inbound-sms, so
  a retry keeps its first timestamp. We accept a timestamp up to 24 h (plus
  ``webhook_tolerance_seconds``) old and at most the tolerance ahead; a replay inside that
  window is harmless, since the carrier message id dedupes it. [sdk] vonage-python-sdk
  http_client/src/vonage_http_client/auth.py (``sign_params``); legacy MD5 hash from
  vonage-python-sdk 3.x src/vonage/client.py (``Client.signature``); both re-checked against
  the SDK test vectors.

Messages API v1 (``api = "messages"``)
- Send: ``POST https://api.nexmo.com/v1/messages``, JSON ``{"channel": "sms",
  "message_type": "text", "to", "from", "text", "client_ref", "webhook_url",
  "webhook_version": "v1"}``; MMS is ``{"channel": "mms", "message_type": "image" | "audio"
  | "video" | "vcard" | "file", "<type>": {"url", "caption"}}``, one media item per message
  (so we send one message per item, the text as caption of the first). ``text`` is at most
  1,000 characters (SDK ``models/sms.py``: ``Field(..., max_length=1000)``): longer texts go
  as several messages by the base's multi-part rule. Opt-outs on this API arrive as a
  status webhook whose error is not pinned down in the opt-out guide we could read, so no
  Messages API opt-out code is declared. Numbers without '+'.
  Success is 202 ``{"message_uuid"}``; errors are RFC 7807 ``{type, title, detail}``.
  Auth: ``Bearer`` JWT (RS256, application id + private key; needs PyJWT[crypto] at run
  time) or Basic api_key:api_secret (then Vonage posts webhooks to the account-level URLs).
  [sdk] vonage-python-sdk messages/src/vonage_messages (messages.py, models/sms.py, mms.py)
- Webhooks are JSON: inbound ``{message_uuid, from, to, channel, message_type, text | image
  {url, caption} | ...}``; status ``{message_uuid, status (submitted, delivered, read,
  rejected, undeliverable), error {type, title, detail}}``. [doc] messages/concepts/
  messages-status-callbacks (the v1 inbound shape is from docs and SDK models only)
- Webhook auth: ``Authorization: Bearer <JWT>``, HS256 keyed with the signature secret, with a
  ``payload_hash`` claim (hex SHA-256 of the raw body, which we require) and ``iat``
  (checked against ``webhook_tolerance_seconds``). [sdk] vonage-python-sdk
  jwt/src/vonage_jwt/verify_jwt.py; Vonage/vonage-python-code-snippets
  messages/verify_signed_webhooks.py

Without a signature secret neither API authenticates its webhooks, so a ``webhook_token``
is then required (checked at config load). ``api`` also selects the webhook format we accept:
the dashboard's account-wide "Default SMS setting" decides whether inbound SMS go to the SMS
API or the Messages API webhooks, so it must match. [doc] vcr/providers/messages
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import mimetypes
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from bridge.model import (
    DeliveryReport,
    InboundEvent,
    InboundMessage,
    MediaRef,
    OutboundSms,
    PartInfo,
    SendFailed,
    SendResult,
    Sent,
    State,
)
from bridge.numbers import digits, segments
from bridge.providers.base import (
    Part,
    Provider,
    ProviderConfig,
    TextLimit,
    WebhookMalformed,
    WebhookRequest,
    WebhookUnauthorized,
    basic_auth,
    bearer_auth,
    carrier_failure,
    constant_time_equal,
    form_body,
    require,
    response_json,
)
from bridge.secrets import Secret, reveal

SignatureMethod = Literal["md5hash", "md5", "sha1", "sha256", "sha512"]


class VonageConfig(ProviderConfig):
    type: Literal["vonage"]
    api: Literal["sms", "messages"] = "sms"
    api_key: str = Field(pattern=r"^[A-Za-z0-9]{4,32}$")
    api_secret: Secret | None = None
    # Signs and verifies webhooks (both APIs); can also sign SMS API requests.
    signature_secret: Secret | None = None
    # Must match the dashboard setting. "md5hash" is the dashboard's default; prefer sha256.
    signature_method: SignatureMethod = "md5hash"
    # SMS API: sign requests with the signature secret instead of sending the API secret.
    sign_requests: bool = False
    # Messages API JWT auth (otherwise Basic with api_key:api_secret).
    application_id: str | None = Field(default=None, pattern=r"^[0-9a-fA-F-]{36}$")
    private_key: Secret | None = None
    status_callback: bool = True  # ask for delivery reports at our webhook URL
    webhook_tolerance_seconds: int = Field(default=300, ge=30, le=86400)

    @model_validator(mode="after")
    def _check_credentials(self) -> VonageConfig:
        if (self.application_id is None) != (self.private_key is None):
            raise ValueError("application_id and private_key go together")
        if self.api == "sms":
            if self.api_secret is None and self.signature_secret is None:
                raise ValueError("the SMS API needs api_secret or signature_secret")
            if self.sign_requests and self.signature_secret is None:
                raise ValueError("sign_requests needs signature_secret")
        elif self.api_secret is None and self.application_id is None:
            raise ValueError("the Messages API needs application_id + private_key, "
                             "or api_secret")
        if self.signature_secret is None and self.webhook_token is None:
            raise ValueError("Vonage webhooks are unsigned without signature_secret: "
                             "set signature_secret or webhook_token")
        return self


# SMS API delivery receipt statuses; "unknown" carries no news.
SMS_STATUS_MAP: dict[str, State] = {
    "accepted": State.SENT,
    "buffered": State.SENT,
    "delivered": State.DELIVERED,
    "expired": State.FAILED,
    "failed": State.FAILED,
    "rejected": State.FAILED,
}
# Messages API status webhooks.
MESSAGES_STATUS_MAP: dict[str, State] = {
    "submitted": State.SENT,
    "delivered": State.DELIVERED,
    "read": State.DELIVERED,
    "rejected": State.FAILED,
    "undeliverable": State.FAILED,
}
# SMS API send statuses worth another attempt: throttled, internal error, too many binds.
SMS_RETRYABLE = frozenset({"1", "5", "10"})
OPTED_OUT = "opted-out"  # the code under which a receipt's err-code 9 is reported
# Messages API: text is at most 1,000 characters (SDK models/sms.py ``max_length=1000``).
MESSAGES_TEXT_LIMIT = TextLimit(1000)
# Vonage retries an unacknowledged inbound SMS for 24 hours, and every retry carries the
# timestamp of the first push, so a signed timestamp may be this old plus the tolerance.
RETRY_WINDOW_SECONDS = 86400
MMS_TYPES = ("image", "audio", "video", "vcard", "file")
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise WebhookUnauthorized("signed parameters must be flat values")


def vonage_sms_signature(params: Mapping[str, Any], secret: str, method: SignatureMethod) -> str:
    """The SMS API ``sig``: hex digest over ``&name=value`` pairs sorted by name."""
    payload = "".join(
        f"&{key}={_param_text(params[key]).replace('&', '_').replace('=', '_')}"
        for key in sorted(params)
        if key != "sig"
    ).encode("utf-8")
    if method == "md5hash":
        return hashlib.md5(payload + secret.encode("utf-8"), usedforsecurity=False).hexdigest()
    return hmac.new(secret.encode("utf-8"), payload, getattr(hashlib, method)).hexdigest()


def _b64url_decode(part: str) -> bytes:
    if not _B64URL.match(part):
        raise WebhookUnauthorized("JWT is not base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise WebhookUnauthorized("JWT is not base64url") from None


def verify_hs256_jwt(token: str, secret: str) -> dict[str, Any]:
    """The claims of an HS256 JWT whose signature checks out with ``secret``."""
    parts = token.split(".")
    if len(parts) != 3:
        raise WebhookUnauthorized("Authorization bearer is not a JWT")
    header_b64, claims_b64, signature_b64 = parts
    try:
        header = json.loads(_b64url_decode(header_b64))
        claims = json.loads(_b64url_decode(claims_b64))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WebhookUnauthorized("JWT header or claims are not JSON") from None
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise WebhookUnauthorized("JWT is not HS256")
    expected = hmac.new(secret.encode("utf-8"), f"{header_b64}.{claims_b64}".encode("ascii"),
                        hashlib.sha256).digest()
    if not constant_time_equal(expected, _b64url_decode(signature_b64)):
        raise WebhookUnauthorized("JWT signature does not match")
    if not isinstance(claims, dict):
        raise WebhookUnauthorized("JWT claims are not an object")
    return claims


def _mms_type(media: MediaRef) -> str:
    ctype = (media.content_type or mimetypes.guess_type(media.url)[0] or "").lower()
    major = ctype.split("/", 1)[0]
    if major in ("image", "audio", "video"):
        return major
    if ctype in ("text/vcard", "text/x-vcard"):
        return "vcard"
    return "file"


class VonageProvider(Provider):
    """``type = "vonage"``: what both Vonage APIs share. ``api`` in the config picks the class
    that is built, ``VonageSmsProvider`` or ``VonageMessagesProvider`` (as ``pathlib.Path``
    picks its flavour), so existing configs keep working unchanged."""

    Config = VonageConfig
    default_api_base = "https://rest.nexmo.com"
    webhook_auth = ("SMS API 'sig' parameter or Messages API HS256 JWT, keyed with the "
                    "signature secret (a webhook_token when no signature secret is set)")
    numbers_may_be_integers = True  # JSON webhooks may carry msisdn/to as numbers
    config: VonageConfig

    def __new__(cls, config: ProviderConfig, public_url: str = "http://127.0.0.1:8080"
                ) -> VonageProvider:
        chosen: type[VonageProvider] = cls
        if cls is VonageProvider:
            assert isinstance(config, VonageConfig)
            chosen = VonageMessagesProvider if config.api == "messages" else VonageSmsProvider
        return super().__new__(chosen)

    @staticmethod
    def _problem_failure(status: int, payload: Any, headers) -> SendFailed:
        body = payload if isinstance(payload, dict) else {}
        title = str(body.get("title") or body.get("error_title") or "")
        detail = str(body.get("detail") or body.get("error-text") or "")
        message = ": ".join(x for x in (title, detail) if x) or "no error message"
        kind = str(body.get("type") or "")  # https://developer.vonage.com/api-errors/messages#1120
        code = (kind.rsplit("#", 1)[1] or str(status)) if "#" in kind else None
        return carrier_failure(status, headers, "Vonage", message, code)

    def _params(self, req: WebhookRequest) -> dict[str, Any]:
        if req.method != "GET" and req.content_type == "application/json":
            data = req.json()
            if not isinstance(data, dict):
                raise WebhookMalformed("expected a JSON object")
            return data
        return req.form_dict()

    def verify(self, req: WebhookRequest) -> None:
        super().verify(req)
        secret = reveal(self.config.signature_secret)
        if secret:  # otherwise the URL token checked above is the authentication
            self._verify_signed(req, secret)

    def _verify_signed(self, req: WebhookRequest, secret: str) -> None:
        raise NotImplementedError

    def parse(self, req: WebhookRequest) -> list[InboundEvent]:
        return self._parse(self._params(req))

    def _parse(self, params: dict[str, Any]) -> list[InboundEvent]:
        raise NotImplementedError

    @staticmethod
    def _id(value: Any, what: str) -> str:
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise WebhookMalformed(f"{what} is not a string")
        return str(value)

    @staticmethod
    def _text(value: Any, what: str) -> str:
        if value is None:
            return ""
        if not isinstance(value, str):
            raise WebhookMalformed(f"{what} is not a string")
        return value


class VonageSmsProvider(VonageProvider):
    """The SMS API (``api = "sms"``, the default)."""

    supports_mms = False  # the core sends links instead
    # Delivery receipts: err-code 9 means the recipient opted out. It is reported under its
    # own name, since SMS API *send* status 9 means something else (partner quota).
    opt_out_codes = frozenset({OPTED_OUT})

    async def _send(self, msg: OutboundSms) -> SendResult:
        if msg.media:
            return SendFailed("the Vonage SMS API cannot send MMS; set api = \"messages\"",
                              retryable=False, code="mms-unsupported")
        cfg = self.config
        form: dict[str, str] = {
            "from": msg.sender_id or digits(msg.from_number),
            "to": digits(msg.to_number),
            "text": msg.text,
            "type": "unicode" if segments(msg.text).encoding == "UCS-2" else "text",
            "client-ref": str(msg.message_id),
        }
        if cfg.status_callback:
            form["status-report-req"] = "1"
            callback = self.webhook_url()
            if len(callback) <= 100:  # longer URLs are refused; the dashboard URL applies
                form["callback"] = callback
        headers: dict[str, str] = {}
        if cfg.sign_requests or cfg.api_secret is None:
            form["api_key"] = cfg.api_key
            form["timestamp"] = str(int(time.time()))
            form["sig"] = vonage_sms_signature(form, reveal(cfg.signature_secret),
                                               cfg.signature_method)
        else:
            headers = basic_auth(cfg.api_key, reveal(cfg.api_secret))
        url = f"{self.api_base}/sms/json"
        async with self.http.post(url, data=form_body(form), headers=headers) as resp:
            payload = await response_json(resp)
            if resp.status != 200:
                return self._problem_failure(resp.status, payload, resp.headers)
        parts = payload.get("messages") if isinstance(payload, dict) else None
        if not isinstance(parts, list) or not parts or not all(isinstance(p, dict) for p in parts):
            return SendFailed("Vonage answered without a messages list", retryable=True)
        ids = [str(p["message-id"]) for p in parts
               if str(p.get("status")) == "0" and p.get("message-id")]
        if len(ids) == len(parts):
            return Sent(ids[0]) if len(ids) == 1 else Sent(ids[0], f"{len(ids)} parts",
                                                           tuple(ids))
        refused = next(p for p in parts if not (str(p.get("status")) == "0"
                                               and p.get("message-id")))
        status = str(refused.get("status", ""))
        text = str(refused.get("error-text") or "no error text")
        if not ids:
            return SendFailed(f"Vonage error {status}: {text}"[:500],
                              retryable=status in SMS_RETRYABLE, code=status or None)
        # Vonage split the text itself: the parts it refused cannot be sent again alone,
        # so this partial failure is permanent, and says which parts went out.
        return SendFailed(f"part {len(ids) + 1} of {len(parts)} refused ({len(ids)} sent): "
                          f"Vonage error {status}: {text}"[:500], retryable=False,
                          code=status or None, accepted_parts=tuple(ids))

    def _verify_signed(self, req: WebhookRequest, secret: str) -> None:
        try:
            params = self._params(req)
        except WebhookMalformed:
            raise WebhookUnauthorized("cannot read the signed parameters") from None
        signature = params.get("sig")
        if not isinstance(signature, str) or not signature:
            raise WebhookUnauthorized("sig parameter missing")
        expected = vonage_sms_signature(params, secret, self.config.signature_method)
        if not constant_time_equal(expected, signature.lower()):
            raise WebhookUnauthorized("sig does not match")
        try:
            stamp = float(params.get("timestamp"))
        except (TypeError, ValueError):
            raise WebhookUnauthorized("signed request without a timestamp") from None
        tolerance = self.config.webhook_tolerance_seconds
        if not -tolerance <= req.received_at - stamp <= RETRY_WINDOW_SECONDS + tolerance:
            raise WebhookUnauthorized("signed request is outside the timestamp window")

    def _parse(self, params: dict[str, Any]) -> list[InboundEvent]:
        carrier_id = self._id(require(params, "messageId"), "messageId")
        if "status" in params:  # a delivery receipt
            status = self._text(params.get("status"), "status").lower()
            state = SMS_STATUS_MAP.get(status)
            if state is None:
                return []
            error = None
            code = str(params.get("err-code") or "0")
            if code != "0":
                error = (f"{OPTED_OUT}: err-code 9" if code == "9" and state is State.FAILED
                         else code)
            return [DeliveryReport(carrier_id, state, carrier_status=status, error=error)]
        kind = self._text(params.get("type"), "type").lower()
        if kind == "binary":
            return []  # ringtones, WAP push and the like: nothing a phone user can read
        sender = self.inbound_number(require(params, "msisdn"), "msisdn")
        recipient = self.inbound_number(require(params, "to"), "to")
        text = self._text(params.get("text"), "text")
        part = None
        if str(params.get("concat", "")).lower() == "true" or "concat-ref" in params:
            try:
                part = PartInfo(str(require(params, "concat-ref")),
                                int(require(params, "concat-part")),
                                int(require(params, "concat-total")))
            except (TypeError, ValueError):
                raise WebhookMalformed("bad concat-ref/concat-part/concat-total") from None
        return [InboundMessage(carrier_id, sender, recipient, text, (), part)]


class VonageMessagesProvider(VonageProvider):
    """Messages API v1 (``api = "messages"``)."""

    default_api_base = "https://api.nexmo.com"
    text_limit = MESSAGES_TEXT_LIMIT  # the SMS API splits long texts itself
    max_media_per_part = 1  # one media item per MMS message

    def __init__(self, config: ProviderConfig, public_url: str = "http://127.0.0.1:8080") -> None:
        super().__init__(config, public_url)
        self._jwt: str | None = None
        self._jwt_expires = 0.0

    async def _send(self, msg: OutboundSms) -> SendResult:
        cfg = self.config
        headers = self._messages_auth()
        if isinstance(headers, SendFailed):
            return headers
        base: dict[str, Any] = {
            "to": digits(msg.to_number),
            "from": msg.sender_id or digits(msg.from_number),
            "client_ref": str(msg.message_id),
        }
        if cfg.status_callback:
            base["webhook_url"] = self.webhook_url()
            base["webhook_version"] = "v1"
        return await self.send_parts(msg, self.split(msg), lambda part, _i, _n: self._post_message(
            self._message_body(base, part), headers))

    @staticmethod
    def _message_body(base: dict[str, Any], part: Part) -> dict[str, Any]:
        if not part.media:
            return {**base, "channel": "sms", "message_type": "text", "text": part.text}
        kind = _mms_type(part.media[0])
        resource: dict[str, str] = {"url": part.media[0].url}
        if part.text:
            resource["caption"] = part.text
        return {**base, "channel": "mms", "message_type": kind, kind: resource}

    async def _post_message(self, body: dict[str, Any], headers: dict[str, str]) -> SendResult:
        async with self.http.post(f"{self.api_base}/v1/messages", json=body,
                                  headers=headers) as resp:
            payload = await response_json(resp)
            if resp.status in (200, 202) and isinstance(payload, dict) \
                    and payload.get("message_uuid"):
                return Sent(str(payload["message_uuid"]))
            return self._problem_failure(resp.status, payload, resp.headers)

    def _messages_auth(self) -> dict[str, str] | SendFailed:
        cfg = self.config
        if cfg.application_id is None:
            return basic_auth(cfg.api_key, reveal(cfg.api_secret))
        now = time.time()
        if self._jwt is None or now > self._jwt_expires - 60:
            try:
                import jwt  # noqa: PLC0415  (PyJWT[crypto], only needed for JWT auth)

                iat = int(now)
                claims = {"application_id": cfg.application_id, "iat": iat,
                          "exp": iat + 900, "jti": str(uuid.uuid4())}
                token = jwt.encode(claims, reveal(cfg.private_key), algorithm="RS256")
            except Exception as exc:  # missing library or a bad key: never leak the key
                return SendFailed(f"cannot sign the Vonage JWT ({type(exc).__name__}); check "
                                  "private_key and that PyJWT[crypto] is installed",
                                  retryable=False, code="jwt")
            self._jwt, self._jwt_expires = token, iat + 900.0
        return bearer_auth(self._jwt)

    def _verify_signed(self, req: WebhookRequest, secret: str) -> None:
        auth = req.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise WebhookUnauthorized("Authorization bearer JWT missing")
        claims = verify_hs256_jwt(token.strip(), secret)
        payload_hash = claims.get("payload_hash")
        if not isinstance(payload_hash, str) or not constant_time_equal(
            payload_hash.lower(), hashlib.sha256(req.body).hexdigest()
        ):
            raise WebhookUnauthorized("JWT payload_hash does not match the body")
        api_key = claims.get("api_key")
        if api_key is not None and api_key != self.config.api_key:
            raise WebhookUnauthorized("JWT is for another API key")
        iat = claims.get("iat")
        if not isinstance(iat, int | float) or isinstance(iat, bool):
            raise WebhookUnauthorized("JWT without iat")
        if abs(req.received_at - iat) > self.config.webhook_tolerance_seconds:
            raise WebhookUnauthorized("JWT iat is outside the timestamp window")
        exp = claims.get("exp")
        if isinstance(exp, int | float) and req.received_at > exp + 30:
            raise WebhookUnauthorized("JWT has expired")

    def _parse(self, data: dict[str, Any]) -> list[InboundEvent]:
        carrier_id = self._id(require(data, "message_uuid"), "message_uuid")
        if "status" in data:
            status = self._text(data.get("status"), "status").lower()
            state = MESSAGES_STATUS_MAP.get(status)
            if state is None:
                return []
            error = None
            err = data.get("error")
            if isinstance(err, dict):
                kind = str(err.get("type") or "")
                code = kind.rsplit("#", 1)[1] if "#" in kind else str(err.get("title") or "")
                reason = str(err.get("detail") or err.get("title") or "")
                error = ": ".join(x for x in (code, reason) if x) or None
            return [DeliveryReport(carrier_id, state, carrier_status=status, error=error)]
        channel = self._text(require(data, "channel"), "channel").lower()
        if channel not in ("sms", "mms"):
            return []  # WhatsApp, RCS, ...: not ours to bridge
        sender, recipient = data.get("from"), data.get("to")
        # v0.1 webhooks nested the numbers as {"type": "sms", "number": "..."}
        if isinstance(sender, dict):
            sender = sender.get("number")
        if isinstance(recipient, dict):
            recipient = recipient.get("number")
        sender_e164 = self.inbound_number(sender, "from")
        recipient_e164 = self.inbound_number(recipient, "to")
        kind = self._text(data.get("message_type"), "message_type").lower()
        text = self._text(data.get("text"), "text")
        media: list[MediaRef] = []
        if kind in MMS_TYPES:
            resource = data.get(kind)
            if not isinstance(resource, dict) or not isinstance(resource.get("url"), str):
                raise WebhookMalformed(f"{kind} message without a url")
            media.append(MediaRef(resource["url"], None))
            text = text or self._text(resource.get("caption"), "caption")
        elif kind != "text":
            return []
        return [InboundMessage(carrier_id, sender_e164, recipient_e164, text, tuple(media))]
