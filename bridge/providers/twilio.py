"""Twilio Programmable Messaging (API 2010-04-01).

Facts and sources (see also shared providers.md §1):
- Send: ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, HTTP Basic
  (AccountSid:AuthToken, or an API key SID:secret), form fields ``To``, ``From``, ``Body``
  (at most 1,600 characters, error 21617 beyond: longer texts go as several messages by the
  base's multi-part rule), ``MediaUrl`` (repeated, at most 10), ``StatusCallback``. Success
  is 201 with ``sid``. Errors are JSON ``{"code", "message", "more_info", "status"}``.
  [spec] twilio-oai twilio_api_v2010.json; [doc] twilio.com/docs/api/errors/21617
- Inbound and status webhooks are form POSTs (GET if so configured); media are ``MediaUrl{N}``
  / ``MediaContentType{N}`` with N from 0. We answer an empty TwiML ``<Response/>``. [doc]
- ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, URL + name+value pairs sorted by
  name, then value, an identical repeated value counted once: ``sorted(set(values))``),
  checked with and without the default port, since Twilio is inconsistent about it; JSON
  bodies carry ``bodySHA256`` in the URL instead. [sdk] twilio-python request_validator.py
- A webhook that a Webhooks Rule signs with a SharedKey carries
  ``X-Twilio-Webhooks-Signature-Settings: key=<SharedKey id>,algorithm=HMAC_SHA256`` (or
  ``HMAC_SHA1``): the signed string is the same, the HMAC key is that SharedKey's secret and
  the hash is the one named. [doc] twilio.com/docs/usage/webhooks/webhook-shared-keys
  (Public Beta); [sdk] twilio-python 9.13 request_validator.py ``get_signature_algorithm``
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from collections.abc import Sequence
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qs, urlsplit, urlunsplit

from pydantic import Field

from bridge.model import (
    DeliveryReport,
    InboundEvent,
    InboundMessage,
    MediaRef,
    OutboundSms,
    SendFailed,
    SendResult,
    Sent,
    State,
)
from bridge.providers.base import (
    Part,
    Provider,
    ProviderConfig,
    TextLimit,
    WebhookAnswer,
    WebhookMalformed,
    WebhookRequest,
    WebhookUnauthorized,
    basic_auth,
    carrier_failure,
    constant_time_equal,
    first_error,
    form_body,
    require,
    response_json,
)
from bridge.secrets import Secret, reveal


class TwilioConfig(ProviderConfig):
    type: Literal["twilio"]
    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token: Secret  # signs webhooks; also the API password unless an API key is given
    api_key_sid: str | None = Field(default=None, pattern=r"^SK[0-9a-fA-F]{32}$")
    api_key_secret: Secret | None = None
    messaging_service_sid: str | None = Field(default=None, pattern=r"^MG[0-9a-fA-F]{32}$")
    status_callback: bool = True  # ask Twilio to post delivery reports to our webhook
    # SharedKey id -> secret, for webhooks a Webhooks Rule signs with a SharedKey instead of
    # the auth token; two entries while a key is rotated.
    webhook_shared_keys: dict[str, Secret] = Field(default_factory=dict)


# Twilio's message status vocabulary mapped to ours; statuses absent here carry no news.
STATUS_MAP: dict[str, State] = {
    "sent": State.SENT,
    "delivered": State.DELIVERED,
    "read": State.DELIVERED,
    "undelivered": State.FAILED,
    "failed": State.FAILED,
    "canceled": State.FAILED,
}
INBOUND_STATUSES = frozenset({"received", "receiving", ""})
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
# The algorithms a Webhook Setting may name, as hashlib names them.
SIGNATURE_ALGORITHMS = {"HMAC_SHA1": "sha1", "HMAC_SHA256": "sha256"}


def twilio_signature(auth_token: str, url: str, params: Sequence[tuple[str, str]],
                     digest: str = "sha1") -> str:
    """The signature Twilio computes: URL, then each name+value sorted by name then value,
    a value repeated under one name counted once (the SDK signs ``sorted(set(values))``)."""
    payload = url + "".join(k + v for k, v in sorted(set(params)))
    mac = hmac.digest(auth_token.encode(), payload.encode("utf-8"), digest)
    return base64.b64encode(mac).decode()


def signature_settings(header: str) -> tuple[str, str]:
    """The SharedKey id and algorithm a ``X-Twilio-Webhooks-Signature-Settings`` header
    names (``key=<id>,algorithm=<name>``); no algorithm means HMAC_SHA1, as in the SDK."""
    fields: dict[str, str] = {}
    for part in header.split(","):
        name, separator, value = part.partition("=")
        if separator:
            fields.setdefault(name.strip().lower(), value.strip())
    return fields.get("key", ""), fields.get("algorithm") or "HMAC_SHA1"


@functools.lru_cache(maxsize=256)
def _port_variants(url: str) -> tuple[str, ...]:
    """The URL as given, with the default port added, and with it removed.

    Kept per URL: a carrier calls the same webhook URL every time, and splitting it again
    per request was a fifth of the signature check."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    without = urlunsplit(parts._replace(netloc=userinfo + host))
    with_port = urlunsplit(parts._replace(netloc=f"{userinfo}{host}:{parts.port or default}"))
    return tuple(dict.fromkeys([url, without, with_port]))



def signed_body_hash(url: str) -> str | None:
    """The ``bodySHA256`` a JSON webhook's URL carries (its signature then covers the URL
    only), or None. The query is parsed only when it can carry one: form webhooks, nearly
    all of them, skip it."""
    if "bodySHA256" not in url:
        return None
    values = parse_qs(urlsplit(url).query).get("bodySHA256")
    return values[0] if values else None


class TwilioProvider(Provider):
    Config = TwilioConfig
    default_api_base = "https://api.twilio.com"
    webhook_auth = ("X-Twilio-Signature (HMAC-SHA1 with the auth token, or the SharedKey and "
                    "algorithm a Webhooks Rule names)")
    opt_out_codes = frozenset({"21610"})
    # Body: at most 1,600 characters (error 21617); MediaUrl: at most 10.
    text_limit = TextLimit(1600)
    max_media_per_part = 10
    # Hosts (besides api_base's) whose media URLs get the API credentials.
    media_hosts: ClassVar[frozenset[str]] = frozenset({"api.twilio.com"})
    carrier_name: ClassVar[str] = "Twilio"  # in error reasons
    config: TwilioConfig

    async def _send_part(self, msg: OutboundSms, part: Part, index: int,
                         total: int) -> SendResult:
        cfg = self.config
        form: list[tuple[str, str]] = [("To", msg.to_number), ("Body", part.text)]
        if msg.sender_id:
            form.append(("From", msg.sender_id))
        elif cfg.messaging_service_sid and not msg.from_number:
            form.append(("MessagingServiceSid", cfg.messaging_service_sid))
        else:
            form.append(("From", msg.from_number))
        form.extend(("MediaUrl", m.url) for m in part.media)
        if cfg.status_callback:
            form.append(("StatusCallback", self.webhook_url()))
        user, password = self._api_credentials()
        url = f"{self.api_base}/2010-04-01/Accounts/{cfg.account_sid}/Messages.json"
        headers = basic_auth(user, password)
        async with self.http.post(url, data=form_body(form), headers=headers) as resp:
            payload = await response_json(resp)
            if resp.status in (200, 201) and isinstance(payload, dict) and payload.get("sid"):
                return Sent(str(payload["sid"]), detail=str(payload.get("status", "")))
            return self._failure(resp.status, payload, resp.headers)

    def _api_credentials(self) -> tuple[str, str]:
        cfg = self.config
        if cfg.api_key_sid and cfg.api_key_secret:
            return cfg.api_key_sid, reveal(cfg.api_key_secret)
        return cfg.account_sid, reveal(cfg.auth_token)

    async def fetch_media(self, url: str, *, max_bytes: int | None = None) -> tuple[bytes, str]:
        """Twilio media URLs (``api.twilio.com/.../Media/ME...``) need the API credentials when
        the account enforces HTTP auth for media; they are sent to Twilio's API host (or the
        configured api_base) only, never on to the storage host Twilio redirects to."""
        parts = urlsplit(url)
        headers = {}
        if parts.hostname in self.media_hosts or parts.netloc == urlsplit(self.api_base).netloc:
            headers = basic_auth(*self._api_credentials())
        return await self.download(url, headers=headers, max_bytes=max_bytes)

    @classmethod
    def _failure(cls, status: int, payload: object, headers) -> SendFailed:
        # Twilio's {"code", "message"}; also RFC 9457 problems and {"errors": [...]}
        body: Any = first_error(payload) or (payload if isinstance(payload, dict) else {})
        message = str(body.get("message") or body.get("detail") or body.get("title") or "")
        return carrier_failure(status, headers, cls.carrier_name, message, body.get("code"))

    def verify(self, req: WebhookRequest) -> None:
        super().verify(req)
        signature = req.headers.get("X-Twilio-Signature", "")
        if not signature:
            raise WebhookUnauthorized("X-Twilio-Signature header missing")
        token, digest = self._signing_key(req)
        body_sha256 = signed_body_hash(req.url)
        if body_sha256 is not None:
            # JSON webhooks: the signature covers the URL only, the body is hashed into it.
            body_hash = hashlib.sha256(req.body).hexdigest()
            if not constant_time_equal(body_hash, body_sha256):
                raise WebhookUnauthorized("bodySHA256 does not match the body")
            params: list[tuple[str, str]] = []
        else:
            params = req.form() if req.method == "POST" else []
        for url in _port_variants(req.url):
            if constant_time_equal(twilio_signature(token, url, params, digest), signature):
                return
        raise WebhookUnauthorized("X-Twilio-Signature does not match")

    def _signing_key(self, req: WebhookRequest) -> tuple[str, str]:
        """The HMAC key and hash a webhook was signed with: the auth token and SHA-1, or
        the SharedKey and algorithm its signature-settings header names."""
        settings = req.headers.get(SIGNATURE_SETTINGS_HEADER)
        if settings is None:
            return reveal(self.config.auth_token), "sha1"
        key_id, algorithm = signature_settings(settings)
        digest = SIGNATURE_ALGORITHMS.get(algorithm.upper())
        if digest is None:
            raise WebhookUnauthorized(f"signature algorithm {algorithm[:40]!r} is not one "
                                      f"Twilio documents (HMAC_SHA1, HMAC_SHA256)")
        secret = self.config.webhook_shared_keys.get(key_id)
        if secret is None:
            raise WebhookUnauthorized(
                f"signed with SharedKey {key_id[:80]!r}, which is not in this carrier's "
                f"webhook_shared_keys")
        return reveal(secret), digest

    def parse(self, req: WebhookRequest) -> list[InboundEvent]:
        fields = req.form_dict()
        sid = require(fields, "MessageSid") if "MessageSid" in fields else require(fields, "SmsSid")
        status = (fields.get("MessageStatus") or fields.get("SmsStatus") or "").lower()
        if status not in INBOUND_STATUSES:
            state = STATUS_MAP.get(status)
            if state is None:
                return []
            error = fields.get("ErrorCode") or None
            if error and fields.get("ErrorMessage"):
                error = f"{error}: {fields['ErrorMessage']}"
            return [DeliveryReport(sid, state, carrier_status=status, error=error)]
        sender = self.inbound_number(require(fields, "From"), "From")
        recipient = self.inbound_number(require(fields, "To"), "To")
        media = []
        try:
            count = min(int(fields.get("NumMedia") or 0), 10)
        except ValueError:
            raise WebhookMalformed("NumMedia is not a number") from None
        for index in range(count):
            url = fields.get(f"MediaUrl{index}")
            if url:
                media.append(MediaRef(url, fields.get(f"MediaContentType{index}")))
        return [InboundMessage(sid, sender, recipient, fields.get("Body", ""), tuple(media))]

    def answer(self, events: Sequence[InboundEvent]) -> WebhookAnswer:
        return WebhookAnswer(200, EMPTY_TWIML, "text/xml")
