"""The bridge's own SIP-over-UDP listener (bridge/sip/udp.py): whole datagrams, answers after
the store, retransmissions answered from the transaction's kept answer and stored once."""

from __future__ import annotations

import asyncio
import socket

import pytest

from bridge.model import SipText
from bridge.sip.intake import Intake
from bridge.sip.udp import SipUdpListener


def request(body: bytes, *, branch: str = "z9hG4bK-1", rport: bool = True,
            via_host: str = "127.0.0.1", via_port: int = 5999) -> bytes:
    via = f"SIP/2.0/UDP {via_host}:{via_port};branch={branch}" + (";rport" if rport else "")
    head = (f"MESSAGE sip:+15557654321@127.0.0.1 SIP/2.0\r\nVia: {via}\r\n"
            "From: <sip:1001@127.0.0.1>;tag=a\r\nTo: <sip:+15557654321@127.0.0.1>\r\n"
            f"Call-ID: {branch}@x\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


@pytest.fixture
async def listener():
    received: list[SipText] = []
    stored = asyncio.Event()
    stored.set()

    async def on_text(text: SipText) -> bool:
        await stored.wait()
        received.append(text)
        return True

    server = SipUdpListener(Intake(on_text, lambda message: "*trunk*", max_body_bytes=32768,
                                   user_agent="test"))
    port = await server.start("127.0.0.1", 0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield port, sock, received, stored
    sock.close()
    await server.stop()


async def exchange(sock: socket.socket, port: int, data: bytes | None,
                   timeout: float = 5) -> bytes:
    loop = asyncio.get_running_loop()
    if data is not None:
        await loop.sock_sendto(sock, data, ("127.0.0.1", port))
    return await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout)


async def test_a_datagram_larger_than_pjsip_reads_arrives_whole(listener):
    port, sock, received, _ = listener
    body = ("é" * 10000).encode()
    answer = await exchange(sock, port, request(body))
    assert answer.startswith(b"SIP/2.0 200")
    # rport filled in with the port we sent from, received= as the source differs from Via
    assert f";rport={sock.getsockname()[1]}".encode() in answer
    (text,) = received
    assert text.content is not None and text.content.text == "é" * 10000


async def test_a_retransmission_gets_the_same_answer_and_is_stored_once(listener):
    port, sock, received, stored = listener
    stored.clear()
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(sock, request(b"hi"), ("127.0.0.1", port))
    await asyncio.sleep(0.2)
    await loop.sock_sendto(sock, request(b"hi"), ("127.0.0.1", port))  # while it is stored
    with pytest.raises(TimeoutError):
        await exchange(sock, port, None, timeout=0.3)  # no answer before the store has it
    stored.set()
    first = await exchange(sock, port, None)
    again = await exchange(sock, port, request(b"hi"))  # a retransmission after the answer
    assert first == again and first.startswith(b"SIP/2.0 200")
    assert len(received) == 1


async def test_without_rport_the_answer_goes_to_the_via_port(listener):
    port, sock, received, _ = listener
    mine = sock.getsockname()[1]
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(sock, request(b"x", rport=False, via_port=mine, via_host="pbx.test"),
                           ("127.0.0.1", port))
    answer = await exchange(sock, port, None)
    assert b";received=127.0.0.1" in answer and len(received) == 1


async def test_keepalives_and_garbage_are_ignored(listener):
    port, sock, received, _ = listener
    loop = asyncio.get_running_loop()
    for junk in (b"\r\n\r\n", b"\xff\xfe garbage", b"SIP/2.0 200 OK\r\n\r\n"):
        await loop.sock_sendto(sock, junk, ("127.0.0.1", port))
    answer = await exchange(sock, port, request(b"after junk", branch="z9hG4bK-2"))
    assert answer.startswith(b"SIP/2.0 200") and len(received) == 1
