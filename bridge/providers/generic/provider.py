"""The ``generic`` carrier: sends and reads webhooks as its configuration describes."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from yarl import URL

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
from bridge.numbers import InvalidNumber, digits, from_carrier, national_nanp
from bridge.providers.base import (
    Provider,
    ProviderConfig,
    WebhookAnswer,
    WebhookMalformed,
    WebhookRequest,
    WebhookUnauthorized,
    classify_http_failure,
    form_body,
    retry_after_seconds,
)
from bridge.providers.generic.config import GenericConfig, Match, Outgoing, ReportConfig, status_in
from bridge.providers.generic.paths import (
    MISSING,
    Doc,
    form_value,
    loads,
    lookup,
    matches,
    media_url,
    multi,
    render,
    scalar,
    set_path,
)
from bridge.providers.generic.signature import verify_signature

MAX_MEDIA = 20  # media read from one inbound message; more are dropped
MAX_BATCH = 100  # events in one batched webhook


class GenericProvider(Provider):
    Config = GenericConfig
    default_api_base = ""
    config: GenericConfig

    def __init__(self, config: ProviderConfig, public_url: str = "http://127.0.0.1:8080") -> None:
        super().__init__(config, public_url)
        cfg: GenericConfig = self.config
        sig = cfg.inbound.signature
        # The class-level defaults of these depend on the config here, so they are set per
        # instance (instance attributes shadow the base class's ClassVars).
        self.requires_webhook_token = sig is None  # type: ignore[misc]
        self.opt_out_codes = frozenset(cfg.send.opt_out_codes)  # type: ignore[misc]
        if sig is None:
            self.webhook_auth = "a secret token in the webhook URL path"  # type: ignore[misc]
        else:
            self.webhook_auth = (  # type: ignore[misc]
                f"HMAC-{sig.algorithm.upper()} of the {sig.signed} in header {sig.header}"
                + (" (and the URL path token)" if cfg.webhook_token else "")
            )
        self.webhook_content_types = frozenset(  # type: ignore[misc]
            cfg.inbound.content_types
            or {
                "form": ["application/x-www-form-urlencoded"],
                "json": ["application/json"],
                # parameters in the URL: whatever the (empty) body claims to be
                "query": ["application/x-www-form-urlencoded", "application/json",
                          "text/plain", "application/octet-stream"],
            }[cfg.inbound.encoding]
        )

    # --- sending -----------------------------------------------------------------------------

    def _number(self, e164: str) -> str:
        fmt = self.config.send.number_format
        if fmt == "digits":
            return digits(e164)
        if fmt == "national10":
            return national_nanp(e164)
        return e164

    def _url(self, sender: str, recipient: str) -> URL:
        cfg = self.config.send
        values = {**cfg.vars, "from": sender, "to": recipient}
        rendered = render(cfg.url, values)
        if rendered.startswith("/"):
            rendered = self.api_base + rendered
        elif self.config.api_base is not None:
            parts = urlsplit(rendered)
            rest = rendered[len(f"{parts.scheme}://{parts.netloc}"):]
            rendered = self.api_base + rest
        return URL(rendered)

    async def _send(self, msg: OutboundSms) -> SendResult:
        cfg = self.config.send
        try:
            recipient = self._number(msg.to_number)
            sender = msg.sender_id or self._number(msg.from_number)
        except InvalidNumber as exc:
            return SendFailed(str(exc), retryable=False, code="invalid_number")
        if msg.media and cfg.fields.media is None:
            return SendFailed("this carrier is configured without MMS (send.fields.media)",
                              retryable=False, code="no_mms")
        return await self.send_parts(msg, self.split(msg), lambda part, _i, _n: self._send_one(
            sender, recipient, part.text, [m.url for m in part.media]))

    def max_chars(self, text: str) -> int | None:
        return self.config.send.max_chars

    async def _send_one(self, sender: str, recipient: str, text: str,
                        media: list[str]) -> SendResult:
        cfg = self.config.send
        names = cfg.fields
        pairs: list[tuple[str, Any]] = [(names.from_, sender),
                                        (names.to, [recipient] if cfg.to_list else recipient)]
        if text or not media:
            pairs.append((names.text, text))
        if media and names.media:
            if cfg.encoding == "json":
                pairs.append((names.media, media))
            else:
                pairs.extend((names.media, url) for url in media)
        if names.status_callback:
            pairs.append((names.status_callback, self.webhook_url()))
        pairs.extend(cfg.extra.items())
        request = Outgoing(pairs)
        request.headers.update(cfg.headers)
        cfg.auth.apply(request)
        headers, query = request.headers, request.query

        url = self._url(sender, recipient)
        kwargs: dict[str, Any] = {}
        if cfg.encoding == "json":
            body: dict[str, Any] = {}
            for name, value in pairs:
                set_path(body, name, value)
            kwargs["json"] = body
        else:
            flat = [(name, form_value(value)) for name, value in pairs]
            if cfg.encoding == "form":
                kwargs["data"] = form_body(flat)
            else:
                query = flat + query
        if query:
            url = url.extend_query(query)
        async with self.http.request(cfg.method, url, headers=headers, **kwargs) as resp:
            raw = await resp.read()
            return self._outcome(resp.status, loads(raw), resp.headers)

    def _outcome(self, status: int, payload: Any, headers: Mapping[str, str]) -> SendResult:
        cfg = self.config.send
        code = message = None
        if payload is not None:
            if cfg.error_code_path:
                value = lookup(payload, cfg.error_code_path)
                if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                    code = str(value)
            if cfg.error_message_path:
                value = lookup(payload, cfg.error_message_path)
                if isinstance(value, str | int | float) and not isinstance(value, bool):
                    message = str(value)
        accepted = status_in(status, cfg.success_status) and (
            cfg.success_when is None
            or (payload is not None and matches(payload, cfg.success_when))
        )
        if accepted:
            if cfg.id_path is None:
                return Sent(f"{self.name}-{uuid.uuid4().hex}")
            carrier_id = lookup(payload, cfg.id_path) if payload is not None else MISSING
            if isinstance(carrier_id, str | int) and not isinstance(carrier_id, bool) and (
                    str(carrier_id).strip()):
                return Sent(str(carrier_id)[:200])
            # Accepted but unidentifiable: do not retry, it may have gone out.
            return SendFailed(
                f"HTTP {status} but no message id at {cfg.id_path!r}", retryable=False,
                code=code or str(status),
            )
        for rule in cfg.rules:
            if rule.matches(status, code):
                retryable = rule.retryable
                break
        else:
            retryable = classify_http_failure(status, "", headers).retryable
        detail = f"HTTP {status}" + (f" error {code}" if code else "")
        # Provider.send redacts any credential the carrier echoed back.
        reason = f"{detail}: {message or 'no error message'}"
        return SendFailed(reason[:500], retryable=retryable,
                          retry_after=retry_after_seconds(headers.get("Retry-After")),
                          code=code or str(status))

    # --- webhooks ----------------------------------------------------------------------------

    def verify(self, req: WebhookRequest) -> None:
        super().verify(req)
        sig = self.config.inbound.signature
        if sig is None:
            if self.config.webhook_token is None:  # unreachable: the config requires one
                raise WebhookUnauthorized("no webhook authentication configured")
            return
        verify_signature(sig, req, self.config.webhook_tolerance_seconds)

    def _events(self, req: WebhookRequest) -> list[Doc]:
        inbound = self.config.inbound
        if req.method != inbound.method:
            raise WebhookMalformed(f"expected a {inbound.method} webhook, got {req.method}")
        if inbound.encoding == "query":
            return [Doc(multi(req.query), form=True)]
        if inbound.encoding == "form":
            return [Doc(multi(req.form()), form=True)]
        data = loads(req.body)
        if data is None:
            raise WebhookMalformed("body is not valid JSON")
        if inbound.batch:
            if not isinstance(data, list):
                raise WebhookMalformed("expected a JSON array of events")
            if len(data) > MAX_BATCH:
                raise WebhookMalformed(f"more than {MAX_BATCH} events in one webhook")
            items = data
        else:
            items = [data]
        if not all(isinstance(item, dict) for item in items):
            raise WebhookMalformed("expected a JSON object")
        return [Doc(item, form=False) for item in items]

    def parse(self, req: WebhookRequest) -> list[InboundEvent]:
        events: list[InboundEvent] = []
        for doc in self._events(req):
            events.extend(self._parse_one(doc))
        return events

    def _parse_one(self, doc: Doc) -> list[InboundEvent]:
        inbound = self.config.inbound
        report = inbound.report
        if report is not None and matches(doc, report.when or Match(path=report.status)):
            return self._report(doc, report)
        if inbound.when is not None and not matches(doc, inbound.when):
            return []  # an event type we do not act on
        return [self._message(doc)]

    def _report(self, doc: Doc, report: ReportConfig) -> list[InboundEvent]:
        carrier_id = scalar(doc.one(report.id), f"report id {report.id!r}", required=True)
        status = scalar(doc.one(report.status), f"report status {report.status!r}",
                         required=True)
        assert carrier_id is not None and status is not None
        states = {k.lower(): v for k, v in report.states.items()}
        state = states.get(status.strip().lower())
        if state is None:
            return []  # queued, sending, ...: no news
        error = None
        if report.error:
            error = scalar(doc.one(report.error), "report error", required=False)
        if report.error_message:
            text = scalar(doc.one(report.error_message), "report error message",
                           required=False)
            if text:
                error = f"{error}: {text}" if error else text
        return [DeliveryReport(carrier_id[:200], State(state), carrier_status=status[:100],
                               error=error[:500] if error else None)]

    def _message(self, doc: Doc) -> InboundMessage:
        f = self.config.inbound.fields
        region = self.config.default_region
        numbers = []
        for what, path in (("from", f.from_), ("to", f.to)):
            raw = scalar(doc.one(path), f"{what} number {path!r}", required=True)
            try:
                numbers.append(from_carrier(raw or "", region))
            except InvalidNumber as exc:
                raise WebhookMalformed(f"{what} number: {exc}") from None
        text = ""
        if f.text:
            text = scalar(doc.one(f.text), f"text {f.text!r}", required=False) or ""
        if f.id:
            carrier_id = scalar(doc.one(f.id), f"message id {f.id!r}", required=True) or ""
        else:
            carrier_id = f"{self.name}-in-{uuid.uuid4().hex}"
        return InboundMessage(carrier_id[:200], numbers[0], numbers[1], text,
                              tuple(self._media(doc)))

    def _media(self, doc: Doc) -> list[MediaRef]:
        f = self.config.inbound.fields
        media: list[MediaRef] = []
        if f.media_prefix:
            for index in range(f.media_start, f.media_start + MAX_MEDIA):
                value = doc.one(f"{f.media_prefix}{index}")
                if value is MISSING:
                    break
                ctype = None
                if f.media_type_prefix:
                    ctype = scalar(doc.one(f"{f.media_type_prefix}{index}"), "media type",
                                    required=False)
                media.append(MediaRef(media_url(value), ctype))
            return media
        if not f.media:
            return media
        items = doc.many(f.media)
        if f.media_separator and all(isinstance(i, str) for i in items):
            items = [part for i in items for part in i.split(f.media_separator) if part.strip()]
        for item in items[:MAX_MEDIA]:
            if isinstance(item, dict):
                url = media_url(lookup(item, f.media_url))
                ctype = None
                if f.media_type:
                    ctype = scalar(lookup(item, f.media_type), "media type", required=False)
                media.append(MediaRef(url, ctype))
            else:
                media.append(MediaRef(media_url(item)))
        return media

    def answer(self, events: Sequence[InboundEvent]) -> WebhookAnswer:
        inbound = self.config.inbound
        return WebhookAnswer(200, inbound.reply_body, inbound.reply_content_type)
