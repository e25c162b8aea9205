"""SignalWire Compatibility ("LaML" / cXML) Messaging API: Twilio's wire format on SignalWire.

Facts and sources (see also shared providers.md §8):
- Send: ``POST https://{space}.signalwire.com/api/laml/2010-04-01/Accounts/{ProjectID}/
  Messages.json``, HTTP Basic (Project ID:API token), form fields ``To``, ``From``, ``Body``
  (at most 1,600 characters: error 21617 beyond, so longer texts are split), ``MediaUrl``
  (repeated, "up to a maximum of 10 media URLs per message", 5 MB combined: more go in
  further messages), ``StatusCallback``. [doc] developer.signalwire.com/compatibility-api/
  client-sdks/methods/messaging/create. The answer is a Twilio-shaped message whose ``sid``
  is a UUID.
  [doc] developer.signalwire.com/compatibility-api/rest/create-a-message, .../overview (base URL)
- Errors use Twilio's codes: 21610 "Attempt to send to unsubscribed recipient", 30004 "Message
  blocked or opted out", 21617 body too long. [doc] signalwire/docs
  website/docs/main/rest/compatibility-api/overview/error-codes.mdx
- Inbound and status webhooks are Twilio-compatible form POSTs (``MessageSid``, ``From``, ``To``,
  ``Body``, ``NumMedia``, ``MediaUrl{N}``, ``MessageStatus``, ``ErrorCode``) answered with an empty
  ``<Response/>``, so parsing and answering are the Twilio adapter's. MMS gets no DLR: it stops
  at ``sent``. [doc] compatibility-api/xml/messaging, .../sms-status-callback
- Inbound media URLs are on the Space host (the Media sub-resource,
  ``https://{space}.signalwire.com/api/laml/2010-04-01/Accounts/{ProjectID}/Messages/{sid}/
  Media/{id}``) and are fetched with the project id and API token, never sent elsewhere.
  [doc] compatibility-api/rest/media
- Signatures are made with the project's **Signing Key** (not the API token):
  ``X-SignalWire-Signature`` (``X-Twilio-Signature`` accepted as an alias) is
  base64(HMAC-SHA1(key, URL + form params sorted by name, a repeated name keeping its submission
  order)), tried with and without the default port, with ``bodySHA256`` for JSON on the
  compatibility surface ("scheme B"); JSON/RELAY requests use lowercase hex HMAC-SHA1 of
  URL + raw body ("scheme A"), and newer builds add ``X-SignalWire-Sha256-Signature`` = hex
  HMAC-SHA256 of the same. Test vectors are in the SDK's docs/security.md.
  [sdk] signalwire-sdk 3.7.5 ``signalwire/core/security/webhook_validator.py``
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from bridge.model import OutboundSms, SendResult, Sent
from bridge.providers.base import (
    Part,
    Provider,
    ProviderConfig,
    TextLimit,
    WebhookMalformed,
    WebhookRequest,
    WebhookUnauthorized,
    basic_auth,
    constant_time_equal,
    form_body,
    response_json,
)
from bridge.providers.twilio import (
    TwilioProvider,
    _port_variants,
    signed_body_hash,
    twilio_signature,
)
from bridge.secrets import Secret, reveal

SIGNATURE_HEADERS = ("X-SignalWire-Signature", "X-Twilio-Signature")
SHA256_HEADER = "X-SignalWire-Sha256-Signature"
_SPACE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class SignalWireConfig(ProviderConfig):
    type: Literal["signalwire"]
    space: str  # "example" for https://example.signalwire.com (the full host is accepted too)
    project_id: str = Field(
        pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
    api_token: Secret  # API password (Basic auth with the project id)
    signing_key: Secret  # signs webhooks (Dashboard > API Credentials > Signing Key)
    status_callback: bool = True  # ask SignalWire to post delivery reports to our webhook

    @field_validator("space", mode="before")
    @classmethod
    def _space_name(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        name = value.strip().lower().removeprefix("https://").removeprefix("http://")
        name = name.rstrip("/").removesuffix(".signalwire.com")
        if not _SPACE.match(name):
            raise ValueError("space must be the Space name, e.g. 'example' for "
                             "https://example.signalwire.com")
        return name


def scheme_b_signature(key: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """base64 HMAC-SHA1 of URL + name+value pairs, sorted by name only (stable), as SignalWire
    documents; ``twilio_signature`` differs only in also sorting repeated names by value."""
    payload = url + "".join(k + v for k, v in sorted(params, key=lambda kv: kv[0]))
    digest = hmac.new(key.encode(), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def scheme_a_signature(key: str, url: str, body: bytes, algorithm: str = "sha1") -> str:
    """Lowercase hex HMAC of URL + raw body (JSON/RELAY webhooks)."""
    return hmac.new(key.encode(), url.encode("utf-8") + body, algorithm).hexdigest()


def _header(req: WebhookRequest, name: str) -> str:
    value = req.headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in req.headers.items() if k.lower() == lowered), None)
    return (value or "").strip()


class SignalWireProvider(TwilioProvider):
    """Twilio's parse() and answer() apply unchanged; sending, auth and signing differ."""

    Config = SignalWireConfig
    default_api_base = "https://{space}.signalwire.com"  # filled in from `space` by api_base
    webhook_auth = "X-SignalWire-Signature (HMAC-SHA1 with the project Signing Key)"
    opt_out_codes = frozenset({"21610", "30004"})
    # Body: at most 1,600 characters (error 21617); MediaUrl: at most 10 per message.
    text_limit = TextLimit(1600)
    max_media_per_part = 10
    media_hosts: ClassVar[frozenset[str]] = frozenset()  # only the Space host (api_base)
    carrier_name = "SignalWire"
    config: SignalWireConfig  # type: ignore[assignment]

    @property
    def api_base(self) -> str:
        if self.config.api_base is not None:
            return str(self.config.api_base).rstrip("/")
        return f"https://{self.config.space}.signalwire.com"

    # --- sending ----------------------------------------------------------------------------

    def _api_credentials(self) -> tuple[str, str]:
        # Media on the Space host (``https://{space}.signalwire.com/api/laml/.../Media/...``)
        # is fetched with the same credentials as the API.
        return self.config.project_id, reveal(self.config.api_token)

    async def _send_part(self, msg: OutboundSms, part: Part, index: int,
                         total: int) -> SendResult:
        cfg = self.config
        form: list[tuple[str, str]] = [
            ("To", msg.to_number),
            ("From", msg.sender_id or msg.from_number),
            ("Body", part.text),
        ]
        form.extend(("MediaUrl", m.url) for m in part.media)
        if cfg.status_callback:
            form.append(("StatusCallback", self.webhook_url()))
        url = f"{self.api_base}/api/laml/2010-04-01/Accounts/{cfg.project_id}/Messages.json"
        headers = {**basic_auth(*self._api_credentials()), "Accept": "application/json"}
        async with self.http.post(url, data=form_body(form), headers=headers) as resp:
            payload = await response_json(resp)
            if resp.status in (200, 201) and isinstance(payload, dict) and payload.get("sid"):
                return Sent(str(payload["sid"]), detail=str(payload.get("status") or "") or None)
            return self._failure(resp.status, payload, resp.headers)

    # --- webhooks ---------------------------------------------------------------------------

    def verify(self, req: WebhookRequest) -> None:
        # The URL path token (Provider.verify), not Twilio's auth-token signature check.
        Provider.verify(self, req)
        key = reveal(self.config.signing_key)
        sha256 = _header(req, SHA256_HEADER)
        signature = _header(req, SIGNATURE_HEADERS[0]) or _header(req, SIGNATURE_HEADERS[1])
        if not signature and not sha256:
            raise WebhookUnauthorized("X-SignalWire-Signature header missing")
        urls = _port_variants(req.url)
        if sha256 and any(constant_time_equal(scheme_a_signature(key, u, req.body, "sha256"),
                                              sha256) for u in urls):
            return
        if signature and self._scheme_a_or_b(key, req, urls, signature):
            return
        raise WebhookUnauthorized("X-SignalWire-Signature does not match")

    @staticmethod
    def _scheme_a_or_b(key: str, req: WebhookRequest, urls: Sequence[str], signature: str) -> bool:
        if any(constant_time_equal(scheme_a_signature(key, u, req.body), signature)
               for u in urls):
            return True
        body_sha256 = signed_body_hash(req.url)
        if body_sha256 is not None:
            # JSON on the compatibility surface: the URL is signed, the body hashed into it.
            if not constant_time_equal(hashlib.sha256(req.body).hexdigest(), body_sha256):
                return False
            params: list[tuple[str, str]] = []
        elif req.method == "POST":
            try:
                params = req.form()  # parsed once: parse() reads it again
            except WebhookMalformed:  # not UTF-8
                return False
        else:
            params = []
        for url in urls:
            for expected in (scheme_b_signature(key, url, params),
                             twilio_signature(key, url, params)):
                if constant_time_equal(expected, signature):
                    return True
        return False
