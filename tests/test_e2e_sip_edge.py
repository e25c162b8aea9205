"""The SIP edge end to end, against the bridge as a real process in trunk mode: texts larger
than pjsip takes (over TCP through the bridge's own listener, and cut ones over UDP), wire
bytes that are not UTF-8, and notifications that must not be answered."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import zlib
from pathlib import Path

from tests.peers import configs
from tests.peers.harness import BridgeProcess, Phone, free_port, run_sipp, wait_until

SIPP = Path(__file__).parent / "peers" / "sipp"
DID = "+15551230001"
REMOTE = "+15557654321"


def edge_config(web_port: int, sip_port: int, pbx_port: int) -> str:
    return (configs.base(web_port, sip_port) + configs.trunk_account(pbx_port) + """
[[providers]]
name = "sandbox"
type = "sandbox"
""" + configs.number(DID, "sandbox", ["1001"]) + configs.extension("1001", [DID]))


def rows(bridge: BridgeProcess) -> list[dict]:
    db = sqlite3.connect(bridge.workdir / "state" / "bridge.sqlite3")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM messages ORDER BY id")]
    finally:
        db.close()


def raw_udp(port: int, message: bytes) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        sock.sendto(message, ("127.0.0.1", port))
        return sock.recvfrom(65536)[0]


def message(port: int, body: bytes, *, call_id: bytes = b"c1@x", via_port: int = 5999,
            ctype: bytes = b"text/plain;charset=UTF-8") -> bytes:
    return (b"MESSAGE sip:" + REMOTE.encode() + b"@127.0.0.1:%d SIP/2.0\r\n" % port
            + b"Via: SIP/2.0/UDP 127.0.0.1:%d;rport;branch=z9hG4bK%s\r\n" % (via_port,
                                                                    call_id.hex().encode())
            + b"From: <sip:1001@127.0.0.1>;tag=1\r\nTo: <sip:" + REMOTE.encode()
            + b"@127.0.0.1>\r\nCall-ID: " + call_id + b"\r\nCSeq: 1 MESSAGE\r\n"
            + b"Max-Forwards: 70\r\nContent-Type: " + ctype + b"\r\n"
            + b"Content-Length: %d\r\n\r\n" % len(body) + body)


async def start(tmp_path, peers) -> tuple[BridgeProcess, Phone, int]:
    web_port, sip_port = free_port(), free_port()
    pbx = await asyncio.to_thread(Phone, "pbx")  # the PBX's side: gets texts and notices
    peers.append(pbx)
    bridge = BridgeProcess(tmp_path, edge_config(web_port, sip_port, pbx.port),
                           env=configs.ENV)
    peers.append(bridge)
    await asyncio.to_thread(bridge.start, web_port)
    return bridge, pbx, sip_port


async def test_long_texts_arrive_whole_and_cut_ones_are_refused_not_passed_on(tmp_path, peers):
    bridge, pbx, sip_port = await start(tmp_path, peers)
    fits = "Grüße aus Köln, 你好 " * 560  # 14,560 bytes of UTF-8: under 16 KiB
    assert 14000 < len(fits.encode()) < 16384
    result = await asyncio.to_thread(
        run_sipp, SIPP / "message.xml", f"127.0.0.1:{sip_port}", extra=["-t", "t1"],
        keys={"from": "1001", "to": REMOTE, "ctype": "text/plain;charset=UTF-8",
              "body": fits})
    assert result.returncode == 0, result.stderr[-1000:]
    (row,) = rows(bridge)
    assert row["direction"] == "out" and row["body"] == fits and row["state"] != "rejected"

    # over UDP too: the bridge's own listener reads whole datagrams (pjsip reads 4,000 bytes)
    answer = await asyncio.to_thread(raw_udp, sip_port, message(sip_port, fits.encode(),
                                                                call_id=b"u1@x"))
    assert answer.startswith(b"SIP/2.0 200")
    assert [r["body"] for r in rows(bridge)] == [fits, fits]
    # a datagram shorter than its Content-Length was cut on the way: refused, never cut
    cut = message(sip_port, fits.encode(), call_id=b"u2@x")[:3000]
    assert (await asyncio.to_thread(raw_udp, sip_port, cut)).startswith(b"SIP/2.0 200")
    refused = wait_until(lambda: [r for r in rows(bridge) if r["state"] == "rejected"], 10)
    assert "TCP" in refused[0]["last_error"]
    (notice,) = await asyncio.to_thread(pbx.wait_messages, 1, 15)
    assert notice["body"].startswith(f"SMS to {REMOTE} not sent: the text arrived cut short")
    assert "Traceback" not in bridge.log_text()


async def test_wire_bytes_that_are_not_utf8_are_kept_or_explained(tmp_path, peers):
    bridge, pbx, sip_port = await start(tmp_path, peers)
    answer = await asyncio.to_thread(raw_udp, sip_port,
                                     message(sip_port, b"hello", call_id=b"a\xff@x"))
    assert answer.startswith(b"SIP/2.0 200")
    (row,) = wait_until(lambda: rows(bridge), 10)
    assert row["body"] == "hello" and row["state"] in ("queued", "sending", "sent")
    show = bridge.cli("show", str(row["id"]))
    assert show.returncode == 0 and "Call-ID a\ufffd@x" in show.stdout
    answer = await asyncio.to_thread(raw_udp, sip_port,
                                     message(sip_port, b"caf\xe9", call_id=b"c2@x"))
    (notice,) = await asyncio.to_thread(pbx.wait_messages, 1, 15)
    assert "not valid" in notice["body"]
    assert "Traceback" not in bridge.log_text()


async def test_delivery_notifications_and_typing_are_consumed_quietly(tmp_path, peers):
    bridge, pbx, sip_port = await start(tmp_path, peers)
    imdn = (b'<?xml version="1.0" encoding="UTF-8"?><imdn xmlns="urn:ietf:params:xml:ns:imdn">'
            b"<message-id>x1</message-id><delivery-notification><status><delivered/>"
            b"</status></delivery-notification></imdn>")
    cpim = (b"From: <sip:1001@127.0.0.1>\r\nTo: <sip:" + REMOTE.encode() + b"@127.0.0.1>\r\n"
            b"NS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: y2\r\n\r\n"
            b"Content-Type: message/imdn+xml\r\nContent-Encoding: deflate\r\n\r\n"
            + zlib.compress(imdn))
    for n, (ctype, body) in enumerate([(b"message/cpim", cpim),
                                       (b"message/imdn+xml", imdn),
                                       (b"application/im-iscomposing+xml", b"<x/>")]):
        answer = await asyncio.to_thread(raw_udp, sip_port, message(
            sip_port, body, ctype=ctype, call_id=b"n%d@x" % n, via_port=6000 + n))
        assert answer.startswith(b"SIP/2.0 200")
    await asyncio.sleep(2)
    assert rows(bridge) == [] and pbx.messages == []


async def test_registered_over_tcp_the_pbx_texts_the_bridges_own_listener(tmp_path, peers):
    from tests.carrier_server import CannedResponse, CarrierServer
    from tests.peers.harness import Kamailio

    async with CarrierServer() as twilio:
        twilio.default = CannedResponse(201, {"sid": "SM" + "3" * 32, "status": "queued"})
        kam = Kamailio({"sms": configs.PBX_PASSWORD, "1001": "pw1001"}).start()
        peers.append(kam)
        web_port = free_port()
        account = configs.registered_account(kam.port).replace(
            f'registrar = "sip:127.0.0.1:{kam.port}"',
            f'registrar = "sip:127.0.0.1:{kam.port};transport=tcp"')
        config = (configs.base(web_port, free_port()) + account
                  + configs.twilio_provider(twilio.url) + configs.number(DID, "twilio", ["1001"])
                  + configs.extension("1001", [DID]))
        bridge = BridgeProcess(tmp_path, config, env=configs.ENV)
        peers.append(bridge)
        await asyncio.to_thread(bridge.start, web_port)
        phone = await asyncio.to_thread(Phone, "1001", password="pw1001", registrar=kam.uri)
        peers.append(phone)
        assert await asyncio.to_thread(phone.send, f"sip:{REMOTE}@127.0.0.1:{kam.port}",
                                       "via tcp ✓") == 200
        (req,) = await twilio.wait_for(1)
        assert dict(req.form())["Body"] == "via tcp ✓"
        (row,) = rows(bridge)
        # it came through the bridge's own TCP listener: UDP MESSAGEs carry a journal key
        assert row["intake_key"] is None and row["body"] == "via tcp ✓"
