"""The benchmark's do-it-yourself Kamailio peer does the job it is measured at: phone texts
reach the carrier stand-in as authenticated Messages API posts, webhooks reach the phone."""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.diy import PhoneToSmsPeer, SmsToPhonePeer
from bench.load import offer, signed_webhooks
from bench.procs import Carrier, Uas, run_sipp
from bench.scenarios import wait_for_count

pytestmark = pytest.mark.sip


@pytest.fixture
def carrier() -> Iterator[Carrier]:
    c = Carrier()
    yield c
    c.close()


@pytest.fixture
def uas() -> Iterator[Uas]:
    u = Uas()
    yield u
    u.close()


def test_carrier_refuses_posts_without_the_accounts_credentials(carrier: Carrier) -> None:
    body = urllib.parse.urlencode({"To": "+12025550123", "From": "+15551230001",
                                   "Body": "bench x 1"}).encode()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(carrier.messages_url, body), timeout=5)
    assert err.value.code == 401
    assert carrier.count("bench ") == 0


async def test_phone_texts_reach_the_carrier_through_kamailio(
        tmp_path: Path, carrier: Carrier) -> None:
    peer = PhoneToSmsPeer(tmp_path / "out", carrier.url, shm_mib=64, children=2)
    peer.start()
    try:
        sipp = run_sipp(f"127.0.0.1:{peer.sip_port}", count=20, rate=20, tag="t")
        assert (sipp.successful, sipp.failed) == (20, 0)
        assert await wait_for_count(lambda: carrier.count("bench t "), 20, cap=10) == 20
        bodies = sorted(int(body.split()[2]) for _, body in carrier.dump())
        assert bodies == list(range(1, 21))  # each once: no retransmission became a text
    finally:
        peer.stop()


async def test_webhooks_reach_the_phone_through_kamailio(tmp_path: Path, uas: Uas) -> None:
    peer = SmsToPhonePeer(tmp_path / "in", uas.port, shm_mib=64, children=2)
    peer.start()
    try:
        url = f"{peer.url}/webhooks/twilio"
        sent = await offer(url, signed_webhooks(url, "w", 20), 50, 8)
        assert {s.status for s in sent.sent} == {200}
        assert await wait_for_count(lambda: uas.count("bench w "), 20, cap=10) == 20
        assert sorted(body for _, body in uas.dump()) == sorted(
            f"bench w {i}" for i in range(20))  # the form decoded: spaces, not '+'
        assert peer.shm_mib_used()[1] > 0
    finally:
        peer.stop()
