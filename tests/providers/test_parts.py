"""The multi-part rule (``Provider.send_parts``), the same for every carrier that splits: a
long text goes out in parts within the carrier's limit, a refusal part-way is one kind of
``SendFailed`` naming the parts sent, and a retry never sends an accepted part again."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from bridge.model import OutboundSms, SendFailed, Sent
from tests.carrier_server import CannedResponse, CarrierServer, send_once
from tests.peers import configs
from tests.peers.harness import BridgeProcess, Phone, free_port, wait_until
from tests.peers.twilio import stored
from tests.providers.carriers import PLIVO, SPLITTING
from tests.providers.harness import Carrier

FROM, TO = "+14155550100", "+14155550199"


def long_text(limit: int) -> str:
    return " ".join(["word"] * (limit // 5 * 2 + 10))  # a little over twice the limit


@pytest.mark.parametrize("carrier", SPLITTING, ids=str)
async def test_a_text_over_the_limit_goes_in_parts_within_it(carrier: Carrier):
    text = long_text(carrier.split.limit)
    async with CarrierServer() as srv:
        srv.respond(*(carrier.split.accepted(f"id-{n}") for n in range(3)))
        result = await send_once(carrier.make(srv.url), OutboundSms(1, FROM, TO, text))
    texts = [carrier.split.text_of(r) for r in srv.requests]
    assert result == Sent("id-0", "3 parts", ("id-0", "id-1", "id-2"))
    assert len(texts) == 3 and all(len(t) <= carrier.split.limit for t in texts)
    assert " ".join(texts) == text


@pytest.mark.parametrize("carrier", SPLITTING, ids=str)
@pytest.mark.parametrize("retryable", [True, False])
async def test_a_refusal_part_way_names_the_parts_sent(carrier: Carrier, retryable: bool):
    msg = OutboundSms(2, FROM, TO, long_text(carrier.split.limit))
    async with CarrierServer() as srv:
        split = carrier.split
        srv.respond(split.accepted("id-0"), split.busy if retryable else split.refused)
        result = await send_once(carrier.make(srv.url), msg)
    assert isinstance(result, SendFailed) and result.retryable is retryable
    assert result.accepted_parts == ("id-0",)
    assert result.reason.startswith("part 2 of 3 refused (1 sent): ")


@pytest.mark.parametrize("carrier", SPLITTING, ids=str)
async def test_a_retry_sends_only_the_parts_still_missing(carrier: Carrier):
    text = long_text(carrier.split.limit)
    msg = OutboundSms(3, FROM, TO, text, accepted_parts=("id-0",))
    async with CarrierServer() as srv:
        srv.respond(carrier.split.accepted("id-1"), carrier.split.busy)
        first = await send_once(carrier.make(srv.url), msg)
        assert isinstance(first, SendFailed) and first.accepted_parts == ("id-0", "id-1")
        srv.respond(carrier.split.accepted("id-2"))
        second = await send_once(carrier.make(srv.url),
                                 replace(msg, accepted_parts=first.accepted_parts))
    assert second == Sent("id-0", "3 parts", ("id-0", "id-1", "id-2"))
    sent = [carrier.split.text_of(r) for r in srv.requests]
    parts = [p.text for p in carrier.make(srv.url).split(msg)]
    assert sent == [parts[1], parts[2], parts[2]]  # part 1 never again


async def test_plivo_limits_a_ucs2_text_to_737_characters():
    plivo = PLIVO
    text = "é€ü 😀 " * 200  # UCS-2, 1,400 characters
    async with CarrierServer() as srv:
        srv.respond(*(plivo.split.accepted(f"u-{n}") for n in range(3)))
        result = await send_once(plivo.make(srv.url), OutboundSms(4, FROM, TO, text))
    texts = [plivo.split.text_of(r) for r in srv.requests]
    assert isinstance(result, Sent) and len(texts) == 2
    assert all(len(t) <= 737 for t in texts)


async def test_through_the_bridge_a_retry_resends_only_the_refused_part(tmp_path, peers):
    """End to end, with a real bridge process, a pjsua2 phone and a local Twilio API: a
    3,000-character text goes in two parts; the second is refused once with a 503; the retry
    (the store kept the first part's id) sends only the second part; history says so."""
    did, remote = "+15551230001", "+15557654321"
    async with CarrierServer() as carrier:
        carrier.respond(CannedResponse(201, {"sid": "SM" + "1" * 32, "status": "queued"}),
                        CannedResponse(503, {"code": 20503, "message": "Service Unavailable"}),
                        CannedResponse(201, {"sid": "SM" + "2" * 32, "status": "queued"}))
        phone = await asyncio.to_thread(Phone, "1001")
        peers.append(phone)
        web_port, sip_port = free_port(), free_port()
        config = (configs.base(web_port, sip_port) + configs.trunk_account(phone.port)
                  + configs.twilio_provider(carrier.url) + configs.number(did, "twilio", ["1001"])
                  + configs.extension("1001", [did]))
        bridge = BridgeProcess(tmp_path, config, env=configs.ENV)
        peers.append(bridge)
        await asyncio.to_thread(bridge.start, web_port)
        text = " ".join(["word"] * 600)  # 2,999 characters
        assert await asyncio.to_thread(
            phone.send, f"sip:{remote}@127.0.0.1:{sip_port}", text) == 200
        await carrier.wait_for(3, timeout=30)
        await asyncio.to_thread(
            wait_until, lambda: stored(bridge)[0]["state"] == "sent", 30, what="sent")
        bodies = [dict(r.form())["Body"] for r in carrier.requests]
        assert len(bodies) == 3 and bodies[1] == bodies[2] and bodies[0] != bodies[1]
        assert " ".join(bodies[:2]) == text
        show = bridge.cli("show", str(stored(bridge)[0]["id"]))
        assert "part 2 of 2 refused (1 sent)" in show.stdout
        assert "SM" + "1" * 32 in show.stdout and "SM" + "2" * 32 in show.stdout
