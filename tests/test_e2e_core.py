"""The core bridge end to end, with real peers: Kamailio (registrar, digest auth, MESSAGE
relay), pjsua2 phones in their own processes, sipp, the bridge as a real process, and a local
server speaking Twilio's Messages API. Webhooks are signed by Twilio's official SDK."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

from twilio.request_validator import RequestValidator

from bridge.sip.content import user_of
from tests.carrier_server import CannedResponse, CarrierServer, RecordedRequest
from tests.peers import configs
from tests.peers.harness import BridgeProcess, Kamailio, Phone, free_port, run_sipp
from tests.peers.twilio import (
    DID,
    REMOTE,
    inbound_params,
    post_twilio_webhook,
    stored,
    twilio_ok,
)

SIPP = Path(__file__).parent / "peers" / "sipp"


def registered_setup(tmp_path: Path, peers: list, twilio_url: str,
                     extensions: tuple[str, ...] = ("1001",)):
    kam = Kamailio({"sms": configs.PBX_PASSWORD,
                    **{e: f"pw{e}" for e in extensions}}).start()
    peers.append(kam)
    web_port = free_port()
    config = (configs.base(web_port, free_port()) + configs.registered_account(kam.port)
              + configs.twilio_provider(twilio_url)
              + configs.number(DID, "twilio", list(extensions))
              + "".join(configs.extension(e, [DID]) for e in extensions))
    bridge = BridgeProcess(tmp_path, config, env=configs.ENV)
    peers.append(bridge)
    return kam, bridge, web_port


async def test_registered_mode_both_ways_through_kamailio(tmp_path, peers):
    """The bridge registers with digest auth; phone 1001 texts a number through Kamailio;
    Twilio's API receives exactly the documented request; a signed Twilio webhook reaches
    the phone with the sender's number as the From user. Non-ASCII text intact both ways."""
    async with CarrierServer() as twilio:
        counter = [0]
        twilio.responder = twilio_ok(counter)
        kam, bridge, web_port = registered_setup(tmp_path, peers, twilio.url)
        await asyncio.to_thread(bridge.start, web_port)  # ready = registered
        phone = await asyncio.to_thread(Phone, "1001", password="pw1001", registrar=kam.uri)
        peers.append(phone)

        text_out = "Grüße aus Zürich — 你好 👋🏽"
        code = await asyncio.to_thread(phone.send, f"sip:{REMOTE}@127.0.0.1:{kam.port}",
                                       text_out)
        assert code == 200
        (req,) = await twilio.wait_for(1)
        assert req.method == "POST"
        assert req.path == f"/2010-04-01/Accounts/{configs.TWILIO_SID}/Messages.json"
        assert req.content_type == "application/x-www-form-urlencoded"
        expected_auth = base64.b64encode(
            f"{configs.TWILIO_SID}:{configs.TWILIO_TOKEN}".encode()).decode()
        assert req.headers["Authorization"] == f"Basic {expected_auth}"
        form = dict(req.form())
        assert (form["To"], form["From"], form["Body"]) == (REMOTE, DID, text_out)

        text_in = "Ça va? 日本語のテキスト 🎉"
        status = await post_twilio_webhook(bridge, inbound_params("SM" + "a" * 32, text_in))
        assert status == 200
        (message,) = await asyncio.to_thread(phone.wait_messages, 1)
        assert user_of(message["from"]) == REMOTE
        assert message["body"] == text_in


async def test_status_callback_marks_delivered_and_failure_notifies_sender(tmp_path, peers):
    async with CarrierServer() as twilio:
        counter = [0]
        twilio.responder = twilio_ok(counter)
        kam, bridge, web_port = registered_setup(tmp_path, peers, twilio.url)
        await asyncio.to_thread(bridge.start, web_port)
        phone = await asyncio.to_thread(Phone, "1001", password="pw1001", registrar=kam.uri)
        peers.append(phone)
        for text in ("first", "second"):
            assert await asyncio.to_thread(
                phone.send, f"sip:{REMOTE}@127.0.0.1:{kam.port}", text) == 200
        first, _ = await twilio.wait_for(2)
        assert dict(first.form())["StatusCallback"] == f"{bridge.url}/webhooks/twilio"
        await asyncio.sleep(0.5)  # let the bridge record the carrier ids
        for sid, status in (("SM" + "1".zfill(32), "delivered"),
                            ("SM" + "2".zfill(32), "undelivered")):
            params = {"MessageSid": sid, "MessageStatus": status, "AccountSid":
                      configs.TWILIO_SID, "From": DID, "To": REMOTE}
            if status == "undelivered":
                params["ErrorCode"] = "30003"
            assert await post_twilio_webhook(bridge, params) == 200
        (notice,) = await asyncio.to_thread(phone.wait_messages, 1)
        assert "failed" in notice["body"] and "30003" in notice["body"]
        states = {m["body"]: m["state"] for m in stored(bridge) if m["kind"] == "text"}
        assert states == {"first": "delivered", "second": "failed"}


def linphone_cpim(text: str, message_id: str) -> str:
    """A text as Linphone sends it when it wants delivery ticks (RFC 5438 in CPIM)."""
    return (f"From: <sip:1001@127.0.0.1>\r\nTo: <sip:{REMOTE}@127.0.0.1>\r\n"
            "DateTime: 2026-12-01T10:00:00Z\r\nNS: imdn <urn:ietf:params:imdn>\r\n"
            f"imdn.Message-ID: {message_id}\r\n"
            "imdn.Disposition-Notification: positive-delivery, negative-delivery, display\r\n"
            "\r\nContent-Type: text/plain;charset=UTF-8\r\n\r\n" + text)


async def test_a_phone_that_asks_gets_delivery_notifications(tmp_path, peers):
    async with CarrierServer() as twilio:
        counter = [0]
        twilio.responder = twilio_ok(counter)
        kam, bridge, web_port = registered_setup(tmp_path, peers, twilio.url)
        await asyncio.to_thread(bridge.start, web_port)
        phone = await asyncio.to_thread(Phone, "1001", password="pw1001", registrar=kam.uri)
        peers.append(phone)
        to = f"sip:{REMOTE}@127.0.0.1:{kam.port}"
        for text, mid in (("tick me ✓", "Lp0001"), ("and fail me", "Lp0002")):
            assert await asyncio.to_thread(phone.send, to, linphone_cpim(text, mid),
                                           "message/cpim") == 200
        first, second = await twilio.wait_for(2)
        assert {dict(first.form())["Body"], dict(second.form())["Body"]} == {
            "tick me ✓", "and fail me"}
        await asyncio.sleep(0.5)
        sids = {dict(r.form())["Body"]: f"SM{str(i + 1).zfill(32)}"
                for i, r in enumerate((first, second))}
        for body, status in (("tick me ✓", "delivered"), ("and fail me", "undelivered")):
            params = {"MessageSid": sids[body], "MessageStatus": status,
                      "AccountSid": configs.TWILIO_SID, "From": DID, "To": REMOTE}
            if status == "undelivered":
                params["ErrorCode"] = "30003"
            assert await post_twilio_webhook(bridge, params) == 200
        got = await asyncio.to_thread(phone.wait_messages, 3)
        notes = {m["body"].split("<message-id>")[1].split("<")[0]: m for m in got
                 if m["content_type"].startswith("message/cpim")}
        assert "<delivered/>" in notes["Lp0001"]["body"]
        assert "<failed/>" in notes["Lp0002"]["body"]
        assert all(REMOTE in n["from"] for n in notes.values())  # the same conversation
        # the failure is also explained in words
        assert any("failed" in m["body"] and "30003" in m["body"] for m in got
                   if m["content_type"].startswith("text/plain"))


async def test_trunk_mode_accepts_only_allowed_sources(tmp_path, peers):
    async with CarrierServer() as twilio:
        twilio.responder = twilio_ok([0])
        web_port, sip_port = free_port(), free_port()
        config = (configs.base(web_port, sip_port) + configs.trunk_account(free_port())
                  + configs.twilio_provider(twilio.url) + configs.number(DID, "twilio", ["1001"])
                  + configs.extension("1001", [DID]))
        bridge = BridgeProcess(tmp_path, config, env=configs.ENV)
        peers.append(bridge)
        await asyncio.to_thread(bridge.start, web_port)
        target = f"127.0.0.1:{sip_port}"
        keys = {"from": "1001", "to": REMOTE, "ctype": "text/plain"}
        refused = await asyncio.to_thread(
            run_sipp, SIPP / "message.xml", target, bind="127.0.0.2",
            keys={**keys, "body": "from-a-stranger"})
        assert refused.returncode == 0, refused.stderr
        allowed = await asyncio.to_thread(
            run_sipp, SIPP / "message.xml", target, keys={**keys, "body": "from-the-pbx"})
        assert allowed.returncode == 0, allowed.stderr
        (req,) = await twilio.wait_for(1)
        assert dict(req.form())["Body"].strip() == "from-the-pbx"
        await asyncio.sleep(1)
        assert len(twilio.requests) == 1
        assert "source not allowed" in bridge.log_text()


async def test_refused_send_is_explained_to_the_sender(tmp_path, peers):
    async with CarrierServer() as twilio:
        twilio.responder = twilio_ok([0])
        kam = Kamailio({"sms": configs.PBX_PASSWORD, "1001": "pw1001",
                        "1002": "pw1002"}).start()
        peers.append(kam)
        web_port = free_port()
        config = (configs.base(web_port, free_port()) + configs.registered_account(kam.port)
                  + configs.twilio_provider(twilio.url) + configs.number(DID, "twilio", ["1001"])
                  + configs.extension("1001", [DID]) + configs.extension("1002", [], "deny"))
        bridge = BridgeProcess(tmp_path, config, env=configs.ENV)
        peers.append(bridge)
        await asyncio.to_thread(bridge.start, web_port)
        phone = await asyncio.to_thread(Phone, "1002", password="pw1002", registrar=kam.uri)
        peers.append(phone)
        assert await asyncio.to_thread(
            phone.send, f"sip:{REMOTE}@127.0.0.1:{kam.port}", "let me out") == 200
        (notice,) = await asyncio.to_thread(phone.wait_messages, 1)
        assert notice["body"] == (
            f"SMS to {REMOTE} not sent: extension 1002 is not allowed to send SMS")
        assert user_of(notice["from"]) == REMOTE  # shows in the conversation it concerns
        assert twilio.requests == []
        (rejected,) = [m for m in stored(bridge) if m["kind"] == "text"]
        assert rejected["state"] == "rejected"


async def test_bad_signatures_refused_and_repeats_stored_once(tmp_path, peers):
    async with CarrierServer() as twilio:
        kam, bridge, web_port = registered_setup(tmp_path, peers, twilio.url)
        await asyncio.to_thread(bridge.start, web_port)
        phone = await asyncio.to_thread(Phone, "1001", password="pw1001", registrar=kam.uri)
        peers.append(phone)
        params = inbound_params("SM" + "b" * 32, "only once")
        assert await post_twilio_webhook(bridge, params, token="not-the-token") == 403
        assert await post_twilio_webhook(bridge, params, signature="") == 403
        tampered = {**params, "Body": "tampered"}
        good_sig = RequestValidator(configs.TWILIO_TOKEN).compute_signature(
            f"{bridge.url}/webhooks/twilio", params)
        assert await post_twilio_webhook(bridge, tampered, signature=good_sig) == 403
        assert stored(bridge) == []

        assert await post_twilio_webhook(bridge, params) == 200
        assert await post_twilio_webhook(bridge, params) == 200  # the carrier's retry
        await asyncio.to_thread(phone.wait_messages, 1)
        await asyncio.sleep(1.5)
        assert [m["body"] for m in phone.messages] == ["only once"]
        assert len(stored(bridge)) == 1


async def test_sigkill_with_work_pending_both_ways_loses_nothing(tmp_path, peers):
    """Carrier failing (503) and the phone offline while texts arrive; the bridge is killed
    with SIGKILL; after a restart, with the carrier and phone back, everything arrives."""
    async with CarrierServer() as twilio:
        carrier_up = False
        accepted: list[str] = []

        def respond(req: RecordedRequest) -> CannedResponse:
            if not carrier_up:
                return CannedResponse(503, {"code": 20503, "message": "Service Unavailable"})
            accepted.append(dict(req.form())["Body"])
            return CannedResponse(201, {"sid": f"SM{len(accepted):032d}", "status": "queued"})

        twilio.responder = respond
        kam, bridge, web_port = registered_setup(tmp_path, peers, twilio.url,
                                                 extensions=("1001", "1002"))
        await asyncio.to_thread(bridge.start, web_port)
        sender = await asyncio.to_thread(Phone, "1001", password="pw1001", registrar=kam.uri)
        peers.append(sender)
        outbound = [f"out {i} ✓" for i in range(5)]
        for text in outbound:
            assert await asyncio.to_thread(
                sender.send, f"sip:{REMOTE}@127.0.0.1:{kam.port}", text) == 200
        sender.close()  # 1001 goes offline; 1002 never registered
        inbound = [f"in {i} ✓" for i in range(5)]
        for i, text in enumerate(inbound):
            assert await post_twilio_webhook(
                bridge, inbound_params(f"SM{i:032d}", text, sender=f"+1555765000{i}")) == 200
        await twilio.wait_for(5)  # attempts under way, failing with 503
        bridge.kill()

        carrier_up = True
        await asyncio.to_thread(bridge.start, web_port)
        phones = []
        for ext in ("1001", "1002"):
            phone = await asyncio.to_thread(Phone, ext, password=f"pw{ext}", registrar=kam.uri)
            peers.append(phone)
            phones.append(phone)

        async def carrier_has_all() -> None:
            while sorted(accepted) != sorted(outbound):
                await asyncio.sleep(0.2)

        await asyncio.wait_for(carrier_has_all(), 30)
        for phone in phones:  # the number rings both extensions: each gets every text
            got = await asyncio.to_thread(phone.wait_messages, 5, 30)
            assert sorted(m["body"] for m in got) == sorted(inbound)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if {m["state"] for m in stored(bridge)} <= {"sent", "delivered"}:
                break
            await asyncio.sleep(0.3)
        assert {m["state"] for m in stored(bridge)} <= {"sent", "delivered"}
        assert sorted(accepted) == sorted(outbound)  # each accepted by the carrier once
        assert len(phones[0].messages) == 5 and len(phones[1].messages) == 5
