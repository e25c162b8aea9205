"""Flowroute Messages API v2.2 (JSON:API).

Facts and sources (see also shared providers.md §4):
- Send: ``POST https://api.flowroute.com/v2.2/messages``, HTTP Basic (Access Key:Secret Key),
  ``Content-Type: application/vnd.api+json``, body ``{"data": {"type": "message",
  "attributes": {"to", "from", "body", "media_urls", "is_mms", "dlr_callback"}}}``. Success is
  **202** ``{"data": {"id": "mdr2-…", "type": "message", "links": {...}}}``. Errors are
  ``{"errors": [{"id", "status", "title", "detail"}]}``.
  [doc] developer.flowroute.com/api/messages/v2.2/send-an-sms, send-an-mms;
  [sdk] flowroute-sdk-v3-python swagger ``MessageSuccess``, ``Error``
- Number format: the v2.2 SMS page asks for ``+E.164`` (``+12065551234``) while the MMS page
  (copied from v2.1) shows ``12065551234``. We send ``+E.164`` by default, as does the FreePBX
  SMS Connector's Flowroute v2.2 provider ([3p] simontelephonics/smsconnector
  providers/provider-Flowroute.php); ``number_format = "digits"`` switches to 11 digits.
- Inbound SMS/MMS: JSON:API POST to the account (or number) callback URL: ``data.id``
  (``mdr2-…``), ``data.attributes.{from, to, body, direction, is_mms}``; numbers are digits
  without ``+``. MMS media are the top-level ``included[]`` entries of type ``media`` with
  ``attributes.{url, mime_type, file_size, file_name}`` (``body`` may be null).
  [doc] v2.2 receive-an-sms / receive-an-mms; [3p] stacksjb/GoogleSheets-Webhook-Flowroute
  examplemms.json and the FreePBX SMS Connector (both read ``included[]``, not the relationship
  ids, which is what we do too).
- Delivery receipts: POST to ``dlr_callback`` with ``data.type = "delivery_receipt"``,
  ``data.id`` = the sent message's ``mdr2-…`` id and ``data.attributes.{level, status,
  status_code, status_code_description}``; level 1 is the hand-off to the carrier, level 2 is
  anything later. No DLRs for MMS. [doc] v2.2 receive-a-dlr, /docs/delivery-receipts.
  **Where the facts end**: ``status`` is documented only as "Status of the message" and
  ``status_code`` points to a "Delivery Receipt Response Codes" table we could not read, so no
  status value is known from a document. The adapter therefore guesses none: the operator
  maps the values their account receives with ``dlr_states`` (status -> sent | delivered |
  failed); an unmapped status is no news. The one documented rule applied is the level: a
  level-1 receipt is the hand-off to the carrier, so it never means delivered (a status
  mapped to "delivered" counts as sent there).
- **No webhook signature or credentials are documented** (the docs only suggest allowing
  Flowroute's addresses), so a ``webhook_token`` in the URL path is required.
  [doc] "Protect your callback URL"
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field

from bridge.model import (
    DeliveryReport,
    InboundEvent,
    InboundMessage,
    OutboundSms,
    SendFailed,
    SendResult,
    Sent,
    State,
)
from bridge.numbers import digits
from bridge.providers.base import (
    Provider,
    ProviderConfig,
    WebhookMalformed,
    WebhookRequest,
    basic_auth,
    carrier_failure,
    classify_http_failure,
    first_error,
    json_object,
    media_object,
    require,
    response_json,
    text_field,
)
from bridge.secrets import Secret, reveal

JSON_API = "application/vnd.api+json"



class FlowrouteConfig(ProviderConfig):
    type: Literal["flowroute"]
    access_key: str = Field(min_length=1)
    secret_key: Secret
    number_format: Literal["e164", "digits"] = "e164"  # "+12065551234" or "12065551234"
    delivery_reports: bool = True  # ask Flowroute to post DLRs to our webhook (SMS only)
    # Flowroute's DLR ``status`` values (case-insensitive) and what they mean here. None is
    # documented, so none is assumed: e.g. { delivered = "delivered", undeliverable = "failed" }
    dlr_states: dict[str, Literal["sent", "delivered", "failed"]] = Field(default_factory=dict)


def classify_dlr(status: str, level: object,
                 states: dict[str, str]) -> State | None:
    """Our state for a receipt, from the operator's ``dlr_states``; None: no news."""
    mapped = {k.lower(): v for k, v in states.items()}.get(status.strip().lower())
    if mapped is None:
        return None
    if mapped == "delivered" and str(level) == "1":
        return State.SENT  # level 1 is only the hand-off to the carrier
    return State(mapped)


class FlowrouteProvider(Provider):
    Config = FlowrouteConfig
    default_api_base = "https://api.flowroute.com"
    webhook_auth = "none documented by Flowroute: a secret token in the webhook URL path"
    requires_webhook_token = True
    webhook_content_types: ClassVar[frozenset[str]] = frozenset({"application/json", JSON_API})
    config: FlowrouteConfig

    def _format(self, e164: str) -> str:
        return digits(e164) if self.config.number_format == "digits" else e164

    # --- sending ----------------------------------------------------------------------------

    async def _send(self, msg: OutboundSms) -> SendResult:
        cfg = self.config
        attributes: dict[str, Any] = {
            "to": self._format(msg.to_number),
            "from": self._format(msg.from_number),
        }
        if msg.text or not msg.media:
            attributes["body"] = msg.text
        if msg.media:
            attributes["media_urls"] = [m.url for m in msg.media]
            attributes["is_mms"] = True
        if cfg.delivery_reports and not msg.media:  # Flowroute has no DLRs for MMS
            attributes["dlr_callback"] = self.webhook_url()
        body = {"data": {"type": "message", "attributes": attributes}}
        headers = {
            **basic_auth(cfg.access_key, reveal(cfg.secret_key)),
            "Content-Type": JSON_API,
            "Accept": JSON_API,
        }
        data = json.dumps(body, ensure_ascii=False).encode()
        async with self.http.post(f"{self.api_base}/v2.2/messages", data=data,
                                  headers=headers) as resp:
            payload = await response_json(resp)
            record = payload.get("data") if isinstance(payload, dict) else None
            if resp.status in (200, 201, 202) and isinstance(record, dict) and record.get("id"):
                return Sent(str(record["id"]))
            return self._failure(resp.status, payload, resp.headers)

    @staticmethod
    def _failure(status: int, payload: object, headers) -> SendFailed:
        first = first_error(payload)
        if first is None:
            return classify_http_failure(status, "no error detail", headers)
        text = ": ".join(str(first[k]) for k in ("title", "detail") if first.get(k))
        return carrier_failure(status, headers, "Flowroute", text or "no error detail", status)

    # --- webhooks ---------------------------------------------------------------------------
    # verify(): the base class checks the URL path token, which is all Flowroute allows.

    def parse(self, req: WebhookRequest) -> list[InboundEvent]:
        document = json_object(req.json(), "the webhook body")
        data = json_object(require(document, "data"), "data")
        kind = data.get("type")
        carrier_id = require(data, "id")
        if not isinstance(carrier_id, str) or not isinstance(kind, str):
            raise WebhookMalformed("data.id and data.type must be strings")
        attributes = json_object(require(data, "attributes"), "data.attributes")
        if kind == "delivery_receipt":
            return self._receipt(carrier_id, attributes)
        if kind != "message":
            return []
        if str(attributes.get("direction") or "inbound").lower() != "inbound":
            return []
        text = text_field(attributes, "body", "data.attributes.body")
        included = document.get("included") or []
        if not isinstance(included, list):
            raise WebhookMalformed("included is not a list")
        media = []
        for entry in included:
            item = json_object(entry, "included[]")
            if item.get("type") != "media":
                continue
            details = json_object(item.get("attributes"), "included[].attributes")
            media.append(media_object(details, "included media", ("mime_type",), "file_size"))
        return [InboundMessage(
            carrier_id,
            self.inbound_number(attributes.get("from"), "from"),
            self.inbound_number(attributes.get("to"), "to"),
            text,
            tuple(media),
        )]

    def _receipt(self, carrier_id: str, attributes: Mapping[str, Any]) -> list[InboundEvent]:
        status = attributes.get("status")
        if not isinstance(status, str):
            raise WebhookMalformed("delivery receipt without a status")
        state = classify_dlr(status, attributes.get("level"), self.config.dlr_states)
        if state is None:
            return []
        error = None
        if state is State.FAILED:
            parts = [str(attributes[k]) for k in ("status_code", "status_code_description")
                     if attributes.get(k) not in (None, "")]
            error = ": ".join(parts)[:500] or status
        return [DeliveryReport(carrier_id, state, carrier_status=status, error=error)]
