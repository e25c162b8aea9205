"""SIP MESSAGE bodies -> text, and SIP URIs -> their parts. Pure functions.

Phones send ``text/plain`` (any charset), ``message/cpim`` (RFC 3862, used by RCS-style
clients), or ``multipart/mixed`` with a text part. Pictures come either inside the body (a
``multipart/mixed`` part, base64 or binary, or an ``image/*`` body) or as an RCS file-transfer
body (``application/vnd.gsma.rcs-ft-http+xml``, see ``bridge.fthttp``) naming a URL.
Whether an attachment may be sent (type, size) is policy, decided by the core, not here.
Anything we cannot read is a ``BodyError`` whose message is shown to the sender.

Phones also send things that are not texts: delivery and display notifications
(``message/imdn+xml``, RFC 5438, bare or inside CPIM, often deflate-compressed by Linphone)
and typing indicators (``application/im-iscomposing+xml``, RFC 3994). Those raise
``NotAText``: the caller consumes them quietly (never an SMS, never a notice, so no peer can
start a loop of notices and notifications).
"""

from __future__ import annotations

import codecs
import email.parser
import email.policy
import zlib
from dataclasses import dataclass

from bridge import fthttp
from bridge.model import Attachment, Content, ImdnRequest, MediaRef, is_valid_text
from bridge.uris import host_of, uri_of, user_of

__all__ = ["Attachment", "BodyError", "Content", "NotAText", "Parsed", "host_of",
           "parse_body", "uri_of", "user_of"]


class BodyError(ValueError):
    """A body we cannot turn into a text. The message is meant for the sender."""


class NotAText(Exception):
    """A notification or typing indicator: nothing to send, nobody to tell."""


@dataclass(frozen=True, slots=True)
class Parsed:
    content: Content
    imdn: ImdnRequest | None = None


NOTIFICATION_TYPES = frozenset({"message/imdn+xml", "application/im-iscomposing+xml"})
# A compressed part may not unpack beyond this (a deflate bomb is refused, not expanded).
MAX_INFLATED_BYTES = 256 * 1024


# Body types taken as a bare attachment when they are the whole MESSAGE body.
_BARE_MEDIA = ("image/", "video/", "audio/")
# Parts that only describe how to lay out an MMS: nothing to forward.
_LAYOUT_TYPES = frozenset({"application/smil"})


def _params(content_type: str) -> tuple[str, dict[str, str]]:
    main, *rest = content_type.split(";")
    params = {}
    for item in rest:
        if "=" in item:
            key, value = item.split("=", 1)
            params[key.strip().lower()] = value.strip().strip('"')
    return main.strip().lower(), params


def decode_text(raw: bytes, charset: str | None) -> str:
    name = (charset or "utf-8").lower()
    try:
        codecs.lookup(name)
    except LookupError:
        raise BodyError(f"unknown character set {charset!r}") from None
    try:
        text = raw.decode(name)
    except (UnicodeDecodeError, ValueError):
        raise BodyError(f"the text is not valid {name}") from None
    if "\0" in text:
        raise BodyError("the text contains a NUL character")
    if not is_valid_text(text):  # e.g. a surrogate written in UTF-16 or "utf-8-sig" tricks
        raise BodyError(f"the text is not valid {name}")
    return text


def parse_body(content_type: str, body: bytes) -> Parsed:
    """A MESSAGE body as the text (and files) to send. Raises ``BodyError`` (tell the
    sender) or ``NotAText`` (consume quietly)."""
    parsed = _parse(content_type, body, depth=0)
    if parsed.content.empty:
        raise BodyError("the message is empty")
    return parsed


def _parse(content_type: str, body: bytes, depth: int) -> Parsed:
    kind, params = _params(content_type or "text/plain")
    if kind in NOTIFICATION_TYPES:
        raise NotAText(kind)
    if kind == "message/cpim":
        if depth:
            raise BodyError("message/cpim inside message/cpim is not supported")
        return _parse_cpim(body)
    return Parsed(_parse_content(content_type, kind, params, body))


def _parse_content(content_type: str, kind: str, params: dict[str, str],
                   body: bytes) -> Content:
    if kind == "text/plain":
        return Content(decode_text(body, params.get("charset")))
    if kind.startswith("multipart/"):
        return _parse_multipart(content_type, body)
    if kind == fthttp.CONTENT_TYPE:
        return _parse_file_transfer(body)
    if kind.startswith(_BARE_MEDIA):
        if not body:
            raise BodyError("the message is empty")
        return Content("", attachments=(Attachment(kind, body, _name(params.get("name"))),))
    raise BodyError(f"messages of type {kind} cannot be sent as SMS")


def _parse_file_transfer(body: bytes) -> Content:
    try:
        files = fthttp.parse(body)
    except fthttp.FileTransferError as exc:
        raise BodyError(str(exc)) from None
    return Content(
        "",
        media=tuple(MediaRef(f.url, f.content_type, f.size) for f in files),
        names=tuple(f.name or "" for f in files),
    )


def _parse_cpim(body: bytes) -> Parsed:
    # In SIP, a message/cpim body (RFC 3862) is: message headers (From, To, DateTime, NS,
    # imdn.*), a blank line, the encapsulated MIME headers (Content-Type, Content-Encoding),
    # a blank line, the content.
    sections = body.replace(b"\r\n", b"\n").split(b"\n\n", 2)
    if len(sections) < 3:
        raise BodyError("broken message/cpim body")
    message_head, mime_head, content = sections
    mime = _cpim_headers(mime_head)
    inner_type = mime.get("content-type", "text/plain")
    encoding = mime.get("content-encoding", "").lower()
    if inner_type.lower().split(";", 1)[0].strip() in NOTIFICATION_TYPES:
        raise NotAText(inner_type)
    if encoding in ("deflate", "gzip"):
        content = _inflate(content)
    elif encoding not in ("", "identity"):
        raise BodyError(f"content encoding {encoding!r} inside message/cpim is not supported")
    length = mime.get("content-length", "")
    if length.isascii() and length.isdigit():
        content = content[: int(length)]
    return Parsed(_parse(inner_type, content, depth=1).content,
                  _imdn_request(_cpim_headers(message_head)))


def _cpim_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(b"\n"):
        name, sep, value = line.partition(b":")
        if sep:
            key = name.strip().decode("ascii", "replace").lower()
            headers.setdefault(key, value.strip().decode("utf-8", "replace"))
    return headers


def _imdn_request(headers: dict[str, str]) -> ImdnRequest | None:
    """RFC 5438 §6: ``imdn.Message-ID`` and ``imdn.Disposition-Notification``. The prefix is
    whatever the NS header names for urn:ietf:params:imdn; every client we know uses imdn."""
    prefix = "imdn"
    for key, value in headers.items():
        if key == "ns" and "urn:ietf:params:imdn" in value:
            prefix = value.split("<", 1)[0].strip().lower() or prefix
    message_id = headers.get(f"{prefix}.message-id", "").strip()
    wanted = {w.strip().lower() for w in
              headers.get(f"{prefix}.disposition-notification", "").split(",")}
    positive, negative = "positive-delivery" in wanted, "negative-delivery" in wanted
    if not message_id or not (positive or negative):
        return None
    try:
        return ImdnRequest(message_id, positive, negative)
    except ValueError:
        return None  # an unusable id: the text still goes out, without ticks


def _inflate(data: bytes) -> bytes:
    for wbits in (zlib.MAX_WBITS | 32, -zlib.MAX_WBITS):  # zlib or gzip header, then raw
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(data, MAX_INFLATED_BYTES + 1)
        except zlib.error:
            continue
        if len(out) > MAX_INFLATED_BYTES:
            raise BodyError("the compressed message is too large")
        return out
    raise BodyError("broken compressed message/cpim content")


def _parse_multipart(content_type: str, body: bytes) -> Content:
    header = f"Content-Type: {content_type}\r\n\r\n".encode()
    try:
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(header + body)
    except Exception:  # the email package raises many kinds on broken input
        raise BodyError("broken multipart body") from None
    if not msg.is_multipart() or msg.defects:
        raise BodyError("broken multipart body")
    content = Content("")
    for part in msg.walk():
        kind = part.get_content_type()
        if kind in NOTIFICATION_TYPES:
            raise NotAText(kind)
        if part.is_multipart():
            continue
        # decode=True undoes a base64 or quoted-printable Content-Transfer-Encoding
        payload = part.get_payload(decode=True) or b""
        if kind == "text/plain":
            content += Content(decode_text(payload, part.get_content_charset()))
        elif kind == "message/cpim":
            content += _parse_cpim(payload).content
        elif kind == fthttp.CONTENT_TYPE:
            content += _parse_file_transfer(payload)
        elif kind in _LAYOUT_TYPES:
            continue
        elif payload:
            name = part.get_filename() or part.get_param("name") or ""
            content += Content("", attachments=(Attachment(_type(kind), payload,
                                                           _name(str(name))),))
    return content


def _name(value: str | None) -> str:
    """A file name from the wire as valid text (bytes that are not become '_')."""
    name = (value or "").encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return "".join("_" if ch == "\ufffd" or ch < " " else ch for ch in name)[:200]


def _type(value: str) -> str:
    return value if value.isascii() and value.isprintable() else "application/octet-stream"
