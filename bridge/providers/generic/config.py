"""The ``generic`` carrier's configuration: what the operator writes in the config file.

The reference with a worked example is ``config/generic.example.toml`` (loaded by the tests).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from bridge.providers.base import ProviderConfig, basic_auth, bearer_auth
from bridge.providers.generic.paths import PLACEHOLDER, set_path
from bridge.providers.generic.signature import decode_key
from bridge.secrets import Secret, reveal


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


def status_in(status: int, ranges: StatusSet) -> bool:
    return any(lo <= status <= hi for lo, hi in ranges)


class Match(_Model):
    """A condition on one field of a payload: present (and, with ``values``, one of them)."""

    path: FieldPath
    values: TextList | None = None
    not_values: list[Text] = []


# --- send ------------------------------------------------------------------------------------


class Outgoing:
    """One send request being built: what an ``auth`` model adds its credentials to."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self.pairs = pairs  # body (or query) fields, in order
        self.headers: dict[str, str] = {}
        self.query: list[tuple[str, str]] = []  # always in the URL, whatever the encoding


class NoAuth(_Model):
    type: Literal["none"]

    def apply(self, request: Outgoing) -> None:
        pass


class BasicAuth(_Model):
    type: Literal["basic"]
    username: str = Field(min_length=1)
    password: Secret

    def apply(self, request: Outgoing) -> None:
        request.headers.update(basic_auth(self.username, reveal(self.password)))


class BearerAuth(_Model):
    type: Literal["bearer"]
    token: Secret

    def apply(self, request: Outgoing) -> None:
        request.headers.update(bearer_auth(reveal(self.token)))


class HeaderAuth(_Model):
    type: Literal["header"]
    header: HeaderName
    value: Secret

    def apply(self, request: Outgoing) -> None:
        request.headers[self.header] = reveal(self.value)


class QueryAuth(_Model):
    type: Literal["query"]
    params: dict[str, Secret] = Field(min_length=1)

    def apply(self, request: Outgoing) -> None:
        request.query.extend((k, reveal(v)) for k, v in self.params.items())


class FieldsAuth(_Model):
    type: Literal["fields"]
    fields: dict[str, Secret] = Field(min_length=1)

    def apply(self, request: Outgoing) -> None:
        request.pairs.extend((k, reveal(v)) for k, v in self.fields.items())


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
        if self.status is not None and not status_in(status, self.status):
            return False
        return self.code is None or (code is not None and code in self.code)


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
        for name in PLACEHOLDER.findall(self.url):
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
                    set_path(trial, name, "x")
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
            decode_key(reveal(self.secret), self.secret_encoding)
        except ValueError:
            raise ValueError(f"the signature secret is not valid {self.secret_encoding}") from None
        return self

    def key(self) -> bytes:
        return decode_key(reveal(self.secret), self.secret_encoding)


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
