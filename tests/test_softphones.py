"""Softphones that are not ours, from Debian (baresip, linphonec), registered with the Kamailio
fixture as a user would set them up, against the bridge as a real process in register mode and
a local server speaking Twilio's Messages API (webhooks signed with Twilio's SDK).

- A text each way with each phone, non-ASCII included, arrives intact.
- Linphone keeps its default IMDN policy: it answers every text it receives with a delivery
  notification (``message/imdn+xml``, deflated, in CPIM). The bridge must take that quietly:
  one inbound text, then at most a handful of MESSAGEs (the IMDNs), no notices, no loop.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from tests.carrier_server import CarrierServer
from tests.peers import configs
from tests.peers.harness import BridgeProcess, Kamailio, free_port
from tests.peers.softphones import Baresip, Linphone
from tests.peers.twilio import DID, REMOTE, inbound_params, post_twilio_webhook, stored, twilio_ok

EXT = "1001"
PASSWORD = "pw1001"
TEXT = "héllo 你好 👋"
# After the phone shows a text, how long we watch for MESSAGEs that follow it, and how many
# may come: the IMDNs Linphone sends for the one text (a loop makes dozens a second).
WATCH_SECONDS = 5.0
AT_MOST_FOLLOWING = 4


def start_softphone(kind: str, kam: Kamailio) -> Baresip | Linphone:
    if kind == "baresip":
        return Baresip(EXT, PASSWORD, kam.port, numbers=(REMOTE,))
    return Linphone(EXT, PASSWORD, kam.port)


def sip_user(uri: str) -> str:
    match = re.search(r"sips?:([^@;>]+)@", uri)
    return match[1] if match else ""


def messages_from_phone(kam: Kamailio) -> int:
    """MESSAGEs Kamailio relayed from the phone (one log line per authenticated MESSAGE)."""
    log = kam.log.read_text(errors="replace")
    return len(re.findall(rf"MESSAGE from \S+ \(auth {EXT}\)", log))


async def setup(tmp_path: Path, peers: list, twilio_url: str, kind: str):
    kam = Kamailio({"sms": configs.PBX_PASSWORD, EXT: PASSWORD}).start()
    peers.append(kam)
    web_port = free_port()
    config = (configs.base(web_port, free_port()) + configs.registered_account(kam.port)
              + configs.twilio_provider(twilio_url) + configs.number(DID, "twilio", [EXT])
              + configs.extension(EXT, [DID]))
    bridge = BridgeProcess(tmp_path, config, env=configs.ENV)
    peers.append(bridge)
    await asyncio.to_thread(bridge.start, web_port)  # ready = registered with Kamailio
    phone = await asyncio.to_thread(start_softphone, kind, kam)
    peers.append(phone)
    return kam, bridge, phone


@pytest.mark.parametrize("kind", ["baresip", "linphone"])
async def test_a_text_each_way_arrives_intact(tmp_path, peers, kind):
    """The phone texts a number through Kamailio: Twilio receives it from our DID, to that
    number, byte for byte. A signed Twilio webhook reaches the phone from the texter's
    number, byte for byte."""
    async with CarrierServer() as twilio:
        twilio.responder = twilio_ok([0])
        _kam, bridge, phone = await setup(tmp_path, peers, twilio.url, kind)

        await asyncio.to_thread(phone.send, REMOTE, TEXT + " (out)")
        (req,) = await twilio.wait_for(1, timeout=20)
        form = dict(req.form())
        assert (form["To"], form["From"], form["Body"]) == (REMOTE, DID, TEXT + " (out)")

        assert await post_twilio_webhook(
            bridge, inbound_params("SM" + "c" * 32, TEXT + " (in)")) == 200
        received = await asyncio.to_thread(phone.wait_message, TEXT + " (in)", 20)
        assert sip_user(received.sender) == REMOTE
        assert "Traceback" not in bridge.log_text()


async def test_linphone_delivery_notifications_start_no_loop(tmp_path, peers):
    """Linphone (default IMDN policy) receives one text. For the next few seconds at most a
    handful of MESSAGEs come back from it (its delivery notifications), and the bridge stores
    exactly the one inbound text: no rejected rows, no notices, nothing sent to the carrier."""
    async with CarrierServer() as twilio:
        twilio.responder = twilio_ok([0])
        kam, bridge, phone = await setup(tmp_path, peers, twilio.url, "linphone")
        before = messages_from_phone(kam)

        assert await post_twilio_webhook(bridge, inbound_params("SM" + "d" * 32, TEXT)) == 200
        await asyncio.to_thread(phone.wait_message, TEXT, 20)
        await asyncio.sleep(WATCH_SECONDS)

        following = messages_from_phone(kam) - before
        shown = [m.body for m in phone.messages]
        print(f"linphone: {following} MESSAGEs from the phone in {WATCH_SECONDS:.0f} s after "
              f"one text; it showed {len(shown)} texts")
        assert following <= AT_MOST_FOLLOWING, (
            f"{following} MESSAGEs from Linphone in {WATCH_SECONDS:.0f} s after one text "
            f"(a notice loop); the phone showed: {shown[:3]}")
        rows = [(m["direction"], m["kind"], m["state"], m["body"]) for m in stored(bridge)]
        assert [(d, k, b) for d, k, _, b in rows] == [("in", "text", TEXT)], rows
        assert shown == [TEXT]
        assert twilio.requests == []
        assert "Traceback" not in bridge.log_text()
