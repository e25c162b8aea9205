"""The bridge's own SIP-over-TCP listener (bridge/sip/tcp.py): framing, answers, limits.
In-process against real sockets on loopback; the end-to-end run with sipp is in
tests/test_e2e_sip_tcp.py."""

from __future__ import annotations

import asyncio

import pytest

from bridge.model import SipText
from bridge.sip import tcp
from bridge.sip.intake import Intake
from bridge.sip.tcp import SipTcpListener


def request(body: bytes, *, method: str = "MESSAGE", n: int = 1,
            ctype: str = "text/plain;charset=UTF-8") -> bytes:
    head = (f"{method} sip:+15557654321@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-{n}\r\n"
            f"From: <sip:1001@127.0.0.1>;tag=a{n}\r\nTo: <sip:+15557654321@127.0.0.1>\r\n"
            f"Call-ID: call-{n}\r\nCSeq: {n} {method}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)


@pytest.fixture
async def listener():
    received: list[SipText] = []
    stored = asyncio.Event()
    stored.set()

    async def on_text(text: SipText) -> bool:
        await stored.wait()
        received.append(text)
        return text.to_user != "+15550000000"  # this number stands for a failing store

    server = SipTcpListener(Intake(on_text, lambda message: "*trunk*", max_body_bytes=16384,
                                   user_agent="test"))
    port = await server.start("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    yield server, reader, writer, received, stored
    writer.close()
    await server.stop()


async def test_a_text_larger_than_pjsip_takes_is_received_whole(listener):
    _, reader, writer, received, _ = listener
    body = ("é" * 7000).encode()  # 14,000 bytes: pjsip's buffer holds 4,000
    writer.write(request(body))
    answer = await read_answer(reader)
    assert answer.startswith(b"SIP/2.0 200 OK\r\n")
    assert b"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-1\r\n" in answer
    assert b"CSeq: 1 MESSAGE" in answer and b";tag=" in answer.split(b"To:")[1]
    (text,) = received
    assert text.content is not None and text.content.text == "é" * 7000


async def test_the_answer_waits_for_the_store(listener):
    _, reader, writer, received, stored = listener
    stored.clear()
    writer.write(request(b"hello"))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.3)
    stored.set()
    assert (await read_answer(reader)).startswith(b"SIP/2.0 200")
    assert len(received) == 1


async def test_a_text_the_store_cannot_take_is_answered_503(listener):
    _, reader, writer, _, _ = listener
    writer.write(request(b"hi").replace(b"+15557654321", b"+15550000000"))
    answer = await read_answer(reader)
    assert answer.startswith(b"SIP/2.0 503") and b"Retry-After: 60" in answer


async def test_pipelined_requests_keepalives_and_other_methods(listener):
    _, reader, writer, received, _ = listener
    writer.write(b"\r\n\r\n" + request(b"one", n=1) + request(b"", method="OPTIONS", n=2)
                 + request(b"", method="INVITE", n=3) + request(b"two", n=4))
    assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\r\n"  # the pong
    answers = [await read_answer(reader) for _ in range(4)]
    codes = sorted((a.split(b"CSeq: ")[1].split(b" ")[0], a.split(b" ")[1]) for a in answers)
    assert codes == [(b"1", b"200"), (b"2", b"200"), (b"3", b"405"), (b"4", b"200")]
    assert sorted(t.content.text for t in received if t.content) == ["one", "two"]


async def test_notifications_are_answered_and_consumed(listener):
    _, reader, writer, received, _ = listener
    writer.write(request(b"<isComposing/>", ctype="application/im-iscomposing+xml"))
    assert (await read_answer(reader)).startswith(b"SIP/2.0 200")
    assert received == []


async def test_a_body_over_the_hard_limit_is_refused_and_the_connection_closed(listener):
    _, reader, writer, received, _ = listener
    writer.write(request(b"").replace(b"Content-Length: 0",
                                      f"Content-Length: {tcp.HARD_BODY_LIMIT + 1}".encode()))
    assert (await read_answer(reader)).startswith(b"SIP/2.0 413")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert received == []


async def test_a_body_over_max_body_bytes_is_a_refusal_the_sender_reads(listener):
    _, reader, writer, received, _ = listener
    writer.write(request(b"x" * 20000))
    assert (await read_answer(reader)).startswith(b"SIP/2.0 200")
    (text,) = received
    assert text.content is None and "too long" in (text.refusal or "")


async def test_garbage_closes_the_connection_and_the_listener_goes_on(listener):
    server, reader, writer, _, _ = listener
    writer.write(b"MESSAGE x SIP/2.0\r\nContent-Length: lots\r\n\r\n")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    port = server._servers[0].sockets[0].getsockname()[1]
    reader2, writer2 = await asyncio.open_connection("127.0.0.1", port)
    writer2.write(request(b"still here"))
    assert (await read_answer(reader2)).startswith(b"SIP/2.0 200")
    writer2.close()
