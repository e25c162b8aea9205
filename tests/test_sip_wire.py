"""The SIP edge's decoding: raw MESSAGE bytes -> a checked SipText (bridge/sip/wire.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.model import is_valid_text
from bridge.sip import wire


def message(body: bytes, *, ctype: bytes = b"text/plain;charset=UTF-8",
            length: int | None = None, call_id: bytes = b"abc@x",
            from_: bytes = b'"Bob" <sip:1001@pbx.example.com>;tag=1',
            to: bytes = b"<sip:+15557654321@pbx.example.com>", compact: bool = False) -> bytes:
    names = (b"f", b"t", b"i", b"c", b"l") if compact else (
        b"From", b"To", b"Call-ID", b"Content-Type", b"Content-Length")
    values = (from_, to, call_id, ctype, str(len(body) if length is None else length).encode())
    head = b"MESSAGE sip:+15557654321@bridge SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070\r\n"
    head += b"".join(n + b": " + v + b"\r\n" for n, v in zip(names, values, strict=True))
    return head + b"\r\n" + body


def decode(raw: bytes, max_body: int = 16384):
    return wire.decode(raw, account="*trunk*", source="127.0.0.1:5070",
                       max_body_bytes=max_body, intake_key="k1")


@pytest.mark.parametrize("compact", [False, True])
def test_a_plain_text(compact):
    text = decode(message("héllo 👋".encode(), compact=compact))
    assert text is not None and text.content is not None
    assert (text.from_user, text.from_host, text.to_user, text.call_id) == (
        "1001", "pbx.example.com", "+15557654321", "abc@x")
    assert text.content.text == "héllo 👋" and text.intake_key == "k1"


def test_a_call_id_that_is_not_utf8_is_shown_not_fatal():
    text = decode(message(b"hi", call_id=b"a\xff@x"))
    assert text is not None and text.content is not None
    assert text.call_id == "a\ufffd@x"


def test_a_from_user_that_is_not_utf8_is_unknown_not_used():
    text = decode(message(b"hi", from_=b"<sip:10\xff01@pbx>"))
    assert text is not None and text.from_user == ""


def test_a_body_pjsip_cut_is_refused_not_passed_on():
    body = ("é" * 2500).encode()  # 5,000 bytes declared ...
    raw = message(body)[:4000]  # ... and what pjsip reads of the datagram
    text = decode(raw)
    assert text is not None and text.content is None
    assert text.refusal is not None and "TCP" in text.refusal and "of 5,000" in text.refusal


def test_bytes_past_content_length_are_not_the_body():
    text = decode(message(b"hello world", length=5))
    assert text is not None and text.content is not None and text.content.text == "hello"


def test_a_body_over_the_limit_is_refused():
    text = decode(message(b"x" * 2000), max_body=1000)
    assert text is not None and text.refusal == "the message is too long (2,000 bytes, " \
                                                "at most 1,000)"


@pytest.mark.parametrize("body", [b"", b"   \r\n", b"a\x00b"])
def test_empty_blank_and_nul_texts_are_refused(body):
    text = decode(message(body))
    assert text is not None and text.content is None and text.refusal


def test_notifications_are_consumed():
    assert decode(message(b"<isComposing/>", ctype=b"application/im-iscomposing+xml")) is None


def test_an_unreadable_content_type_is_refused():
    text = decode(message(b"hi", ctype=b"text/pl\xffain"))
    assert text is not None and text.refusal is not None


header_bytes = st.binary(max_size=60).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=600), ctype=header_bytes, call_id=header_bytes,
       from_=header_bytes, to=header_bytes, length=st.one_of(st.none(), st.integers(0, 700)))
def test_any_bytes_give_a_valid_text_a_refusal_or_a_notification(body, ctype, call_id, from_,
                                                                 to, length):
    text = decode(message(body, ctype=ctype, call_id=call_id, from_=from_, to=to,
                          length=length))
    if text is None:
        return
    for value in (text.from_user, text.to_user, text.call_id, text.refusal or ""):
        assert is_valid_text(value)
    if text.content is not None:
        assert is_valid_text(text.content.text) and not text.content.empty
