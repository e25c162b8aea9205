"""Generic carrier: a carrier described entirely in the config file.

For carriers with no public API documentation and no dedicated adapter (VoIP Innovations,
Aire Networks, a regional wholesaler, ...). The operator copies the send request and the
webhook shapes from the carrier's partner documentation or portal into the config, and this
adapter speaks that dialect. It cannot do what no config can describe: Twilio's
URL-plus-sorted-parameters signature or Telnyx's Ed25519 signature need their own adapters.

Worked example (for the README)
-------------------------------
A carrier whose partner PDF says: "POST JSON to /v1/accounts/{account}/sms with a bearer key,
numbers as 11 digits, the answer is ``{"data": {"id": ...}}``; we POST JSON events to your
URL, signed with ``X-Signature: sha256=<hex HMAC-SHA256 of timestamp + "." + body>``"::

    [[providers]]
    name = "voipinnov"
    type = "generic"
    # Webhook URL for the carrier portal: https://<bridge>/webhooks/voipinnov/<webhook_token>
    webhook_token = { env = "VOIPINNOV_WEBHOOK_TOKEN" }

    [providers.send]
    url = "https://api.example.com/v1/accounts/{account}/sms"
    method = "POST"
    encoding = "json"                  # json | form | query
    number_format = "digits"           # e164 (+15551230001) | digits (15551230001) | national10
    vars = { account = "12345" }
    auth = { type = "bearer", token = { env = "VOIPINNOV_API_KEY" } }
    extra = { type = "sms" }
    id_path = "data.id"
    success_status = ["200-299"]
    error_code_path = "error.code"
    error_message_path = "error.message"
    opt_out_codes = ["opted_out"]
    rules = [
      { code = ["throttled"], retryable = true },   # a 400 this carrier uses for rate limits
      { status = ["409"], retryable = false },
    ]

    [providers.send.fields]            # the carrier's names for our fields
    from = "from"
    to = "to"
    text = "text"
    media = "media_urls"
    status_callback = "callback_url"

    [providers.inbound]
    method = "POST"
    encoding = "json"
    when = { path = "event", values = ["message.received"] }

    [providers.inbound.fields]         # dotted paths into the carrier's JSON
    id = "message.id"
    from = "message.from"
    to = "message.to"
    text = "message.body"
    media = "message.media"            # a list of {"url": ..., "mime_type": ...}
    media_url = "url"
    media_type = "mime_type"

    [providers.inbound.report]
    when = { path = "event", values = ["message.status"] }
    id = "message.id"
    status = "message.status"
    error = "message.error_code"
    states = { sent = "sent", delivered = "delivered", undelivered = "failed", rejected = "failed" }

    [providers.inbound.signature]      # leave out if the carrier does not sign webhooks
    secret = { env = "VOIPINNOV_WEBHOOK_SECRET" }
    header = "X-Signature"
    algorithm = "sha256"               # sha1 | sha256 | sha512
    encoding = "hex"                   # hex | base64
    prefix = "sha256="
    signed = "timestamp.body"          # body | url+body | timestamp.body
    timestamp_header = "X-Timestamp"

Reference
---------
``[send]``
  ``url``: absolute URL, or a path joined to ``api_base``. When ``api_base`` is set it
  replaces the scheme and host of an absolute ``url``. ``{name}`` placeholders are filled from
  ``vars``, plus ``{from}`` and ``{to}`` (the numbers, formatted per ``number_format``).
  ``method`` POST | GET (GET needs ``encoding = "query"``). ``encoding`` form | json | query.
  ``fields``: the carrier's names for ``from``, ``to``, ``text``, ``media`` (json: an array;
  form/query: the key repeated once per URL) and ``status_callback`` (our webhook URL). In
  json, names may be dotted paths (``message_body.text``) to build nested objects.
  ``to_list = true`` sends ``to`` as a one-element array (json). ``extra``: static fields.
  ``headers``: static headers. ``max_chars``: split longer texts and send each part.
  ``auth``: ``{ type = "none" }``, ``{ type = "basic", username, password }``,
  ``{ type = "bearer", token }``, ``{ type = "header", header, value }``,
  ``{ type = "query", params = { name = secret, ... } }`` or
  ``{ type = "fields", fields = { name = secret, ... } }`` (credentials in the body).
  ``id_path``: dotted path to the carrier's message id in a success answer; list indexes
  are numbers (``messages.0.id``). Without it each message gets a local id.
  ``success_status``: statuses meaning accepted (``201``, ``"200-299"``, ``"2xx"``).
  ``success_when = { path, values }``: for carriers that answer 200 to errors.
  ``error_code_path`` / ``error_message_path``: where the error code and text are.
  ``rules``: ``{ status = [...], code = [...], retryable = bool }``, first match wins; the
  fallback is the shared rule (408, 425, 429 and 5xx retryable, other statuses permanent).
  ``opt_out_codes``: error codes meaning the recipient opted out (STOP).
``[inbound]``
  ``method`` GET | POST, ``encoding`` form | json | query (query: the URL's parameters).
  ``batch = true``: the JSON body is an array of events. ``when``: only events matching it
  are messages. ``fields``: dotted paths to ``id`` (dedup key; without it carrier retries can
  duplicate), ``from``, ``to``, ``text``, and either ``media`` (a list of URLs or of objects,
  with ``media_url``/``media_type`` paths inside each object; in form, a repeated key;
  ``media_separator`` splits a single string) or ``media_prefix`` (numbered keys such as
  ``MediaUrl0``, ``MediaUrl1`` with ``media_type_prefix``, counted from ``media_start``).
  Form and query field names are taken literally (no dots).
  ``[inbound.report]``: ``when`` (default: the status field is present), ``id``, ``status``,
  ``states`` (carrier status -> sent | delivered | failed; other statuses are ignored),
  ``error``, ``error_message``. ``reply_body`` / ``reply_content_type``: our answer.
  ``content_types``: the Content-Types accepted on a POST (default: per ``encoding``).
  ``[inbound.signature]``: HMAC of the raw ``body``, of ``url+body`` (the public URL the
  carrier called, query included, then the body) or of ``timestamp.body`` (the timestamp
  header's value, ".", the body; refused outside ``webhook_tolerance_seconds``). Several
  comma-separated signatures in the header are accepted (key rotation). ``secret_encoding``
  text | hex | base64 says how to turn the secret into the HMAC key.
  A ``webhook_token`` (random string in the URL path) is required unless a signature is set.
``when`` / ``success_when``: ``{ path, values = [...], not_values = [...] }``; without
  ``values`` it matches any non-empty value. Compared case-insensitively.

Decisions and sources
---------------------
- The HMAC shapes are the common ones: GitHub's ``X-Hub-Signature-256: sha256=<hex>`` over the
  raw body (its published test vector is in the tests: docs.github.com "Validating webhook
  deliveries"), Stripe/Slack-style timestamp-prefixed bodies, and URL+body signing. [doc]
- The tests configure this adapter as Twilio (form send, form webhooks; providers.md §1,
  [spec]/[sdk]) and as Telnyx (JSON send and webhooks; providers.md §2, [sdk] telnyx-python
  types; error codes 40300 "Blocked due to STOP message" and 40310 "HTTP 400" from
  developers.telnyx.com [doc]) and check it against the real Twilio adapter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
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
from bridge.numbers import InvalidNumber, digits, from_carrier, national_nanp, split_text
from bridge.providers.base import (
    Provider,
    ProviderConfig,
    WebhookAnswer,
    WebhookMalformed,
    WebhookRequest,
    WebhookUnauthorized,
    basic_auth,
    bearer_auth,
    classify_http_failure,
    retry_after_seconds,
)
from bridge.secrets import Secret, reveal

MAX_MEDIA = 20  # media read from one inbound message; more are dropped
MAX_BATCH = 100  # events in one batched webhook
MAX_SIGNATURES = 5  # comma-separated signatures tried from one header
_MISSING = object()

# --- config building blocks ------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _check_path(value: str) -> str:
    if not value or len(value) > 200 or any(not part or part != part.strip() or " " in part
                                            for part in value.split(".")):
        raise ValueError(
            f"{value!r} is not a field path: use names separated by dots, "
            "like data.id or messages.0.id"
        )
    return value


FieldPath = Annotated[str, AfterValidator(_check_path)]

_TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$")


def _check_header(value: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"{value!r} is not a valid HTTP header name")
    return value


HeaderName = Annotated[str, AfterValidator(_check_header)]


def _parse_statuses(value: Any) -> tuple[tuple[int, int], ...]:
    items = value if isinstance(value, list | tuple) else [value]
    ranges: list[tuple[int, int]] = []
    for item in items:
        if isinstance(item, tuple) and len(item) == 2:
            lo, hi = item
        elif isinstance(item, int) and not isinstance(item, bool):
            lo = hi = item
        elif isinstance(item, str) and (s := item.strip().lower()):
            if re.fullmatch(r"[1-5]xx", s):
                lo = int(s[0]) * 100
                hi = lo + 99
            elif m := re.fullmatch(r"(\d{3})\s*-\s*(\d{3})", s):
                lo, hi = int(m[1]), int(m[2])
            elif re.fullmatch(r"\d{3}", s):
                lo = hi = int(s)
            else:
                raise ValueError(
                    f"{item!r} is not an HTTP status: write 201, \"200-299\" or \"2xx\""
                )
        else:
            raise ValueError(f"{item!r} is not an HTTP status: write 201, \"200-299\" or \"2xx\"")
        if not 100 <= lo <= hi <= 599:
            raise ValueError(f"{item!r} is not an HTTP status range between 100 and 599")
        ranges.append((lo, hi))
    if not ranges:
        raise ValueError("give at least one HTTP status")
    return tuple(ranges)


StatusSet = Annotated[tuple[tuple[int, int], ...], BeforeValidator(_parse_statuses)]


def _stringify(value: Any) -> Any:
    """Numbers written without quotes in TOML (codes, account ids) are taken as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, list):
        return [_stringify(v) for v in value]
    if isinstance(value, dict):
        return {k: _stringify(v) for k, v in value.items()}
    return value


Text = Annotated[str, BeforeValidator(_stringify)]
TextList = Annotated[list[Text], Field(min_length=1)]


def _status_in(status: int, ranges: StatusSet) -> bool:
    return any(lo <= status <= hi for lo, hi in ranges)


class Match(_Model):
    """A condition on one field of a payload: present (and, with ``values``, one of them)."""

    path: FieldPath
    values: TextList | None = None
    not_values: list[Text] = []


# --- send ------------------------------------------------------------------------------------


class NoAuth(_Model):
    type: Literal["none"]


class BasicAuth(_Model):
    type: Literal["basic"]
    username: str = Field(min_length=1)
    password: Secret


class BearerAuth(_Model):
    type: Literal["bearer"]
    token: Secret


class HeaderAuth(_Model):
    type: Literal["header"]
    header: HeaderName
    value: Secret


class QueryAuth(_Model):
    type: Literal["query"]
    params: dict[str, Secret] = Field(min_length=1)


class FieldsAuth(_Model):
    type: Literal["fields"]
    fields: dict[str, Secret] = Field(min_length=1)


Auth = Annotated[
    NoAuth | BasicAuth | BearerAuth | HeaderAuth | QueryAuth | FieldsAuth,
    Field(discriminator="type"),
]


class SendFields(_Model):
    from_: FieldPath = Field(alias="from")
    to: FieldPath
    text: FieldPath
    media: FieldPath | None = None
    status_callback: FieldPath | None = None


class ErrorRule(_Model):
    status: StatusSet | None = None
    code: TextList | None = None
    retryable: bool

    @model_validator(mode="after")
    def _needs_condition(self) -> ErrorRule:
        if self.status is None and self.code is None:
            raise ValueError("an error rule needs a status list, a code list, or both")
        return self

    def matches(self, status: int, code: str | None) -> bool:
        if self.status is not None and not _status_in(status, self.status):
            return False
        return self.code is None or (code is not None and code in self.code)


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
JsonScalar = str | int | float | bool


class SendConfig(_Model):
    url: str = Field(min_length=1, max_length=2000)
    method: Literal["POST", "GET"] = "POST"
    encoding: Literal["form", "json", "query"] = "form"
    number_format: Literal["e164", "digits", "national10"] = "e164"
    vars: dict[str, Text] = {}
    auth: Auth
    headers: dict[HeaderName, Text] = {}
    fields: SendFields
    to_list: bool = False
    extra: dict[str, JsonScalar | list[JsonScalar] | dict[str, Any]] = {}
    max_chars: int | None = Field(default=None, ge=10, le=10000)
    id_path: FieldPath | None = None
    success_status: StatusSet = ((200, 299),)
    success_when: Match | None = None
    error_code_path: FieldPath | None = None
    error_message_path: FieldPath | None = None
    rules: list[ErrorRule] = []
    opt_out_codes: list[Text] = []

    @model_validator(mode="after")
    def _consistent(self) -> SendConfig:
        if self.method == "GET" and self.encoding != "query":
            raise ValueError('a GET request has no body: use encoding = "query"')
        if self.to_list and self.encoding != "json":
            raise ValueError('to_list needs encoding = "json"')
        if not (self.url.startswith("/") or re.match(r"^https?://[^/{}]+(/|$)", self.url)):
            raise ValueError(
                "url must be an http(s) URL with a plain host (no {placeholders} in the host), "
                "or a path starting with / joined to api_base"
            )
        for name in self.vars:
            if not _VAR_NAME.match(name) or name in ("from", "to"):
                raise ValueError(f"vars: {name!r} is not a usable placeholder name")
        known = {"from", "to", *self.vars}
        for name in _PLACEHOLDER.findall(self.url):
            if name not in known:
                raise ValueError(
                    f"url placeholder {{{name}}} is not defined: add it to vars "
                    f"(known: {', '.join(sorted(known))})"
                )
        mapped = [self.fields.from_, self.fields.to, self.fields.text]
        mapped += [f for f in (self.fields.media, self.fields.status_callback) if f]
        body_names = [*mapped, *self.extra]
        if isinstance(self.auth, FieldsAuth):
            body_names += list(self.auth.fields)
        if isinstance(self.auth, QueryAuth) and self.encoding == "query":
            body_names += list(self.auth.params)
        duplicates = sorted({n for n in body_names if body_names.count(n) > 1})
        if duplicates:
            raise ValueError(f"field name(s) used twice: {', '.join(duplicates)}")
        if self.encoding == "json":
            trial: dict[str, Any] = {}
            for name in body_names:
                try:
                    _set_path(trial, name, "x")
                except ValueError:
                    raise ValueError(
                        f"json field {name!r} clashes with another field's path"
                    ) from None
        return self


# --- inbound ---------------------------------------------------------------------------------


class InboundFields(_Model):
    id: FieldPath | None = None
    from_: FieldPath = Field(alias="from")
    to: FieldPath
    text: FieldPath | None = None
    media: FieldPath | None = None
    media_url: FieldPath = "url"
    media_type: FieldPath | None = None
    media_separator: str | None = Field(default=None, min_length=1)
    media_prefix: FieldPath | None = None
    media_type_prefix: FieldPath | None = None
    media_start: int = Field(default=0, ge=0, le=1)

    @model_validator(mode="after")
    def _media(self) -> InboundFields:
        if self.media and self.media_prefix:
            raise ValueError("give either media (a list) or media_prefix (numbered keys), not both")
        if self.media_type_prefix and not self.media_prefix:
            raise ValueError("media_type_prefix needs media_prefix")
        return self


class ReportConfig(_Model):
    when: Match | None = None
    id: FieldPath
    status: FieldPath
    states: dict[str, Literal["sent", "delivered", "failed"]] = Field(min_length=1)
    error: FieldPath | None = None
    error_message: FieldPath | None = None


class SignatureConfig(_Model):
    secret: Secret
    secret_encoding: Literal["text", "hex", "base64"] = "text"  # noqa: S105
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    header: HeaderName
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    signed: Literal["body", "url+body", "timestamp.body"] = "body"
    timestamp_header: HeaderName | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SignatureConfig:
        if self.signed == "timestamp.body" and not self.timestamp_header:
            raise ValueError('signed = "timestamp.body" needs timestamp_header')
        if self.signed != "timestamp.body" and self.timestamp_header:
            raise ValueError('timestamp_header is only used with signed = "timestamp.body"')
        try:
            _decode_key(reveal(self.secret), self.secret_encoding)
        except ValueError:
            raise ValueError(f"the signature secret is not valid {self.secret_encoding}") from None
        return self

    def key(self) -> bytes:
        return _decode_key(reveal(self.secret), self.secret_encoding)


def _decode_key(secret: str, encoding: str) -> bytes:
    if not secret:
        raise ValueError("empty")
    if encoding == "hex":
        return bytes.fromhex(secret)
    if encoding == "base64":
        try:
            return base64.b64decode(secret, validate=True)
        except binascii.Error:
            raise ValueError("not base64") from None
    return secret.encode()


class InboundConfig(_Model):
    method: Literal["POST", "GET"] = "POST"
    encoding: Literal["form", "json", "query"] = "form"
    batch: bool = False
    when: Match | None = None
    fields: InboundFields
    report: ReportConfig | None = None
    signature: SignatureConfig | None = None
    reply_body: str = Field(default="", max_length=10000)
    reply_content_type: str = "text/plain"
    # Content types accepted on a POST webhook; the default follows ``encoding``.
    content_types: list[Annotated[str, Field(pattern=r"^[a-z0-9.+-]+/[a-z0-9.+-]+$")]] | None = (
        None
    )

    @model_validator(mode="after")
    def _consistent(self) -> InboundConfig:
        if self.encoding == "json" and self.method != "POST":
            raise ValueError('a JSON webhook is a POST: use method = "POST"')
        if self.batch and self.encoding != "json":
            raise ValueError('batch needs encoding = "json"')
        if (self.signature and self.method == "GET" and self.signature.signed != "url+body"):
            raise ValueError('a GET webhook has no body to sign: use signed = "url+body"')
        return self


class GenericConfig(ProviderConfig):
    model_config = ConfigDict(hide_input_in_errors=True)

    type: Literal["generic"]
    send: SendConfig
    inbound: InboundConfig
    webhook_tolerance_seconds: int = Field(default=300, ge=1, le=86400)

    @model_validator(mode="after")
    def _consistent(self) -> GenericConfig:
        if self.send.url.startswith("/") and self.api_base is None:
            raise ValueError("send.url is a path: set api_base to the carrier's https://host")
        if self.inbound.signature is None and self.webhook_token is None:
            raise ValueError(
                "set webhook_token (a long random string for the webhook URL) or an "
                "[inbound.signature] section: otherwise anyone could post fake texts"
            )
        return self


# --- payload access --------------------------------------------------------------------------


def _lookup(obj: Any, path: str) -> Any:
    """The value at a dotted path in parsed JSON (``messages.0.id``), or ``_MISSING``."""
    for part in path.split("."):
        if isinstance(obj, dict):
            if part not in obj:
                return _MISSING
            obj = obj[part]
        elif isinstance(obj, list):
            if not (part.isascii() and part.isdigit() and len(part) <= 6):
                return _MISSING
            index = int(part)
            if index >= len(obj):
                return _MISSING
            obj = obj[index]
        else:
            return _MISSING
    return obj


def _set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at a dotted path, creating objects on the way."""
    parts = path.split(".")
    for part in parts[:-1]:
        node = obj.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(path)
        obj = node
    if parts[-1] in obj:
        raise ValueError(path)
    obj[parts[-1]] = value


class _Doc:
    """One webhook event, read by field path: JSON traverses dots, form keys are literal."""

    def __init__(self, data: Any, form: bool) -> None:
        self.data = data
        self.form = form

    def one(self, path: str) -> Any:
        if self.form:
            values = self.data.get(path)
            if not values:
                return _MISSING
            if len(values) > 1:
                raise WebhookMalformed(f"field {path!r} appears more than once")
            return values[0]
        return _lookup(self.data, path)

    def many(self, path: str) -> list[Any]:
        if self.form:
            return list(self.data.get(path, []))
        value = _lookup(self.data, path)
        if value is _MISSING or value is None:
            return []
        return value if isinstance(value, list) else [value]


def _scalar(value: Any, what: str, *, required: bool) -> str | None:
    """A string or integer field as text; anything else is a malformed payload."""
    if value is _MISSING or value is None or value == "":
        if required:
            raise WebhookMalformed(f"missing {what}")
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise WebhookMalformed(f"{what} has the wrong type ({type(value).__name__})")


def _matches(doc: _Doc | Any, cond: Match) -> bool:
    value = doc.one(cond.path) if isinstance(doc, _Doc) else _lookup(doc, cond.path)
    if value is _MISSING or value is None or value == "":
        return False
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | int | float):
        text = str(value)
    else:
        return False
    text = text.lower()
    if text in {v.lower() for v in cond.not_values}:
        return False
    return cond.values is None or text in {v.lower() for v in cond.values}


def _media_url(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise WebhookMalformed("a media URL is not a string")
    url = value.strip()
    if len(url) > 4096 or not re.match(r"^https?://[^\s/]", url, re.IGNORECASE):
        raise WebhookMalformed("a media URL is not an http(s) URL")
    return url


# --- the provider ----------------------------------------------------------------------------


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
        auth = cfg.send.auth
        secrets: list[str] = []
        if isinstance(auth, BasicAuth):
            secrets.append(reveal(auth.password))
        elif isinstance(auth, BearerAuth):
            secrets.append(reveal(auth.token))
        elif isinstance(auth, HeaderAuth):
            secrets.append(reveal(auth.value))
        elif isinstance(auth, QueryAuth):
            secrets += [reveal(s) for s in auth.params.values()]
        elif isinstance(auth, FieldsAuth):
            secrets += [reveal(s) for s in auth.fields.values()]
        self._secrets = [s for s in secrets if len(s) >= 4]

    # --- sending -----------------------------------------------------------------------------

    def _number(self, e164: str) -> str:
        fmt = self.config.send.number_format
        if fmt == "digits":
            return digits(e164)
        if fmt == "national10":
            return national_nanp(e164)
        return e164

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _url(self, sender: str, recipient: str) -> URL:
        cfg = self.config.send
        values = {**cfg.vars, "from": sender, "to": recipient}
        rendered = _PLACEHOLDER.sub(lambda m: quote(values[m[1]], safe=""), cfg.url)
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
        texts = [msg.text]
        if cfg.max_chars and len(msg.text) > cfg.max_chars:
            texts = split_text(msg.text, cfg.max_chars)
        first: Sent | None = None
        for index, text in enumerate(texts):
            result = await self._send_one(sender, recipient, text,
                                          [m.url for m in msg.media] if index == 0 else [])
            if isinstance(result, SendFailed):
                if len(texts) > 1:
                    return SendFailed(f"part {index + 1} of {len(texts)}: {result.reason}"[:500],
                                      result.retryable, result.retry_after, result.code)
                return result
            first = first or result
        assert first is not None
        return first

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
        headers = dict(cfg.headers)
        query: list[tuple[str, str]] = []
        auth = cfg.auth
        if isinstance(auth, BasicAuth):
            headers.update(basic_auth(auth.username, reveal(auth.password)))
        elif isinstance(auth, BearerAuth):
            headers.update(bearer_auth(reveal(auth.token)))
        elif isinstance(auth, HeaderAuth):
            headers[auth.header] = reveal(auth.value)
        elif isinstance(auth, QueryAuth):
            query.extend((k, reveal(v)) for k, v in auth.params.items())
        elif isinstance(auth, FieldsAuth):
            pairs.extend((k, reveal(v)) for k, v in auth.fields.items())

        url = self._url(sender, recipient)
        kwargs: dict[str, Any] = {}
        if cfg.encoding == "json":
            body: dict[str, Any] = {}
            for name, value in pairs:
                _set_path(body, name, value)
            kwargs["json"] = body
        else:
            flat = [(name, _form_value(value)) for name, value in pairs]
            if cfg.encoding == "form":
                kwargs["data"] = flat
            else:
                query = flat + query
        if query:
            url = url.extend_query(query)
        async with self.http.request(cfg.method, url, headers=headers, **kwargs) as resp:
            raw = await resp.read()
            return self._outcome(resp.status, _loads(raw), resp.headers)

    def _outcome(self, status: int, payload: Any, headers: Mapping[str, str]) -> SendResult:
        cfg = self.config.send
        code = message = None
        if payload is not None:
            if cfg.error_code_path:
                value = _lookup(payload, cfg.error_code_path)
                if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                    code = str(value)
            if cfg.error_message_path:
                value = _lookup(payload, cfg.error_message_path)
                if isinstance(value, str | int | float) and not isinstance(value, bool):
                    message = str(value)
        accepted = _status_in(status, cfg.success_status) and (
            cfg.success_when is None
            or (payload is not None and _matches(payload, cfg.success_when))
        )
        if accepted:
            if cfg.id_path is None:
                return Sent(f"{self.name}-{uuid.uuid4().hex}")
            carrier_id = _lookup(payload, cfg.id_path) if payload is not None else _MISSING
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
        reason = self._scrub(f"{detail}: {message or 'no error message'}")
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
        header = req.headers.get(sig.header, "").strip()
        if not header:
            raise WebhookUnauthorized(f"{sig.header} header missing")
        if sig.signed == "timestamp.body":
            stamp = req.headers.get(sig.timestamp_header or "", "").strip()
            if not stamp:
                raise WebhookUnauthorized(f"{sig.timestamp_header} header missing")
            if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 16):
                raise WebhookUnauthorized(f"{sig.timestamp_header} is not a Unix time")
            seconds = int(stamp)
            if seconds > 10**11:  # milliseconds
                seconds //= 1000
            if abs(req.received_at - seconds) > self.config.webhook_tolerance_seconds:
                raise WebhookUnauthorized("webhook timestamp outside the tolerance window")
            signed = stamp.encode() + b"." + req.body
        elif sig.signed == "url+body":
            signed = req.url.encode() + req.body
        else:
            signed = req.body
        expected = hmac.new(sig.key(), signed, getattr(hashlib, sig.algorithm)).digest()
        for candidate in header.split(",")[:MAX_SIGNATURES]:
            received = _decode_signature(candidate.strip(), sig)
            if received is not None and hmac.compare_digest(received, expected):
                return
        raise WebhookUnauthorized(f"{sig.header} does not match")

    def _events(self, req: WebhookRequest) -> list[_Doc]:
        inbound = self.config.inbound
        if req.method != inbound.method:
            raise WebhookMalformed(f"expected a {inbound.method} webhook, got {req.method}")
        if inbound.encoding == "query":
            return [_Doc(_multi(req.query), form=True)]
        if inbound.encoding == "form":
            return [_Doc(_multi(req.form()), form=True)]
        data = _loads(req.body)
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
        return [_Doc(item, form=False) for item in items]

    def parse(self, req: WebhookRequest) -> list[InboundEvent]:
        events: list[InboundEvent] = []
        for doc in self._events(req):
            events.extend(self._parse_one(doc))
        return events

    def _parse_one(self, doc: _Doc) -> list[InboundEvent]:
        inbound = self.config.inbound
        report = inbound.report
        if report is not None and _matches(doc, report.when or Match(path=report.status)):
            return self._report(doc, report)
        if inbound.when is not None and not _matches(doc, inbound.when):
            return []  # an event type we do not act on
        return [self._message(doc)]

    def _report(self, doc: _Doc, report: ReportConfig) -> list[InboundEvent]:
        carrier_id = _scalar(doc.one(report.id), f"report id {report.id!r}", required=True)
        status = _scalar(doc.one(report.status), f"report status {report.status!r}",
                         required=True)
        assert carrier_id is not None and status is not None
        states = {k.lower(): v for k, v in report.states.items()}
        state = states.get(status.strip().lower())
        if state is None:
            return []  # queued, sending, ...: no news
        error = None
        if report.error:
            error = _scalar(doc.one(report.error), "report error", required=False)
        if report.error_message:
            text = _scalar(doc.one(report.error_message), "report error message",
                           required=False)
            if text:
                error = f"{error}: {text}" if error else text
        return [DeliveryReport(carrier_id[:200], State(state), carrier_status=status[:100],
                               error=error[:500] if error else None)]

    def _message(self, doc: _Doc) -> InboundMessage:
        f = self.config.inbound.fields
        region = self.config.default_region
        numbers = []
        for what, path in (("from", f.from_), ("to", f.to)):
            raw = _scalar(doc.one(path), f"{what} number {path!r}", required=True)
            try:
                numbers.append(from_carrier(raw or "", region))
            except InvalidNumber as exc:
                raise WebhookMalformed(f"{what} number: {exc}") from None
        text = ""
        if f.text:
            text = _scalar(doc.one(f.text), f"text {f.text!r}", required=False) or ""
        if f.id:
            carrier_id = _scalar(doc.one(f.id), f"message id {f.id!r}", required=True) or ""
        else:
            carrier_id = f"{self.name}-in-{uuid.uuid4().hex}"
        return InboundMessage(carrier_id[:200], numbers[0], numbers[1], text,
                              tuple(self._media(doc)))

    def _media(self, doc: _Doc) -> list[MediaRef]:
        f = self.config.inbound.fields
        media: list[MediaRef] = []
        if f.media_prefix:
            for index in range(f.media_start, f.media_start + MAX_MEDIA):
                value = doc.one(f"{f.media_prefix}{index}")
                if value is _MISSING:
                    break
                ctype = None
                if f.media_type_prefix:
                    ctype = _scalar(doc.one(f"{f.media_type_prefix}{index}"), "media type",
                                    required=False)
                media.append(MediaRef(_media_url(value), ctype))
            return media
        if not f.media:
            return media
        items = doc.many(f.media)
        if f.media_separator and all(isinstance(i, str) for i in items):
            items = [part for i in items for part in i.split(f.media_separator) if part.strip()]
        for item in items[:MAX_MEDIA]:
            if isinstance(item, dict):
                url = _media_url(_lookup(item, f.media_url))
                ctype = None
                if f.media_type:
                    ctype = _scalar(_lookup(item, f.media_type), "media type", required=False)
                media.append(MediaRef(url, ctype))
            else:
                media.append(MediaRef(_media_url(item)))
        return media

    def answer(self, events: Sequence[InboundEvent]) -> WebhookAnswer:
        inbound = self.config.inbound
        return WebhookAnswer(200, inbound.reply_body, inbound.reply_content_type)


# --- helpers ---------------------------------------------------------------------------------


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _multi(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return out


def _loads(raw: bytes) -> Any:
    """Parsed JSON, or None for anything that is not (including absurdly deep nesting)."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


def _decode_signature(value: str, sig: SignatureConfig) -> bytes | None:
    if sig.prefix:
        if not value.lower().startswith(sig.prefix.lower()):
            return None
        value = value[len(sig.prefix):]
    if not value or len(value) > 1024:
        return None
    try:
        if sig.encoding == "hex":
            return bytes.fromhex(value)
        value = value.replace("-", "+").replace("_", "/")
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (ValueError, binascii.Error):
        return None
