"""The interface every carrier adapter implements, and the helpers they share.

A carrier adapter turns our ``OutboundSms`` into its carrier's HTTP call, and its carrier's
webhooks into our ``InboundEvent``s. It knows nothing about SIP, routing or storage.

To add a carrier: write one module with a ``Config`` model (its ``type`` literal is the name
used in the config file) and a ``Provider`` subclass, then add one line to ``registry.py``.
"""

from __future__ import annotations

import base64
import functools
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, TypeVar
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp
from aiohttp.payload import BytesPayload
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from bridge.model import InboundEvent, MediaRef, OutboundSms, SendFailed, SendResult, Sent
from bridge.numbers import InvalidNumber, from_carrier, segments, split_text
from bridge.redact import redact
from bridge.secrets import Secret, reveal, secret_values

T = TypeVar("T")


class ProviderConfig(BaseModel):
    """Fields every carrier has. Each adapter subclasses this with its own credentials."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    type: str
    # Where the carrier's API lives. Only changed to point at a regional endpoint, or at a
    # local server speaking the carrier's wire format (the tests do).
    api_base: HttpUrl | None = None
    timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    # A random string that must appear as the last path element of the webhook URL. Required
    # for carriers that do not sign their webhooks; optional defence in depth for the others.
    webhook_token: Secret | None = None
    default_region: str = Field(default="US", pattern=r"^[A-Z]{2}$")


@dataclass(frozen=True)
class WebhookRequest:
    """A carrier's HTTP request to our webhook, free of any web framework types."""

    method: str
    url: str  # the public URL the carrier called, query string included
    headers: Mapping[str, str]  # case-insensitive
    query: Sequence[tuple[str, str]]
    body: bytes
    remote: str  # client address ("127.0.0.1")
    path_token: str | None = None
    received_at: float = field(default_factory=time.time)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()

    def form(self) -> list[tuple[str, str]]:
        """Parameters of a form POST, or of the query string for a GET webhook."""
        return list(self._form)

    @functools.cached_property
    def _form(self) -> tuple[tuple[str, str], ...]:
        # parsed once: verify() and parse() both read it
        if self.method == "GET":
            return tuple(self.query)
        try:
            text = self.body.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookMalformed("form body is not UTF-8") from None
        return tuple(parse_form(text))

    def form_dict(self) -> dict[str, str]:
        return dict(self.form())

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise WebhookMalformed("body is not valid JSON") from None
        except RecursionError:
            raise WebhookMalformed("JSON nested too deeply") from None


class WebhookRejected(Exception):
    """A webhook we refuse. The message is safe to log; the HTTP answer carries no detail."""

    status = 400


class WebhookUnauthorized(WebhookRejected):
    status = 403


class WebhookMalformed(WebhookRejected):
    status = 400


@dataclass(frozen=True)
class WebhookAnswer:
    """What we answer a carrier once its events are safely stored."""

    status: int = 200
    body: str = ""
    content_type: str = "text/plain"


def require(mapping: Mapping[str, Any], key: str, what: str = "field") -> Any:
    """A required field of a webhook payload, or a clean 400."""
    if not isinstance(mapping, Mapping) or key not in mapping or mapping[key] in (None, ""):
        raise WebhookMalformed(f"missing {what} {key!r}")
    return mapping[key]


def media_list(value: Any, type_keys: Sequence[str] = ("content_type",)) -> tuple[MediaRef, ...]:
    """A webhook's media: a JSON list of URLs, or of ``{"url": ..., <type key>: ...}``
    objects (the first of ``type_keys`` present gives the content type), or a clean 400."""
    if value in (None, ""):
        return ()
    if not isinstance(value, list):
        raise WebhookMalformed("'media' must be a list")
    refs = []
    for item in value:
        if isinstance(item, str) and item:
            refs.append(MediaRef(item))
        elif isinstance(item, Mapping):
            refs.append(media_object(item, "a media entry", type_keys))
        else:
            raise WebhookMalformed("a media entry must be a URL or an object with 'url'")
    return tuple(refs)


def media_object(item: Mapping[str, Any], what: str,
                 type_keys: Sequence[str] = ("content_type",),
                 size_key: str = "size") -> MediaRef:
    """One media object of a webhook (``url``, a content type, a size), or a clean 400."""
    url = item.get("url")
    if not isinstance(url, str) or not url:
        raise WebhookMalformed(f"{what} without a url")
    ctype = next((item[k] for k in type_keys if item.get(k)), None)
    size = item.get(size_key)
    return MediaRef(url, ctype if isinstance(ctype, str) else None,
                    size if isinstance(size, int) and not isinstance(size, bool) else None)


def text_field(mapping: Mapping[str, Any], key: str, what: str) -> str:
    """An optional text field of a webhook payload ("" when absent), or a clean 400."""
    text = mapping.get(key) or ""
    if not isinstance(text, str):
        raise WebhookMalformed(f"{what} is not a string")
    return text


def basic_auth(user: str, password: str) -> dict[str, str]:
    """An HTTP Basic ``Authorization`` header (RFC 7617, UTF-8)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def form_body(fields: Mapping[str, str] | Iterable[tuple[str, str]]) -> BytesPayload:
    """A form POST's body, byte for byte what aiohttp's FormData sends for the same fields
    (``urlencode`` in UTF-8, the same Content-Type), without FormData's per-request
    multipart writer: building it was a tenth of a phone -> SMS text's CPU."""
    pairs = fields.items() if isinstance(fields, Mapping) else fields
    body = "&".join(_form_quote(name) + "=" + _form_quote(value) for name, value in pairs)
    return BytesPayload(body.encode("ascii"), content_type=FORM_CONTENT_TYPE)


# quote_plus's rule as one table: the bytes it leaves alone, "+" for a space, %XX otherwise.
_FORM_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_FORM_QUOTED = {byte: "+" if byte == 0x20 else chr(byte) if byte in _FORM_SAFE else f"%{byte:02X}"
                for byte in range(256)}


def _form_quote(text: str) -> str:
    """``quote_plus(text)`` in UTF-8, a third of its time: its per-byte Python loop was most
    of encoding a carrier's form. Each UTF-8 byte is looked up as the Latin-1 character of
    the same value."""
    if not isinstance(text, str):  # a number: urlencode writes str() of it
        text = str(text)
    if text.isascii() and text.isalnum():
        return text
    return text.encode("utf-8").decode("latin-1").translate(_FORM_QUOTED)


def parse_form(text: str) -> list[tuple[str, str]]:
    """A form body's fields, exactly as ``parse_qsl(text, keep_blank_values=True)`` reads them
    (``&`` separates, a field without ``=`` has an empty value, ``+`` is a space, a
    percent-escape that is not UTF-8 becomes U+FFFD), in half its time: parse_qsl's
    per-field argument coercion was a fifteenth of an SMS -> phone text's CPU."""
    fields = []
    for pair in text.split("&"):
        if not pair:
            continue
        name, _, value = pair.partition("=")
        if "+" in name:
            name = name.replace("+", " ")
        if "%" in name:
            name = unquote(name, errors="replace")
        if "+" in value:
            value = value.replace("+", " ")
        if "%" in value:
            value = unquote(value, errors="replace")
        fields.append((name, value))
    return fields


def bearer_auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def json_object(value: object, what: str) -> Mapping[str, Any]:
    """A JSON object from a webhook payload, or a clean 400."""
    if not isinstance(value, Mapping):
        raise WebhookMalformed(f"{what} is not a JSON object")
    return value


def constant_time_equal(a: str | bytes, b: str | bytes) -> bool:
    # aiohttp decodes header bytes that are not UTF-8 as surrogate escapes: compare the
    # bytes that arrived instead of failing to encode them
    a_bytes = a.encode("utf-8", "surrogatepass") if isinstance(a, str) else a
    b_bytes = b.encode("utf-8", "surrogatepass") if isinstance(b, str) else b
    return hmac.compare_digest(a_bytes, b_bytes)


async def response_json(resp: aiohttp.ClientResponse) -> Any:
    """A carrier's answer as parsed JSON, or None when it is not JSON (an HTML error page)."""
    try:
        return await resp.json(content_type=None)
    except (ValueError, UnicodeDecodeError):
        return None


def first_error(payload: object) -> Mapping[str, Any] | None:
    """The first entry of a JSON:API ``{"errors": [{...}]}`` answer, if there is one."""
    errors = payload.get("errors") if isinstance(payload, Mapping) else None
    first = errors[0] if isinstance(errors, list) and errors else None
    return first if isinstance(first, Mapping) else None


def carrier_failure(status: int, headers: Mapping[str, str], carrier: str, message: str,
                    code: object = None) -> SendFailed:
    """The shared HTTP rule (``classify_http_failure``), reported with the carrier's own error
    code when it gave one ("Twilio error 21211: ..."), which opt-out codes are matched on."""
    failure = classify_http_failure(status, message or "no error message", headers)
    if code in (None, ""):
        return failure
    return SendFailed(f"{carrier} error {code}: {message}"[:500], retryable=failure.retryable,
                      retry_after=failure.retry_after, code=str(code))


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date; the dispatcher's own backoff applies


async def _guarded(call: Awaitable[SendResult]) -> SendResult:
    """An API call's result, with network trouble turned into a retryable ``SendFailed``."""
    try:
        return await call
    except TimeoutError:
        return SendFailed("timed out waiting for the carrier", retryable=True)
    except aiohttp.ClientError as exc:
        return SendFailed(f"cannot reach the carrier: {type(exc).__name__}", retryable=True)


def classify_http_failure(status: int, reason: str, headers: Mapping[str, str]) -> SendFailed:
    """The shared rule: 408, 425, 429 and 5xx are worth retrying; other 4xx are permanent."""
    retryable = status in (408, 425, 429) or status >= 500
    return SendFailed(
        reason=f"HTTP {status}: {reason}"[:500],
        retryable=retryable,
        retry_after=retry_after_seconds(headers.get("Retry-After")),
        code=str(status),
    )


# ``SendFailed.code`` values meaning "this carrier (configuration) cannot send MMS": the core
# then sends the text with links to the media instead.
MMS_UNSUPPORTED_CODES = frozenset({"mms-unsupported", "no_mms"})
MAX_REDIRECTS = 5


class MediaFetchError(Exception):
    """A media download that failed. ``retryable``: worth trying again later (network
    trouble, 5xx, 408, 429); a 403/404 from the carrier is not. Never carries credentials."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


class MediaTooLarge(Exception):
    """The media is larger than we accept; ``size`` is what we know of it (at least)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"{size} bytes")
        self.size = size


@dataclass(frozen=True, slots=True)
class Part:
    """One API call's worth of a message: a piece of its text and/or some of its media."""

    text: str
    media: tuple[MediaRef, ...] = ()


@dataclass(frozen=True, slots=True)
class TextLimit:
    """The most characters (code points) one API call may carry: ``gsm7`` for a text the GSM-7
    alphabet can encode, ``ucs2`` (the same when None) for one that needs UCS-2."""

    gsm7: int
    ucs2: int | None = None

    def of(self, text: str) -> int:
        if self.ucs2 is not None and segments(text).encoding == "UCS-2":
            return self.ucs2
        return self.gsm7


class Provider:
    """Base class of the carrier adapters.

    Sending, the multi-part rule: an adapter implements ``_send_part`` (one API call) and
    declares its limits as data (``text_limit``, ``max_media_per_part``); ``split`` cuts a
    message into ``Part``s and ``send_parts`` sends them in order. Parts that earlier attempts
    got accepted (``OutboundSms.accepted_parts``) are never sent again. The first refused part
    ends the attempt: if nothing went out that is the carrier's failure as it is; otherwise a
    ``SendFailed`` whose reason starts "part k of n refused:", whose ``retryable`` is the
    refused part's, and whose ``accepted_parts`` says which went out. All parts accepted is
    ``Sent`` with the first part's id (delivery reports are matched on it) and every id in
    ``parts``.
    """

    Config: ClassVar[type[ProviderConfig]] = ProviderConfig
    default_api_base: ClassVar[str] = ""
    # One sentence shown by check-config: how this carrier's webhooks are authenticated.
    webhook_auth: ClassVar[str] = "a secret token in the webhook URL path"
    # Carriers that document no webhook authentication must be given a webhook_token.
    requires_webhook_token: ClassVar[bool] = False
    # Whether webhook numbers may arrive as JSON integers rather than strings.
    numbers_may_be_integers: ClassVar[bool] = False
    # Whether the carrier can send from an alphanumeric sender ID at all.
    supports_sender_id: ClassVar[bool] = True
    # Carrier error codes (``SendFailed.code``) meaning the recipient opted out (STOP).
    opt_out_codes: ClassVar[frozenset[str]] = frozenset()
    # False for carriers (or adapters) that cannot send MMS: the core sends links instead.
    supports_mms: ClassVar[bool] = True
    # The carrier's length limit for one API call's text; None: the carrier splits it itself.
    text_limit: ClassVar[TextLimit | None] = None
    # The most media items one API call may carry; None: all of them in one call.
    max_media_per_part: ClassVar[int | None] = None
    # What the carrier accepts as a webhook request body.
    webhook_content_types: ClassVar[frozenset[str]] = frozenset(
        {"application/json", "application/x-www-form-urlencoded"}
    )

    def __init__(self, config: ProviderConfig, public_url: str = "http://127.0.0.1:8080") -> None:
        self.config = config
        self.name = config.name
        self.public_url = public_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP session this provider keeps for the life of the process."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds),
                headers={"User-Agent": "sip-sms-bridge"},
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(f"provider {self.name} is not started")
        return self._session

    @property
    def api_base(self) -> str:
        return str(self.config.api_base or self.default_api_base).rstrip("/")

    # --- the interface ----------------------------------------------------------------------

    async def send(self, msg: OutboundSms) -> SendResult:
        """Send one message. Never raises for carrier or network trouble: that is a
        ``SendFailed`` with ``retryable`` set. A carrier that echoes a credential back in an
        error message does not get it into our logs: the reason is redacted."""
        if msg.sender_id and not self.supports_sender_id:
            return SendFailed(f"{self.config.type} cannot send from an alphanumeric sender ID",
                              retryable=False)
        result = await _guarded(self._send(msg))
        if isinstance(result, SendFailed):
            reason = self.redact(result.reason)
            if reason != result.reason:
                result = replace(result, reason=reason)
        return result

    def redact(self, text: str) -> str:
        # cut: adapters shorten a carrier's message, possibly in the middle of a secret
        return redact(text, secret_values(self.config), cut=True)

    async def _send(self, msg: OutboundSms) -> SendResult:
        return await self.send_parts(msg, self.split(msg))

    def max_chars(self, text: str) -> int | None:
        """The most characters of ``text`` one API call may carry (None: no limit)."""
        return self.text_limit.of(text) if self.text_limit is not None else None

    def split(self, msg: OutboundSms) -> list[Part]:
        """The message in the carrier's parts: the text cut at ``max_chars``, the media in
        groups of ``max_media_per_part``, the first group riding with the first text part."""
        limit = self.max_chars(msg.text)
        texts = split_text(msg.text, limit) if limit and len(msg.text) > limit else [msg.text]
        size = self.max_media_per_part or max(1, len(msg.media))
        groups = [msg.media[i:i + size] for i in range(0, len(msg.media), size)]
        parts = [Part(text, groups[0] if i == 0 and groups else ())
                 for i, text in enumerate(texts)]
        parts.extend(Part("", group) for group in groups[1:])
        return parts

    async def _send_part(self, msg: OutboundSms, part: Part, index: int,
                         total: int) -> SendResult:
        """One API call carrying ``part`` (the ``index``-th of ``total``, from 0)."""
        raise NotImplementedError

    async def send_parts(
        self, msg: OutboundSms, parts: Sequence[T],
        send_one: Callable[[T, int, int], Awaitable[SendResult]] | None = None,
    ) -> SendResult:
        """Send the parts not yet accepted, in order (the rule is in the class docstring).
        ``send_one(part, index, total)`` is one API call, ``_send_part`` unless given (for
        adapters whose parts are their own request shapes, e.g. an SMS then an MMS call)."""
        if send_one is None:
            def send_one(part: Any, index: int, total: int) -> Awaitable[SendResult]:
                return self._send_part(msg, part, index, total)
        accepted = [p for p in msg.accepted_parts[:len(parts)] if p]
        result: SendResult | None = None
        for index in range(len(accepted), len(parts)):
            result = await _guarded(send_one(parts[index], index, len(parts)))
            if isinstance(result, SendFailed):
                if not accepted:
                    return result
                return replace(result, accepted_parts=tuple(accepted),
                               reason=f"part {index + 1} of {len(parts)} refused "
                                      f"({len(accepted)} sent): {result.reason}"[:500])
            accepted.append(result.carrier_id)
        if len(parts) == 1:
            return result if isinstance(result, Sent) else Sent(accepted[0])
        return Sent(accepted[0], detail=f"{len(parts)} parts", parts=tuple(accepted))

    async def fetch_media(self, url: str, *, max_bytes: int | None = None) -> tuple[bytes, str]:
        """Download one media item of an inbound MMS: its bytes and content type (possibly
        ""). Carriers whose media URLs need credentials override this to add them.
        Raises ``MediaFetchError`` or ``MediaTooLarge``."""
        return await self.download(url, max_bytes=max_bytes)

    async def download(
        self, url: str, *, headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
    ) -> tuple[bytes, str]:
        """GET ``url`` with this provider's session. Redirects are followed by hand so that
        ``headers`` (credentials) are dropped when a redirect leaves the URL's host (carrier
        media often redirects to a signed storage URL). Reads at most ``max_bytes``."""
        if self._session is None:  # an adapter that needs no session of its own (sandbox)
            timeout = aiohttp.ClientTimeout(total=self.config.timeout_seconds)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                return await self._download(session, url, headers, max_bytes)
        return await self._download(self._session, url, headers, max_bytes)

    async def _download(
        self, session: aiohttp.ClientSession, url: str, headers: Mapping[str, str] | None,
        max_bytes: int | None,
    ) -> tuple[bytes, str]:
        if urlsplit(url).scheme not in ("http", "https"):
            raise MediaFetchError("media URL is not http(s)", retryable=False)
        origin = urlsplit(url).netloc
        sent = dict(headers or {})
        try:
            for _ in range(MAX_REDIRECTS + 1):
                async with session.get(url, headers=sent, allow_redirects=False) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        url = urljoin(url, resp.headers["Location"])
                        if urlsplit(url).scheme not in ("http", "https"):
                            raise MediaFetchError("media redirected to a non-http(s) URL",
                                                  retryable=False)
                        if urlsplit(url).netloc != origin:
                            sent = {}
                        continue
                    if resp.status != 200:
                        retryable = resp.status in (408, 425, 429) or resp.status >= 500
                        raise MediaFetchError(f"media download answered HTTP {resp.status}",
                                              retryable=retryable)
                    if max_bytes is not None and (resp.content_length or 0) > max_bytes:
                        raise MediaTooLarge(resp.content_length or 0)
                    chunks, size = [], 0
                    async for chunk in resp.content.iter_chunked(64 * 1024):
                        size += len(chunk)
                        if max_bytes is not None and size > max_bytes:
                            raise MediaTooLarge(size)
                        chunks.append(chunk)
                    ctype = resp.headers.get("Content-Type", "")
                    return b"".join(chunks), ctype.split(";", 1)[0].strip().lower()
        except TimeoutError:
            raise MediaFetchError("timed out downloading media", retryable=True) from None
        except aiohttp.ClientError as exc:
            raise MediaFetchError(f"cannot download media: {type(exc).__name__}",
                                  retryable=True) from None
        raise MediaFetchError("too many redirects downloading media", retryable=False)

    def verify(self, req: WebhookRequest) -> None:
        """Raise ``WebhookUnauthorized`` unless the request really comes from the carrier.

        The base class checks the URL path token when one is configured; adapters with a
        signature scheme call ``super().verify(req)`` and then check the signature.
        """
        token = self.config.webhook_token
        if token is not None or self.requires_webhook_token:
            expected = reveal(token)
            if not expected or not req.path_token:
                raise WebhookUnauthorized("webhook URL token missing")
            if not constant_time_equal(req.path_token, expected):
                raise WebhookUnauthorized("webhook URL token does not match")

    def inbound_number(self, raw: object, what: str = "number") -> str:
        """A number from a webhook, normalised to E.164 (short codes kept as digits), or a
        clean 400. Numbers come with or without '+'; as bare JSON integers only from carriers
        whose documentation shows them that way (``numbers_may_be_integers``)."""
        if self.numbers_may_be_integers and isinstance(raw, int) and not isinstance(raw, bool):
            raw = str(raw)
        if not isinstance(raw, str) or not raw:
            raise WebhookMalformed(f"missing {what!r} number")
        try:
            return from_carrier(raw, self.config.default_region)
        except InvalidNumber as exc:
            raise WebhookMalformed(str(exc)) from None

    def parse(self, req: WebhookRequest) -> list[InboundEvent]:
        """Turn a verified webhook into events. Raise ``WebhookMalformed`` on a bad payload.
        Events the bridge does not act on (e.g. a carrier's "queued" status) may be dropped."""
        raise NotImplementedError

    def answer(self, events: Sequence[InboundEvent]) -> WebhookAnswer:
        """The HTTP answer once the events are stored."""
        return WebhookAnswer()

    def webhook_path(self, *, masked: bool = False) -> str:
        path = f"/webhooks/{self.name}"
        if self.config.webhook_token is not None:
            path += "/<webhook_token>" if masked else "/" + reveal(self.config.webhook_token)
        return path

    def webhook_url(self, *, masked: bool = False) -> str:
        """The URL to paste into the carrier's portal (also sent as a status callback)."""
        return self.public_url + self.webhook_path(masked=masked)
