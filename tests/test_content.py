"""SIP MESSAGE bodies and URIs."""

from __future__ import annotations

import contextlib
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.sip.content import BodyError, NotAText, parse_body, user_of

CPIM = ("From: <sip:1001@pbx>\r\nTo: <sip:+15557654321@pbx>\r\nDateTime: 2024-01-01T00:00:00Z"
        "\r\n\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhéllo from cpim").encode()


@pytest.mark.parametrize(
    ("ctype", "body", "text"),
    [
        ("text/plain", "héllo 👋".encode(), "héllo 👋"),
        ("text/plain;charset=UTF-8", "日本".encode(), "日本"),
        ("text/plain; charset=iso-8859-1", "café".encode("latin-1"), "café"),
        ("text/plain; charset=\"utf-16\"", "ü".encode("utf-16"), "ü"),
        ("message/cpim", CPIM, "héllo from cpim"),
        ('multipart/mixed; boundary="b1"',
         b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\npart one\r\n--b1--\r\n",
         "part one"),
    ],
)
def test_bodies(ctype, body, text):
    assert parse_body(ctype, body).content.text == text


@pytest.mark.parametrize(
    ("ctype", "body", "reason"),
    [
        ("text/plain", b"\xff\xfe\xfa broken", "not valid utf-8"),
        ("text/plain; charset=klingon", b"x", "unknown character set"),
        ("message/cpim", b"From: x\r\n\r\nno inner part", "broken message/cpim"),
        ("multipart/mixed; boundary=b", b"no parts here", "broken multipart"),
        # attachments are parsed now (tests/test_mms.py); an empty multipart is still refused
        ('multipart/mixed; boundary="b1"',
         b"--b1\r\nContent-Type: image/png\r\n\r\n\r\n--b1--\r\n", "empty"),
        ("application/json", b"{}", "application/json"),
        ("text/plain", b"", "empty"),
        ("text/plain", b" \r\n\t ", "empty"),
        ("text/plain", b"hi\x00there", "NUL"),
        ("text/plain; charset=utf-16-le", b"\x00\xd8", "not valid"),  # a lone surrogate
        ("message/cpim", CPIM.replace(b"Content-Type: text/plain; charset=utf-8",
                                      b"Content-Type: text/plain\r\nContent-Encoding: br"),
         "content encoding"),
    ],
)
def test_unreadable_bodies_are_refused_with_a_reason(ctype, body, reason):
    with pytest.raises(BodyError, match=reason):
        parse_body(ctype, body)


@given(st.text(max_size=40), st.binary(max_size=300))
def test_any_body_either_parses_or_is_refused(ctype, body):
    for kind in (ctype, "message/cpim", "multipart/mixed; boundary=x", "text/plain"):
        with contextlib.suppress(BodyError, NotAText):
            parse_body(kind, body)


IMDN_XML = (b'<?xml version="1.0" encoding="UTF-8"?><imdn xmlns="urn:ietf:params:xml:ns:imdn">'
            b"<message-id>abc</message-id><delivery-notification><status><delivered/>"
            b"</status></delivery-notification></imdn>")


def linphone_imdn(compressed: bool) -> bytes:
    """A delivery notification as linphone 5.1 sends one: IMDN XML in CPIM, deflated."""
    content = zlib.compress(IMDN_XML) if compressed else IMDN_XML
    head = (b"From: <sip:1001@pbx>\r\nTo: <sip:+15557654321@pbx>\r\nDateTime: "
            b"2024-01-01T00:00:00Z\r\nNS: imdn <urn:ietf:params:imdn>\r\n"
            b"imdn.Message-ID: 1234\r\n\r\nContent-Type: message/imdn+xml\r\n"
            b"Content-Disposition: notification\r\n")
    if compressed:
        head += b"Content-Encoding: deflate\r\n"
    return head + b"\r\n" + content


@pytest.mark.parametrize(
    ("ctype", "body"),
    [
        ("message/imdn+xml", IMDN_XML),
        ("message/cpim", linphone_imdn(compressed=False)),
        ("message/cpim", linphone_imdn(compressed=True)),
        ("application/im-iscomposing+xml", b"<isComposing/>"),
        ('multipart/mixed; boundary="b1"',
         b"--b1\r\nContent-Type: message/imdn+xml\r\n\r\n" + IMDN_XML + b"\r\n--b1--\r\n"),
    ],
)
def test_notifications_are_not_texts(ctype, body):
    with pytest.raises(NotAText):
        parse_body(ctype, body)


def test_a_compressed_cpim_text_and_its_delivery_notification_request():
    text = "héllo, tell me when it arrives".encode()
    body = (b"From: <sip:1001@pbx>\r\nTo: <sip:+15557654321@pbx>\r\n"
            b"NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: Xy12\r\n"
            b"imdn.Disposition-Notification: positive-delivery, negative-delivery, display"
            b"\r\n\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Encoding: deflate"
            b"\r\n\r\n" + zlib.compress(text))
    parsed = parse_body("message/cpim", body)
    assert parsed.content.text == text.decode()
    assert parsed.imdn is not None
    assert (parsed.imdn.message_id, parsed.imdn.positive, parsed.imdn.negative) == (
        "Xy12", True, True)
    # no request without a Message-ID, or when only display notifications are asked for
    assert parse_body("message/cpim", body.replace(b"imdn.Message-ID: Xy12\r\n", b"")).imdn \
        is None
    only_display = body.replace(b"positive-delivery, negative-delivery, ", b"")
    assert parse_body("message/cpim", only_display).imdn is None


def test_a_deflate_bomb_is_refused_not_expanded():
    bomb = zlib.compress(b"a" * 10_000_000)
    body = (b"From: <sip:1001@pbx>\r\n\r\nContent-Type: text/plain\r\n"
            b"Content-Encoding: deflate\r\n\r\n" + bomb)
    with pytest.raises(BodyError, match="too large"):
        parse_body("message/cpim", body)


@pytest.mark.parametrize(
    ("uri", "user"),
    [
        ('"Bob" <sip:1001@pbx.example.com;transport=tcp>;tag=x', "1001"),
        ("<sip:+15551230001@10.0.0.1:5060>", "+15551230001"),
        ("sip:%2B15551230001@pbx", "+15551230001"),
        ("<tel:+15551230001;phone-context=x>", "+15551230001"),
        ("<sip:pbx.example.com>", ""),
    ],
)
def test_user_of(uri, user):
    assert user_of(uri) == user
