"""VoIP.ms SMS/MMS (REST/JSON API v1).

VoIP.ms's own API reference (voip.ms/m/apidocs.php) needs a customer login and was not
available; every fact below is from independent integrations that agree with each other, so
the uncertain ones are configurable. Sources (see also shared providers.md §6):

- Send: ``https://voip.ms/api/v1/rest.php``, parameters ``api_username`` (the account e-mail),
  ``api_password`` (the separate API password) and ``method``. GET with a query string is what
  most clients use [3p] caronc/apprise plugins/voipms.py; a POSTed form works too [3p]
  simontelephonics/smsconnector provider-Voipms.php (multipart POST). We POST a form by default
  so the password never sits in a URL; ``request_method = "GET"`` switches to the query string.
  The account must enable API access and allow-list the bridge's IP address.
- ``method=sendSMS``: ``did`` (10-digit source DID), ``dst`` (10-digit destination),
  ``message`` (at most 160 characters: longer text is split and sent as several SMS).
  ``method=sendMMS``: the same plus ``media1``..``media3`` (URLs; ``message`` up to about
  1600 characters). More than three media go out as several MMS. [3p] 4doom4/python-voipms,
  DJTSmith18/openclaw-voipms-sms, Carlsans/VoipMs2MatrixSMS
- Answers are HTTP 200 JSON: ``{"status": "success", "sms": <id>}`` (``"mms"`` for sendMMS),
  or ``{"status": "<error token>", "message": ...}`` such as ``invalid_credentials``. No error
  token is documented as transient, so all are permanent unless listed in
  ``retryable_statuses``. [3p] apprise tests/test_plugin_voipms.py
- VoIP.ms only texts North American (+1) numbers and has no alphanumeric senders.

Inbound, two shapes, both accepted on the same webhook URL:

- The legacy per-DID "SMS/MMS URL Callback": VoIP.ms requests the operator's URL template
  **as GET**, replacing ``{TO}``, ``{FROM}``, ``{MESSAGE}``, ``{ID}``, ``{TIMESTAMP}`` and
  ``{MEDIA}``. ``webhook_url()`` returns the URL to paste, with our template
  ``?to={TO}&from={FROM}&message={MESSAGE}&id={ID}&date={TIMESTAMP}&media={MEDIA}``;
  ``;``-separated templates (as smsconnector uses) and ``files=`` for the media also work.
  ``{MEDIA}`` is taken as a comma-separated URL list (unverified: one URL in practice); a
  placeholder left unreplaced is treated as empty. [3p] smsconnector provider-Voipms.php,
  Carlsans/VoipMs2MatrixSMS catchsms.php
- The newer per-DID JSON "webhook". Its shape is **unverified**: several third-party handlers
  read a Telnyx-like ``{"data": {"id", "event_type", "payload": {"id", "from":
  {"phone_number"}, "to": [{"phone_number"}], "text", "media", "received_at"}}}`` with
  numbers as ``+1NXXNXXXXXX``, so that is what we accept; anything else is a 400 the operator
  will see in the log. [3p] openclaw-voipms-sms index.js and others
- A long inbound SMS arrives as one callback per segment, and VoIP.ms does not mark the parts
  (no reference, index or total); the parts carry the same timestamp and arrive in any order
  (michaelkourlas/voipms-sms-client issues #69, #94, #132), so no join can be right: each
  callback is delivered as its own message.
- No delivery reports and no webhook authentication exist: the webhook URL must carry a
  secret ``webhook_token``. We answer ``200 ok``. Deduplication is on ``{ID}``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from itertools import zip_longest
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field

from bridge.model import (
    InboundEvent,
    InboundMessage,
    MediaRef,
    OutboundSms,
    SendFailed,
    SendResult,
    Sent,
)
from bridge.numbers import InvalidNumber, national_nanp, split_text
from bridge.providers.base import (
    Provider,
    ProviderConfig,
    WebhookAnswer,
    WebhookMalformed,
    WebhookRequest,
    classify_http_failure,
    form_body,
    media_list,
    response_json,
    text_field,
)
from bridge.secrets import Secret, reveal

REST_PATH = "/api/v1/rest.php"
MMS_MEDIA_PER_MESSAGE = 3
CALLBACK_TEMPLATE = (
    "to={TO}&from={FROM}&message={MESSAGE}&id={ID}&date={TIMESTAMP}&media={MEDIA}"
)
_PLACEHOLDERS = frozenset({"{TO}", "{FROM}", "{MESSAGE}", "{ID}", "{TIMESTAMP}", "{DATE}",
                           "{MEDIA}"})


class VoipmsConfig(ProviderConfig):
    type: Literal["voipms"]
    api_username: str = Field(min_length=3, max_length=254)  # the account's e-mail address
    api_password: Secret  # the API password set under "SOAP and REST/JSON API"
    # POST keeps the password out of URLs (and so out of proxy logs); GET is the common form.
    request_method: Literal["POST", "GET"] = "POST"
    sms_max_chars: int = Field(default=160, ge=1, le=160)
    mms_max_chars: int = Field(default=1600, ge=1, le=2048)
    # Send text longer than one SMS as a single MMS instead of several SMS (as some clients do).
    long_text_as_mms: bool = False
    # Error tokens worth another attempt; VoIP.ms documents none as transient.
    retryable_statuses: tuple[str, ...] = ()


class VoipmsProvider(Provider):
    Config = VoipmsConfig
    default_api_base = "https://voip.ms"
    webhook_auth = "a secret token in the webhook URL path (VoIP.ms signs nothing)"
    requires_webhook_token = True
    supports_sender_id = False
    config: VoipmsConfig

    # --- outbound ---------------------------------------------------------------------------

    async def _send(self, msg: OutboundSms) -> SendResult:
        cfg = self.config
        try:
            did = national_nanp(msg.from_number)
            dst = national_nanp(msg.to_number)
        except InvalidNumber:
            return SendFailed("VoIP.ms sends between North American (+1) numbers only",
                              retryable=False, code="invalid_number")
        requests: list[tuple[str, list[tuple[str, str]]]] = []
        if msg.media:
            texts = split_text(msg.text, cfg.mms_max_chars) if msg.text else []
            urls = [m.url for m in msg.media]
            groups = [urls[i:i + MMS_MEDIA_PER_MESSAGE]
                      for i in range(0, len(urls), MMS_MEDIA_PER_MESSAGE)]
            for text, group in zip_longest(texts, groups, fillvalue=None):
                params = [("message", text)] if text else []
                params.extend((f"media{n}", u) for n, u in enumerate(group or (), start=1))
                requests.append(("sendMMS", params))
        elif cfg.long_text_as_mms and len(msg.text) > cfg.sms_max_chars:
            requests.extend(("sendMMS", [("message", part)])
                            for part in split_text(msg.text, cfg.mms_max_chars))
        else:
            requests.extend(("sendSMS", [("message", part)])
                            for part in split_text(msg.text, cfg.sms_max_chars))
        return await self.send_parts(msg, requests, lambda request, _i, _n: self._call(
            request[0], [("did", did), ("dst", dst), *request[1]]))

    async def _call(self, method: str, params: list[tuple[str, str]]) -> SendResult:
        cfg = self.config
        fields = [("api_username", cfg.api_username),
                  ("api_password", reveal(cfg.api_password)),
                  ("method", method), *params]
        url = self.api_base + REST_PATH
        if cfg.request_method == "GET":
            request = self.http.get(url, params=fields)
        else:
            request = self.http.post(url, data=form_body(fields))
        async with request as resp:
            payload = await response_json(resp)
            if resp.status != 200:
                return classify_http_failure(resp.status, resp.reason or "", resp.headers)
        if not isinstance(payload, dict):
            return SendFailed("VoIP.ms answered with something other than JSON",
                              retryable=True)
        status = str(payload.get("status") or "")
        if status == "success":
            carrier_id = payload.get("sms") or payload.get("mms")
            if isinstance(carrier_id, str | int) and str(carrier_id):
                return Sent(str(carrier_id))
            # Accepted, but with no id to match later: never resend it.
            return Sent(f"voipms-{uuid.uuid4().hex}", detail="no id in the answer")
        message = str(payload.get("message") or "")
        reason = f"VoIP.ms error {status or 'unknown'}" + (f": {message}" if message else "")
        return SendFailed(reason[:500], retryable=status in cfg.retryable_statuses,
                          code=status or None)

    # --- inbound ----------------------------------------------------------------------------

    def webhook_url(self, *, masked: bool = False) -> str:
        """The URL template to paste into the DID's "SMS/MMS URL Callback" field."""
        return super().webhook_url(masked=masked) + "?" + CALLBACK_TEMPLATE

    def parse(self, req: WebhookRequest) -> list[InboundEvent]:
        if req.method == "POST" and req.content_type == "application/json":
            return self._parse_json_webhook(req.json())
        return self._parse_callback(self._callback_fields(req))

    def _callback_fields(self, req: WebhookRequest) -> dict[str, str]:
        fields = dict(req.query)
        raw = urlsplit(req.url).query
        if ";" in raw and "&" not in raw:  # a template written with ';' between parameters
            fields = dict(parse_qsl(raw.replace(";", "&"), keep_blank_values=True))
        if req.method == "POST":
            fields.update(req.form())
        return {k: ("" if v in _PLACEHOLDERS else v) for k, v in fields.items()}

    def _parse_callback(self, fields: Mapping[str, str]) -> list[InboundEvent]:
        carrier_id = fields.get("id", "")
        if not carrier_id:
            raise WebhookMalformed("missing 'id': is {ID} in the VoIP.ms callback URL?")
        sender = self.inbound_number(fields.get("from", ""), "from")
        recipient = self.inbound_number(fields.get("to", ""), "to")
        raw_media = fields.get("media") or fields.get("files") or ""
        media = tuple(
            MediaRef(u) for u in (p.strip() for p in raw_media.replace(" ", ",").split(","))
            if u.startswith(("https://", "http://"))
        )
        text = fields.get("message", "")
        return [InboundMessage(carrier_id, sender, recipient, text, media)]

    def _parse_json_webhook(self, body: Any) -> list[InboundEvent]:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise WebhookMalformed("expected a JSON object with a 'data' object")
        event_type = data.get("event_type")
        if event_type not in (None, "", "message.received"):
            return []  # not a message we receive
        payload = data.get("payload")
        if not isinstance(payload, dict):
            raise WebhookMalformed("'data.payload' must be an object")
        if str(payload.get("direction") or "inbound").lower() != "inbound":
            return []
        carrier_id = payload.get("id") or data.get("id")
        if not isinstance(carrier_id, str | int) or not str(carrier_id):
            raise WebhookMalformed("missing message id")
        sender = self.inbound_number(_phone_of(payload.get("from")), "from")
        recipient = self.inbound_number(_phone_of(payload.get("to")), "to")
        text = text_field(payload, "text", "'text'")
        return [InboundMessage(str(carrier_id), sender, recipient, text,
                               media_list(payload.get("media")))]

    def answer(self, events: Sequence[InboundEvent]) -> WebhookAnswer:
        return WebhookAnswer(200, "ok", "text/plain")


def _phone_of(value: Any) -> str:
    """A number given as a string, ``{"phone_number": ...}``, or a list of either."""
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("phone_number")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise WebhookMalformed("a phone number must be a string")
    return value


