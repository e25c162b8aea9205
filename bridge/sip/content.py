"""SIP MESSAGE bodies -> text, and SIP URIs -> their parts. Pure functions.

Phones send ``text/plain`` (any charset), ``message/cpim`` (RFC 3862, used by RCS-style
clients), or ``multipart/mixed`` with a text part. Pictures come either inside the body (a
``multipart/mixed`` part, base64 or binary, or an ``image/*`` body) or as an RCS file-transfer
body (``application/vnd.gsma.rcs-ft-http+xml``, see ``bridge.fthttp``) naming a URL.
Whether an attachment may be sent (type, size) is policy, decided by the core, not here.
Anything we cannot read is a ``BodyError`` whose message is shown to the sender.
"""

from __future__ import annotations

import codecs
import email.parser
import email.policy
import re
from dataclasses import dataclass
from urllib.parse import unquote

from bridge import fthttp
from bridge.model import MediaRef


class BodyError(ValueError):
    """A body we cannot turn into a text. The message is meant for the sender."""


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file carried in the MESSAGE body itself."""

    content_type: str
    data: bytes
    filename: str = ""


@dataclass(frozen=True, slots=True)
class Content:
    text: str
    media: tuple[MediaRef, ...] = ()  # files offered by URL (RCS file transfer)
    attachments: tuple[Attachment, ...] = ()  # files in the body
    names: tuple[str, ...] = ()  # file names offered with ``media``, in the same order

    def __add__(self, other: Content) -> Content:
        text = "\n".join(t for t in (self.text, other.text) if t)
        return Content(text, self.media + other.media, self.attachments + other.attachments,
                       self.names + other.names)


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
        return raw.decode(name)
    except UnicodeDecodeError:
        raise BodyError(f"the text is not valid {name}") from None


def parse_body(content_type: str, body: bytes) -> Content:
    kind, params = _params(content_type or "text/plain")
    if kind == "text/plain":
        return Content(decode_text(body, params.get("charset")))
    if kind == "message/cpim":
        return _parse_cpim(body)
    if kind.startswith("multipart/"):
        return _parse_multipart(content_type, body)
    if kind == fthttp.CONTENT_TYPE:
        return _parse_file_transfer(body)
    if kind.startswith(_BARE_MEDIA):
        if not body:
            raise BodyError("the message is empty")
        return Content("", attachments=(Attachment(kind, body, params.get("name", "")),))
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


def _parse_cpim(body: bytes) -> Content:
    # In SIP, a message/cpim body (RFC 3862) is: message headers (From, To, DateTime, ...),
    # a blank line, the encapsulated MIME headers (Content-Type), a blank line, the content.
    sections = body.replace(b"\r\n", b"\n").split(b"\n\n", 2)
    if len(sections) < 3:
        raise BodyError("broken message/cpim body")
    _, mime_head, content = sections
    inner_type = "text/plain"
    for line in mime_head.split(b"\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-type":
            inner_type = value.strip().decode("ascii", "replace")
    if inner_type.lower().startswith(("message/cpim", "multipart/")):
        raise BodyError(f"{inner_type} inside message/cpim is not supported")
    return parse_body(inner_type, content)


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
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        # decode=True undoes a base64 or quoted-printable Content-Transfer-Encoding
        payload = part.get_payload(decode=True) or b""
        if kind == "text/plain":
            content += Content(decode_text(payload, part.get_content_charset()))
        elif kind == "message/cpim":
            content += _parse_cpim(payload)
        elif kind == fthttp.CONTENT_TYPE:
            content += _parse_file_transfer(payload)
        elif kind in _LAYOUT_TYPES:
            continue
        elif payload:
            name = part.get_filename() or part.get_param("name") or ""
            content += Content("", attachments=(Attachment(kind, payload, str(name)),))
    if not (content.text or content.media or content.attachments):
        raise BodyError("the message is empty")
    return content


# --- URIs --------------------------------------------------------------------------------

_URI_RE = re.compile(r"<([^>]*)>")


def uri_of(name_addr: str) -> str:
    """'"Bob" <sip:1001@pbx;tag=x>' -> 'sip:1001@pbx'."""
    match = _URI_RE.search(name_addr)
    uri = match.group(1) if match else name_addr.strip().split(";", 1)[0]
    return uri.strip()


def user_of(name_addr: str) -> str:
    """The user part of a SIP or tel URI: '<sip:+1555@pbx>' -> '+1555'."""
    uri = uri_of(name_addr)
    scheme, _, rest = uri.partition(":")
    if scheme.lower() == "tel":
        return rest.split(";", 1)[0]
    if "@" not in rest:
        return ""
    user = rest.rsplit("@", 1)[0].split(";", 1)[0]
    return unquote(user)


def host_of(name_addr: str) -> str:
    """The host of a SIP URI: '"Bob" <sip:1001@pbx.example.com:5060>' -> 'pbx.example.com'."""
    rest = uri_of(name_addr).removeprefix("sips:").removeprefix("sip:").split(";", 1)[0]
    rest = rest.rsplit("@", 1)[-1]
    if rest.startswith("["):
        return rest[1 : rest.find("]")]
    return rest.split(":", 1)[0]


def raw_body(whole_msg: str, fallback_type: str) -> tuple[str, bytes]:
    """The Content-Type (with its parameters) and the body bytes of a raw SIP message.

    pjsip parses a multipart body into its parts: pjsua2 then hands the callback an empty
    body and the content type without its boundary, so those are read from the raw message.
    ``whole_msg`` is SWIG's surrogateescape decoding, which gives back the bytes as sent.
    """
    head, sep, body = whole_msg.partition("\r\n\r\n")
    if not sep:
        return fallback_type, b""
    ctype = header_value(head, "Content-Type") or header_value(head, "c") or fallback_type
    return ctype, body.encode("utf-8", "surrogateescape")


def header_value(whole_msg: str, name: str) -> str:
    """First value of a header in a raw SIP message (compact forms not handled)."""
    prefix = name.lower() + ":"
    for line in whole_msg.split("\r\n"):
        if not line:
            break
        if line.lower().startswith(prefix):
            return line[len(prefix):].strip()
    return ""
