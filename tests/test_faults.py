"""Faults: SIGKILL under load in both directions, carrier outages, a PBX restart, an offline
phone coming back, graceful shutdown, and TLS at both edges. Real peers throughout; every
loop is bounded."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import random
import sqlite3
import ssl
import time
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twilio.request_validator import RequestValidator

from tests.carrier_server import CannedResponse, CarrierServer
from tests.peers import configs
from tests.peers.harness import BridgeProcess, Kamailio, Phone, free_port, wait_until
from tests.peers.twilio import inbound_params, post_twilio_webhook, stored
from tests.traffic import Traffic

DID = "+15551230001"
REMOTE = "+15557654321"
KILL_ROUNDS = 4


def trunk_config(web_port: int, sip_port: int, pbx_port: int, carrier_url: str,
                 base: str | None = None) -> str:
    return ((base or configs.base(web_port, sip_port)) + configs.trunk_account(pbx_port)
            + configs.twilio_provider(carrier_url) + configs.number(DID, "twilio", ["1001"])
            + configs.extension("1001", [DID]).replace(
                'send = "allow"', 'send = "allow"\nmax_per_minute = 100000\n'
                'max_per_day = 100000'))


async def test_sigkill_at_random_moments_under_load_loses_nothing(tmp_path, peers):
    """Rounds of: texts flowing both ways (a pjsua2 phone/PBX sending MESSAGEs, signed
    webhooks arriving), then SIGKILL at a random moment, then restart. Every text that was
    acknowledged (SIP 200 / webhook 2xx) arrives; carrier retries of a webhook are stored once."""
    rng = random.Random(20261122)
    async with CarrierServer() as carrier:
        sids = iter(range(1, 10**6))
        carrier.responder = lambda req: CannedResponse(
            201, {"sid": f"SM{next(sids):032d}", "status": "queued"})
        phone = await asyncio.to_thread(Phone, "1001")  # the extension, and the PBX it is on
        peers.append(phone)
        web_port, sip_port = free_port(), free_port()
        bridge = BridgeProcess(tmp_path, trunk_config(web_port, sip_port, phone.port,
                                                      carrier.url), env=configs.ENV)
        peers.append(bridge)
        traffic = Traffic()
        acked_out, acked_in = traffic.acked_out, traffic.acked_in
        target = f"sip:{REMOTE}@127.0.0.1:{sip_port}"

        for _ in range(KILL_ROUNDS):
            await asyncio.to_thread(bridge.start, web_port)
            # the carrier retries some webhooks it already delivered
            for sid in rng.sample(sorted(acked_in), min(3, len(acked_in))):
                assert await post_twilio_webhook(bridge, inbound_params(sid, acked_in[sid])) \
                    == 200
            stop = asyncio.Event()
            load = [asyncio.create_task(traffic.send_texts(phone, target, stop)),
                    asyncio.create_task(traffic.send_texts(phone, target, stop)),
                    asyncio.create_task(traffic.post_webhooks(bridge, stop))]
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            bridge.kill()
            stop.set()
            await asyncio.gather(*load, return_exceptions=True)

        await asyncio.to_thread(bridge.start, web_port)
        assert acked_out and acked_in, "the load never got through"

        out_dups, in_dups = await traffic.all_delivered(carrier, phone)
        db = sqlite3.connect(tmp_path / "state" / "bridge.sqlite3")
        repeats = db.execute(
            "SELECT carrier_id, COUNT(*) FROM messages WHERE direction = 'in' AND "
            "copy_of IS NULL GROUP BY provider, carrier_id HAVING COUNT(*) > 1").fetchall()
        assert repeats == []  # one stored message per carrier message id
        print(f"\n{KILL_ROUNDS} kills: {len(acked_out)} outbound and {len(acked_in)} inbound "
              f"acknowledged; all delivered; repeats after a kill: {out_dups} to the carrier, "
              f"{in_dups} to the phone")


async def test_carrier_errors_then_recovery_drain_the_queue(tmp_path, peers):
    async with CarrierServer() as carrier:
        script = ([CannedResponse(500, {"code": 20500, "message": "Internal Server Error"})] * 2
                  + [CannedResponse(429, {"code": 20429, "message": "Too Many Requests"},
                                    {"Retry-After": "1"})] * 2
                  + [CannedResponse(201, {"sid": "late"}, delay=20)] * 2)  # timeouts
        carrier.respond(*script)
        sids = iter(range(1, 1000))
        carrier.responder = lambda req: CannedResponse(
            201, {"sid": f"SM{next(sids):032d}", "status": "queued"})
        phone = await asyncio.to_thread(Phone, "1001")
        peers.append(phone)
        web_port, sip_port = free_port(), free_port()
        config = trunk_config(web_port, sip_port, phone.port, carrier.url).replace(
            'api_base = "', 'timeout_seconds = 2\napi_base = "')
        bridge = BridgeProcess(tmp_path, config, env=configs.ENV)
        peers.append(bridge)
        await asyncio.to_thread(bridge.start, web_port)
        texts = [f"during the outage {i}" for i in range(4)]
        for text in texts:
            assert await asyncio.to_thread(
                phone.send, f"sip:{REMOTE}@127.0.0.1:{sip_port}", text) == 200

        def accepted() -> set[str]:
            return {dict(r.form())["Body"] for r in carrier.requests[len(script):]}

        await asyncio.to_thread(wait_until, lambda: accepted() == set(texts), 60,
                                what="the queue to drain")
        assert len(carrier.requests) >= len(script) + len(texts)
        await asyncio.sleep(0.5)
        assert {m["state"] for m in stored(bridge)} == {"sent"}
        assert phone.messages == []  # no failure notice: nothing failed for good


async def test_pbx_restart_bridge_reregisters_and_queued_texts_flow(tmp_path, peers):
    async with CarrierServer() as carrier:
        sids = iter(range(1, 1000))
        carrier.responder = lambda req: CannedResponse(
            201, {"sid": f"SM{next(sids):032d}", "status": "queued"})
        kam = Kamailio({"sms": configs.PBX_PASSWORD, "1001": "pw1001"}).start()
        peers.append(kam)
        web_port = free_port()
        config = (configs.base(web_port, free_port())
                  + configs.registered_account(kam.port).replace(
                      'username = "sms"', 'username = "sms"\nregister_expires = 20')
                  + configs.twilio_provider(carrier.url) + configs.number(DID, "twilio", ["1001"])
                  + configs.extension("1001", [DID]))
        bridge = BridgeProcess(tmp_path, config, env=configs.ENV)
        peers.append(bridge)
        await asyncio.to_thread(bridge.start, web_port)
        phone = await asyncio.to_thread(Phone, "1001", password="pw1001", registrar=kam.uri,
                                        expires=20)
        peers.append(phone)

        kam.stop()  # the PBX goes down: a text arrives meanwhile and waits in the queue
        assert await post_twilio_webhook(bridge, inbound_params("SM" + "d" * 32,
                                                                "while the PBX was down")) == 200
        await asyncio.sleep(2)
        kam.start()  # back, with an empty location table: everyone must register again

        (got,) = await asyncio.to_thread(phone.wait_messages, 1, 60)
        assert got["body"] == "while the PBX was down"
        # and the bridge registered again by itself: numbers reach it through the PBX
        deadline = time.monotonic() + 40
        code = 0
        while time.monotonic() < deadline:
            code = await asyncio.to_thread(
                phone.send, f"sip:{REMOTE}@127.0.0.1:{kam.port}", "after the restart")
            if code == 200:
                break
            await asyncio.sleep(1)
        assert code == 200
        (req,) = await carrier.wait_for(1, timeout=10)
        assert dict(req.form())["Body"] == "after the restart"


async def test_offline_phone_gets_its_text_within_one_retry_interval(tmp_path, peers):
    async with CarrierServer() as carrier:
        kam = Kamailio({"sms": configs.PBX_PASSWORD, "1001": "pw1001"}).start()
        peers.append(kam)
        web_port = free_port()
        config = (configs.base(web_port, free_port(), retry=1.0, max_retry=2.0)
                  + configs.registered_account(kam.port) + configs.twilio_provider(carrier.url)
                  + configs.number(DID, "twilio", ["1001"]) + configs.extension("1001", [DID]))
        bridge = BridgeProcess(tmp_path, config, env=configs.ENV)
        peers.append(bridge)
        await asyncio.to_thread(bridge.start, web_port)
        assert await post_twilio_webhook(bridge, inbound_params("SM" + "e" * 32,
                                                                "waiting for you")) == 200
        await asyncio.sleep(5)  # several failed attempts (404: not registered)
        (message,) = stored(bridge)
        assert message["state"] == "queued" and message["attempts"] >= 2
        phone = await asyncio.to_thread(Phone, "1001", password="pw1001", registrar=kam.uri)
        peers.append(phone)
        registered = time.monotonic()  # Phone() returns once the registration is confirmed
        (got,) = await asyncio.to_thread(phone.wait_messages, 1, 10)
        assert got["body"] == "waiting for you"
        waited = time.monotonic() - registered
        print(f"\ndelivered {waited:.2f} s after the phone registered (retry interval 2 s)")
        # within one retry interval, with a margin for a loaded machine
        assert waited < 2.0 * 1.2 + 2.0


async def test_sigterm_finishes_unregisters_and_exits_zero(tmp_path, peers):
    async with CarrierServer() as carrier:
        carrier.default = CannedResponse(201, {"sid": "SM" + "f" * 32, "status": "queued"})
        kam = Kamailio({"sms": configs.PBX_PASSWORD, "1001": "pw1001"}).start()
        peers.append(kam)
        web_port = free_port()
        config = (configs.base(web_port, free_port()) + configs.registered_account(kam.port)
                  + configs.twilio_provider(carrier.url)
                  + configs.number(DID, "twilio", ["1001"]) + configs.extension("1001", [DID]))
        bridge = BridgeProcess(tmp_path, config, env=configs.ENV)
        peers.append(bridge)
        await asyncio.to_thread(bridge.start, web_port)
        phone = await asyncio.to_thread(Phone, "1001", password="pw1001", registrar=kam.uri)
        peers.append(phone)
        assert await asyncio.to_thread(
            phone.send, f"sip:{REMOTE}@127.0.0.1:{kam.port}", "last one") == 200
        assert await asyncio.to_thread(bridge.terminate) == 0
        assert "stopped" in bridge.log_text()
        # unregistered: the PBX no longer knows where numbers go
        assert await asyncio.to_thread(
            phone.send, f"sip:{REMOTE}@127.0.0.1:{kam.port}", "anyone?") == 404
        # nothing acknowledged is lost: it went out before the stop, or it waits on disk
        if not carrier.requests:
            assert [m["state"] for m in stored(bridge)] == ["queued"]
            await asyncio.to_thread(bridge.start, web_port)
            await carrier.wait_for(1)
        assert [dict(r.form())["Body"] for r in carrier.requests] == ["last one"]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_tls_at_both_edges(tmp_path, peers):
    """HTTPS webhooks served from a certificate and key; SIP over TLS from a phone."""
    cert, key = make_certificate(tmp_path)
    async with CarrierServer() as carrier:
        carrier.default = CannedResponse(201, {"sid": "SM" + "a" * 32, "status": "queued"})
        phone = await asyncio.to_thread(Phone, "1001", tls=True)
        peers.append(phone)
        web_port, sip_port, tls_port = free_port(), free_port(), free_port()
        pair = f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\n'
        config = trunk_config(
            web_port, sip_port, phone.port, carrier.url,
            base=configs.base(web_port, sip_port, scheme="https", web=pair,
                              sip=f'transports = ["udp", "tls"]\ntls_port = {tls_port}\n'
                                  + pair))
        context = ssl.create_default_context(cafile=str(cert))
        bridge = BridgeProcess(tmp_path, config, env=configs.ENV, ssl_context=context)
        peers.append(bridge)
        await asyncio.to_thread(bridge.start, web_port)

        params = inbound_params("SM" + "c" * 32, "over https")
        url = f"{bridge.url}/webhooks/twilio"
        assert url.startswith("https://")
        signature = RequestValidator(configs.TWILIO_TOKEN).compute_signature(url, params)
        async with aiohttp.ClientSession() as session:
            async with session.post(url, data=params, ssl=context,
                                    headers={"X-Twilio-Signature": signature}) as resp:
                assert resp.status == 200
            try:
                async with session.get(f"http://127.0.0.1:{web_port}/healthz") as resp:
                    plain_status = resp.status
            except aiohttp.ClientError:
                plain_status = None
        assert plain_status != 200  # no plain HTTP on the TLS port
        (got,) = await asyncio.to_thread(phone.wait_messages, 1, 15)
        assert got["body"] == "over https"

        code = await asyncio.to_thread(
            phone.send, f"sip:{REMOTE}@127.0.0.1:{tls_port};transport=tls", "over sip tls")
        assert code == 200
        (req,) = await carrier.wait_for(1)
        assert dict(req.form())["Body"] == "over sip tls"


async def test_trusted_proxy_decides_who_the_client_is(tmp_path, peers):
    """Behind a reverse proxy every request comes from loopback; with the proxy listed in
    trusted_proxies, X-Forwarded-For tells the real client, so the sandbox carrier (loopback
    only) refuses a forwarded outsider. From an untrusted peer the header is ignored."""
    async with CarrierServer() as carrier:
        web_port = free_port()
        sip_port = free_port()
        base = trunk_config(web_port, sip_port, free_port(), carrier.url) + """
[[providers]]
name = "sandbox"
type = "sandbox"
""" + configs.number("+15551230002", "sandbox", ["1001"])
        body = {"from": REMOTE, "to": "+15551230002", "text": "hi"}
        forwarded = {"X-Forwarded-For": "203.0.113.9"}
        for name, trusted, expected in (("behind-proxy", '["127.0.0.1/32"]', 403),
                                        ("direct", "[]", 200)):
            workdir = tmp_path / name
            workdir.mkdir()
            config = base.replace(configs.base(web_port, sip_port), configs.base(
                web_port, sip_port, web=f"trusted_proxies = {trusted}"))
            bridge = BridgeProcess(workdir, config, env=configs.ENV)
            peers.append(bridge)
            await asyncio.to_thread(bridge.start, web_port)
            async with aiohttp.ClientSession() as session, session.post(
                f"{bridge.url}/webhooks/sandbox", json=body, headers=forwarded
            ) as resp:
                assert resp.status == expected
            assert await asyncio.to_thread(bridge.terminate) == 0
        assert json.loads(bridge.cli("messages", "--json").stdout)[0]["body"] == "hi"


async def test_memory_guard_stops_cleanly_for_a_restart_and_keeps_the_queue(tmp_path, peers):
    """Past restart_above_rss_mib the bridge stops like on SIGTERM but exits 75, for
    systemd's Restart=on-failure; what was queued is still queued at the next start."""
    async with CarrierServer() as carrier:
        web_port = free_port()
        config = (configs.base(web_port, free_port()).replace(
            'log_level = "debug"',
            'log_level = "debug"\nrestart_above_rss_mib = 64\nmemory_check_seconds = 3')
            + configs.trunk_account(free_port()) + configs.twilio_provider(carrier.url)
            + configs.number(DID, "twilio", ["1001"]) + configs.extension("1001", [DID]))
        bridge = BridgeProcess(tmp_path, config, env=configs.ENV)
        peers.append(bridge)
        await asyncio.to_thread(bridge.start, web_port)
        # nobody answers at the PBX address: the text waits in the queue
        assert await post_twilio_webhook(bridge, inbound_params("SM" + "b" * 32,
                                                                "kept across it")) == 200
        assert bridge.proc is not None
        code = await asyncio.to_thread(bridge.proc.wait, 30)
        assert code == 75
        assert "above restart_above_rss_mib" in bridge.log_text()
        (message,) = stored(bridge)
        assert message["body"] == "kept across it" and message["state"] == "queued"
