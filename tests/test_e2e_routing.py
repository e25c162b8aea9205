"""Routing, permissions and tenants end to end through Kamailio: two tenants on two SIP
registrations, a ring group, a fallback, a sticky reply, refusals, tenant isolation."""

from __future__ import annotations

import asyncio

from bridge.sip.content import user_of
from tests.carrier_server import CannedResponse, CarrierServer, RecordedRequest
from tests.peers import configs
from tests.peers.harness import BridgeProcess, Kamailio, Phone, free_port
from tests.peers.twilio import inbound_params, post_twilio_webhook

A_MAIN, A_SECOND, A_DECLINE = "+15551230001", "+15551230002", "+15551230009"
B_MAIN = "+15552220001"
REMOTE = "+15557654321"


def tenants_config(web_port: int, kam_port: int, twilio_url: str) -> str:
    return (
        configs.base(web_port, free_port())
        + configs.registered_account(kam_port, name="a", user="sms")
        + configs.registered_account(kam_port, name="b", user="sms2")
        + configs.twilio_provider(twilio_url)
        + f"""
[[numbers]]
number = "{A_MAIN}"
provider = "twilio"
account = "a"
deliver_to = ["1001", "1002"]

[[numbers]]
number = "{A_SECOND}"
provider = "twilio"
account = "a"
deliver_to = ["1001"]

[[numbers]]
number = "{A_DECLINE}"
provider = "twilio"
account = "a"
deliver_to = ["1009"]
fallback = "1002"

[[numbers]]
number = "{B_MAIN}"
provider = "twilio"
account = "b"
deliver_to = ["2001"]
"""
        + configs.extension("1001", [A_MAIN, A_SECOND], account="a")
        + configs.extension("1002", [], send="deny", account="a")
        + configs.extension("2001", [B_MAIN], account="b")
    )


async def test_tenants_ring_groups_fallback_stickiness_and_isolation(tmp_path, peers):
    async with CarrierServer() as twilio:
        sids = iter(range(1, 1000))

        def respond(req: RecordedRequest) -> CannedResponse:
            return CannedResponse(201, {"sid": f"SM{next(sids):032d}", "status": "queued"})

        twilio.responder = respond
        users = {"sms": configs.PBX_PASSWORD, "sms2": configs.PBX_PASSWORD,
                 "1001": "pw1001", "1002": "pw1002", "2001": "pw2001", "1009": "pw1009"}
        kam = Kamailio(users, routes={"2001": "sms2"}, rejects=["1009"]).start()
        peers.append(kam)
        web_port = free_port()
        bridge = BridgeProcess(tmp_path, tenants_config(web_port, kam.port, twilio.url),
                               env=configs.ENV)
        peers.append(bridge)
        await asyncio.to_thread(bridge.start, web_port)
        phones = {}
        for ext in ("1001", "1002", "2001"):
            phones[ext] = await asyncio.to_thread(Phone, ext, password=f"pw{ext}",
                                                  registrar=kam.uri)
            peers.append(phones[ext])

        # a ring group: both extensions get their own copy
        assert await post_twilio_webhook(bridge, inbound_params("SM" + "1" * 32, "ring",
                                                                to=A_MAIN)) == 200
        for ext in ("1001", "1002"):
            (got,) = await asyncio.to_thread(phones[ext].wait_messages, 1)
            assert got["body"] == "ring" and user_of(got["from"]) == REMOTE

        # 1009 declines for good (603): the text goes to the fallback extension instead
        assert await post_twilio_webhook(bridge, inbound_params("SM" + "2" * 32, "fallback",
                                                                to=A_DECLINE)) == 200
        got = await asyncio.to_thread(phones["1002"].wait_messages, 2)
        assert got[1]["body"] == "fallback"

        # the remote party texts 1001's second number; 1001's reply leaves from that number
        other = "+15559876543"
        assert await post_twilio_webhook(bridge, inbound_params(
            "SM" + "3" * 32, "on your second line", to=A_SECOND, sender=other)) == 200
        await asyncio.to_thread(phones["1001"].wait_messages, 2)
        assert await asyncio.to_thread(
            phones["1001"].send, f"sip:{other}@127.0.0.1:{kam.port}", "sticky reply") == 200
        assert await asyncio.to_thread(
            phones["1001"].send, f"sip:{REMOTE}@127.0.0.1:{kam.port}", "default line") == 200
        sent = await twilio.wait_for(2)
        by_body = {dict(r.form())["Body"]: dict(r.form()) for r in sent}
        assert by_body["sticky reply"]["From"] == A_SECOND
        assert by_body["default line"]["From"] == A_MAIN

        # tenant B's extension sends through its own registration, from its own number...
        assert await asyncio.to_thread(
            phones["2001"].send, f"sip:{REMOTE}@127.0.0.1:{kam.port}", "from b") == 200
        sent = await twilio.wait_for(3)
        assert dict(sent[2].form())["From"] == B_MAIN
        # ...and can never use tenant A's number, even naming it explicitly
        assert await asyncio.to_thread(
            phones["2001"].send, f"sip:{A_MAIN}*{REMOTE}@127.0.0.1:{kam.port}", "steal") == 200
        (notice,) = await asyncio.to_thread(phones["2001"].wait_messages, 1)
        assert notice["body"] == (
            f"SMS to {A_MAIN}*{REMOTE} not sent: {A_MAIN} matches none of your numbers")

        # a text to B's number reaches only B's extension
        assert await post_twilio_webhook(bridge, inbound_params("SM" + "4" * 32, "for b only",
                                                                to=B_MAIN)) == 200
        got = await asyncio.to_thread(phones["2001"].wait_messages, 2)
        assert got[1]["body"] == "for b only"
        await asyncio.sleep(1)
        assert "for b only" not in [m["body"] for p in ("1001", "1002")
                                    for m in phones[p].messages]
        assert len(twilio.requests) == 3  # the refused text never reached the carrier


async def test_opt_out_is_recorded_and_explained(tmp_path, peers):
    async with CarrierServer() as twilio:
        twilio.default = CannedResponse(201, {"sid": "SM" + "9" * 32, "status": "queued"})
        users = {"sms": configs.PBX_PASSWORD, "sms2": configs.PBX_PASSWORD, "1001": "pw1001"}
        kam = Kamailio(users).start()
        peers.append(kam)
        web_port = free_port()
        bridge = BridgeProcess(tmp_path, tenants_config(web_port, kam.port, twilio.url),
                               env=configs.ENV)
        peers.append(bridge)
        await asyncio.to_thread(bridge.start, web_port)
        phone = await asyncio.to_thread(Phone, "1001", password="pw1001", registrar=kam.uri)
        peers.append(phone)
        assert await post_twilio_webhook(bridge, inbound_params("SM" + "5" * 32, "STOP",
                                                                to=A_SECOND)) == 200
        (stop,) = await asyncio.to_thread(phone.wait_messages, 1)
        assert stop["body"] == "STOP"  # the phone still sees it
        assert await asyncio.to_thread(
            phone.send, f"sip:0002*{REMOTE}@127.0.0.1:{kam.port}", "are you there?") == 200
        (_, notice) = await asyncio.to_thread(phone.wait_messages, 2)
        assert notice["body"] == (f"SMS to 0002*{REMOTE} not sent: {REMOTE} has opted out of "
                                  f"texts from {A_SECOND} (they sent STOP)")
        # a plain reply would leave from the number they stopped (stickiness): refused too
        assert await asyncio.to_thread(
            phone.send, f"sip:{REMOTE}@127.0.0.1:{kam.port}", "plain reply") == 200
        (*_, notice) = await asyncio.to_thread(phone.wait_messages, 3)
        assert "has opted out" in notice["body"]
        # opt-outs are per (our number, their number): the other line may still text them
        assert await asyncio.to_thread(
            phone.send, f"sip:0001*{REMOTE}@127.0.0.1:{kam.port}", "other line") == 200
        (req,) = await twilio.wait_for(1)
        assert dict(req.form())["From"] == A_MAIN
        # START opts back in
        assert await post_twilio_webhook(bridge, inbound_params("SM" + "6" * 32, "start",
                                                                to=A_SECOND)) == 200
        await asyncio.to_thread(phone.wait_messages, 4)
        assert await asyncio.to_thread(
            phone.send, f"sip:0002*{REMOTE}@127.0.0.1:{kam.port}", "welcome back") == 200
        requests = await twilio.wait_for(2)
        assert dict(requests[1].form())["From"] == A_SECOND
