"""SIP MESSAGE bodies -> text, and SIP URIs -> their parts. Pure functions.

Phones send ``text/plain`` (any charset), ``message/cpim`` (RFC 3862, used by RCS-style
clients), or ``multipart/mixed`` with a text part. Anything we cannot read is a
``BodyError`` whose message is shown to the sender.
"""

from __future__ import annotations

import codecs
import email.parser
import email.policy
import re
from dataclasses import dataclass
from urllib.parse import unquote

from bridge.model import MediaRef


class BodyError(ValueError):
    """A body we cannot turn into a text. The message is meant for the sender."""


@dataclass(frozen=True, slots=True)
class Content:
    text: str
    media: tuple[MediaRef, ...] = ()


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
    raise BodyError(f"messages of type {kind} cannot be sent as SMS")


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
    texts: list[str] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        payload = part.get_payload(decode=True) or b""
        if kind == "text/plain":
            texts.append(decode_text(payload, part.get_content_charset()))
        elif kind == "message/cpim":
            texts.append(_parse_cpim(payload).text)
        else:
            raise BodyError(f"attachments of type {kind} cannot be sent yet")
    if not texts:
        raise BodyError("the message has no text")
    return Content("\n".join(texts))


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


def header_value(whole_msg: str, name: str) -> str:
    """First value of a header in a raw SIP message (compact forms not handled)."""
    prefix = name.lower() + ":"
    for line in whole_msg.split("\r\n"):
        if not line:
            break
        if line.lower().startswith(prefix):
            return line[len(prefix):].strip()
    return ""
