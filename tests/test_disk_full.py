"""A full disk under the state directory (a small tmpfs, mounted as root, as in CI): texts
that cannot be stored are answered 503 and explained to their sender at once, an attempt
whose outcome cannot be recorded is recorded once space returns (never left in `sending`,
never sent twice), and the daemon serves again by itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.carrier_server import CannedResponse, CarrierServer
from tests.peers import configs
from tests.peers.harness import BridgeProcess, Phone, free_port, run_sipp, wait_until
from tests.peers.rawsip import RawMessage, send_udp

SIPP = Path(__file__).parent / "peers" / "sipp"
DID = "+15551230001"
REMOTE = "+15557654321"


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "state"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with filler.open("wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
            os.fsync(out.fileno())
    return filler


def states(disk: Path) -> list[tuple[str, str, str]]:
    db = sqlite3.connect(f"file:{disk / 'bridge.sqlite3'}?mode=ro", uri=True)
    try:
        return [tuple(r) for r in db.execute(
            "SELECT direction, state, body FROM messages ORDER BY id")]
    finally:
        db.close()


async def test_a_full_disk_is_explained_recorded_later_and_recovered_from(tmp_path, small_disk,
                                                                          peers):
    async with CarrierServer() as twilio:
        answered: list[int] = []

        def slow_ok(req):
            answered.append(1)
            return CannedResponse(201, {"sid": f"SM{len(answered):032d}", "status": "queued"},
                                  delay=2.0 if len(answered) == 1 else 0.0)

        twilio.responder = slow_ok
        web_port, sip_port = free_port(), free_port()
        pbx = await asyncio.to_thread(Phone, "pbx")
        peers.append(pbx)
        config = (configs.base(web_port, sip_port) + configs.trunk_account(pbx.port)
                  + configs.twilio_provider(twilio.url) + configs.number(DID, "twilio", ["1001"])
                  + configs.extension("1001", [DID]))
        bridge = BridgeProcess(tmp_path, config.replace('state_dir = "state"',
                                                        f'state_dir = "{small_disk}"'),
                               env=configs.ENV)
        peers.append(bridge)
        await asyncio.to_thread(bridge.start, web_port)
        target = f"127.0.0.1:{sip_port}"

        def text(body: str) -> None:
            result = run_sipp(SIPP / "message.xml", target, keys={
                "from": "1001", "to": REMOTE, "ctype": "text/plain", "body": body})
            assert result.returncode == 0, result.stderr[-500:]

        # 1. a text whose carrier answer is slow; the disk fills while it is in flight
        await asyncio.to_thread(text, "in flight")
        await twilio.wait_for(1)
        filler = await asyncio.to_thread(fill, small_disk)
        # 2. texts that arrive now cannot be stored: answered 503, and the sender is told
        for n in range(3):
            message = RawMessage(b"<sip:1001@127.0.0.1>;tag=f",
                                 f"<sip:{REMOTE}@127.0.0.1>".encode(), f"full-{n}@x".encode(),
                                 body=f"while full {n}".encode())
            assert await asyncio.to_thread(send_udp, message, sip_port, 5.0) == 503
        notices = await asyncio.to_thread(pbx.wait_messages, 3, 20)
        assert all("cannot store texts right now" in n["body"] for n in notices)
        await asyncio.sleep(3)  # the carrier has answered; its outcome waits for space
        # 3. space returns: the outcome is recorded, nothing stays in sending, no repeats
        filler.unlink()
        await asyncio.to_thread(text, "after")
        await twilio.wait_for(2)
        rows = wait_until(lambda: [r for r in states(small_disk) if r[0] == "out"
                                   and r[1] == "sent"] if len(
            [r for r in states(small_disk) if r[1] == "sent"]) == 2 else None, 20,
            what="both texts sent")
        assert sorted(r[2] for r in rows) == ["after", "in flight"]
        assert not [r for r in states(small_disk) if r[1] == "sending"]
        await asyncio.sleep(1)
        assert [dict(r.form())["Body"] for r in twilio.requests] == ["in flight", "after"]
        log = bridge.log_text()
        assert "Traceback" not in log and "cannot record its outcome yet" in log
        assert bridge.proc is not None and bridge.proc.poll() is None
