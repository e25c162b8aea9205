"""A received MESSAGE's raw bytes -> a checked ``SipText``: the one place where SIP bytes
become text.

Everything here is hostile input: any byte in any header, a Content-Length that lies, a body
that pjsip cut. The rules:

- Headers are read from the raw message (compact forms included, RFC 3261 §7.3.3); a value
  that is not valid UTF-8 is shown with U+FFFD where it is only shown (Call-ID) and makes the
  field unusable where it is acted on (the From user is then unknown, the To user invalid).
- ``Content-Length`` is the truth (RFC 3261 §18.3): extra bytes in a datagram are cut off; a
  body shorter than it says was cut on the way (or by pjsip, which reads at most
  ``PJSIP_MAX_PKT_LEN`` = 4,000 bytes of a datagram, on the path where pjsua receives) and is
  refused with a notice, never passed on truncated.
- The body is decoded by ``content.parse_body``; notifications and typing indicators come
  back as None (nothing to send, nobody to tell).
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.model import SipText, is_valid_text
from bridge.sip.content import BodyError, NotAText, parse_body
from bridge.uris import host_of, user_of

# RFC 3261 §7.3.3 compact header names
COMPACT = {"i": "call-id", "f": "from", "t": "to", "c": "content-type",
           "l": "content-length", "v": "via", "e": "content-encoding", "m": "contact"}
MAX_SHOWN = 200  # characters of a Call-ID or user kept for logs and history


@dataclass(frozen=True, slots=True)
class RawMessage:
    start_line: str
    headers: dict[str, str]  # lower-case full names -> first value, surrogate-escaped text
    body: bytes
    vias: tuple[str, ...] = ()  # every Via value, in order (a response repeats them)

    def header(self, name: str) -> str:
        return self.headers.get(name, "")

    def all(self, name: str) -> tuple[str, ...]:
        assert name == "via", "only Via is kept whole"
        return self.vias


def split_message(raw: bytes) -> RawMessage:
    """Start line, headers (unfolded) and body of a raw SIP message."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, body = raw.partition(sep)
        if found:
            break
    else:
        head, body = raw, b""
    lines = head.decode("utf-8", "surrogateescape").replace("\r\n", "\n").split("\n")
    unfolded: list[str] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += " " + line.strip()
        else:
            unfolded.append(line)
    headers: dict[str, str] = {}
    vias: list[str] = []
    for line in unfolded:
        name, sep_, value = line.partition(":")
        if not sep_:
            continue
        key = name.strip().lower()
        key = COMPACT.get(key, key)
        headers.setdefault(key, value.strip())
        if key == "via":  # a header line may carry several, comma-separated
            vias.extend(v.strip() for v in value.split(",") if v.strip())
    return RawMessage(lines[0] if lines else "", headers, body, tuple(vias))


def shown(value: str, limit: int = MAX_SHOWN) -> str:
    """Wire text fit to show in a log or a message's history: valid UTF-8 (bad bytes become
    U+FFFD), no control characters, bounded."""
    text = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else "\ufffd" for c in text)
    return text[:limit]


def usable(value: str) -> str:
    """A URI user we may act on (route, answer): valid, printable, no spaces; else ''."""
    if not value or len(value) > 64 or not is_valid_text(value):
        return ""
    return value if value.isprintable() and " " not in value else ""


def body_of(message: RawMessage) -> tuple[bytes, str | None]:
    """The body as Content-Length defines it, or the refusal for a body pjsip cut."""
    body = message.body
    declared = message.header("content-length")
    if not (declared.isascii() and declared.isdigit()):
        return body, None
    length = int(declared)
    if length > len(body):
        return body, (f"the text arrived cut short ({len(body):,} of {length:,} bytes): "
                      "send it over TCP, or in shorter parts")
    return body[:length], None  # RFC 3261 §18.3: bytes past Content-Length are not the body


def decode(raw: bytes | RawMessage, *, account: str, source: str, max_body_bytes: int,
           intake_key: str | None = None) -> SipText | None:
    """The checked text of a received MESSAGE (its bytes, or as ``split_message`` read
    them), or None for a notification (consume it)."""
    message = raw if isinstance(raw, RawMessage) else split_message(raw)
    from_hdr, to_hdr = message.header("from"), message.header("to")
    common = {
        "account": account,
        "source": shown(source),
        "from_user": usable(user_of(from_hdr)),
        "from_host": usable(host_of(from_hdr)),
        "to_user": usable(user_of(to_hdr)),
        "call_id": shown(message.header("call-id")),
        "intake_key": intake_key,
    }
    body, refusal = body_of(message)
    content_type = message.header("content-type") or "text/plain"
    if refusal is None and len(body) > max_body_bytes:
        refusal = f"the message is too long ({len(body):,} bytes, at most {max_body_bytes:,})"
    if refusal is None and not is_valid_text(content_type):
        refusal = "the message's Content-Type is not readable"
    if refusal is None:
        try:
            parsed = parse_body(content_type, body)
        except NotAText:
            return None
        except BodyError as exc:
            refusal = shown(str(exc), 300)
        except ValueError:  # a part that is not valid text (file name, URL): unreadable
            refusal = "the message could not be read"
        else:
            return SipText(content=parsed.content, imdn=parsed.imdn, **common)
    return SipText(content=None, refusal=refusal, **common)


def undecodable(account: str, from_uri: str, intake_key: str | None) -> SipText:
    """What is left of a MESSAGE the decoder could not handle: its sender, if pjsua's own
    parse of the From can be used, is told; the text is stored as refused."""
    return SipText(account=account, source="", from_user=usable(user_of(from_uri)),
                   from_host=usable(host_of(from_uri)), to_user="", call_id="",
                   content=None, refusal="the message could not be read",
                   intake_key=intake_key)
