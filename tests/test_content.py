"""SIP MESSAGE bodies and URIs."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.sip.content import BodyError, parse_body, user_of

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
    assert parse_body(ctype, body).text == text


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
    ],
)
def test_unreadable_bodies_are_refused_with_a_reason(ctype, body, reason):
    with pytest.raises(BodyError, match=reason):
        parse_body(ctype, body)


@given(st.text(max_size=40), st.binary(max_size=300))
def test_any_body_either_parses_or_is_refused(ctype, body):
    for kind in (ctype, "message/cpim", "multipart/mixed; boundary=x", "text/plain"):
        with contextlib.suppress(BodyError):
            parse_body(kind, body)


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
