"""Two bridge processes on one real PostgreSQL server, with Kamailio (the PBX both register
with), a pjsua2 phone and a Twilio stand-in: texts flow both ways through either instance;
one instance registers the account at a time and the other takes over when the holder is
killed (kill -9, under load in both directions) or loses its lock connection
(pg_terminate_backend). Every acknowledged text is delivered; repeats are counted."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import aiohttp
import psycopg

from bridge.store.leases import APPLICATION
from tests.carrier_server import CannedResponse, CarrierServer
from tests.peers import configs
from tests.peers.harness import BridgeProcess, Kamailio, Phone, free_port, wait_until
from tests.peers.twilio import inbound_params, post_twilio_webhook
from tests.traffic import Traffic

DID = "+15551230001"
REMOTE = "+15557654321"
LEASE = 3  # claim_lease_seconds: a dead instance's claims are taken over after this


def instance_config(name: str, web_port: int, kam_port: int, carrier_url: str,
                    database: str) -> str:
    base = configs.base(web_port, free_port()).replace(
        "[bridge]\n", f'[bridge]\ndatabase = "{database}"\ninstance = "{name}"\n'
                      f"claim_lease_seconds = {LEASE}\n", 1)
    return (base + configs.registered_account(kam_port) + configs.twilio_provider(carrier_url)
            + configs.number(DID, "twilio", ["1001"])
            + configs.extension("1001", [DID]).replace(
                'send = "allow"', 'send = "allow"\nmax_per_minute = 100000\n'
                'max_per_day = 100000'))


def readyz(bridge: BridgeProcess) -> dict:
    try:
        with urllib.request.urlopen(f"{bridge.url}/readyz", timeout=2) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 503 while not ready: the same JSON
        return json.loads(exc.read())
    except OSError:
        return {}


def holds(bridge: BridgeProcess, name: str) -> bool:
    """``bridge`` (instance ``name``) holds the account and is registered with the PBX."""
    pbx = readyz(bridge).get("accounts", {}).get("pbx", {})
    return pbx.get("holder") == name and pbx.get("ok") is True \
        and pbx.get("registration", "").startswith("200")


def standby_for(bridge: BridgeProcess, holder: str) -> bool:
    pbx = readyz(bridge).get("accounts", {}).get("pbx", {})
    return pbx.get("registration") == "standby" and pbx.get("holder") == holder


async def start_pair(tmp_path, peers, carrier: CarrierServer, database: str):
    # the bridge's AoR keeps one contact, as README "Scaling out" asks of the PBX: the
    # standby's registration replaces the one a killed holder left behind
    kam = Kamailio({"sms": configs.PBX_PASSWORD, "1001": "pw1001"},
                   single_contact=["sms"]).start()
    peers.append(kam)
    bridges = {}
    for name in ("A", "B"):
        (tmp_path / name).mkdir()
        web_port = free_port()
        bridge = BridgeProcess(tmp_path / name, instance_config(
            name, web_port, kam.port, carrier.url, database), env=configs.ENV)
        peers.append(bridge)
        await asyncio.to_thread(bridge.start, web_port)
        await asyncio.to_thread(wait_until, lambda b=bridge: readyz(b).get("accounts", {})
                                .get("pbx", {}).get("holder"), 15, what="a holder")
        bridges[name] = bridge
    a, b = bridges["A"], bridges["B"]
    await asyncio.to_thread(wait_until, lambda: holds(a, "A") and standby_for(b, "A"), 15,
                            what="A registered, B standing by")
    phone = await asyncio.to_thread(Phone, "1001", password="pw1001", registrar=kam.uri)
    peers.append(phone)
    return kam, a, b, phone


def carrier_ok(carrier: CarrierServer) -> None:
    sids = iter(range(1, 10**6))
    carrier.responder = lambda req: CannedResponse(
        201, {"sid": f"SM{next(sids):032d}", "status": "queued"})


def stored_twice(database: str) -> list[tuple]:
    with psycopg.connect(database) as conn:
        return conn.execute(
            "SELECT provider, carrier_id, COUNT(*) FROM messages WHERE carrier_id IS NOT NULL "
            "AND copy_of IS NULL GROUP BY provider, carrier_id HAVING COUNT(*) > 1").fetchall()


def message_id(database: str, carrier_id: str) -> int:
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT id FROM messages WHERE carrier_id = %s",
                           (carrier_id,)).fetchone()
    assert row is not None
    return int(row[0])


async def metrics(bridge: BridgeProcess) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{bridge.url}/metrics") as r:
        return await r.text()


async def test_both_ways_through_either_instance_and_a_cut_lock_connection(
        tmp_path, peers, postgres):
    database = postgres.create_database()
    async with CarrierServer() as carrier:
        carrier_ok(carrier)
        kam, a, b, phone = await start_pair(tmp_path, peers, carrier, database)
        holder_line = 'sip_sms_bridge_registration_holder{account="pbx",instance="A"} 1.0'
        assert holder_line in await metrics(a) and holder_line in await metrics(b)

        # inbound through either instance's webhook; the holder's SIP delivers both
        assert await post_twilio_webhook(a, inbound_params("SMa", "via A")) == 200
        assert await post_twilio_webhook(b, inbound_params("SMb", "via B")) == 200
        # the carrier retries one webhook at the other instance: stored once
        assert await post_twilio_webhook(b, inbound_params("SMa", "via A")) == 200
        got = await asyncio.to_thread(phone.wait_messages, 2)
        assert sorted(m["body"] for m in got) == ["via A", "via B"]
        # outbound: the phone's texts reach the holder through the PBX; either sends them
        for n in range(4):
            assert await asyncio.to_thread(
                phone.send, f"sip:{REMOTE}@127.0.0.1:{kam.port}", f"out {n}") == 200
        requests = await carrier.wait_for(4)
        assert sorted(dict(r.form())["Body"] for r in requests) == [f"out {n}" for n in range(4)]
        await asyncio.sleep(0.5)
        assert len(phone.messages) == 2 and stored_twice(database) == []

        # cut A's lock connection from the server: A stops acting for pbx, B takes over
        with psycopg.connect(database, autocommit=True) as admin:
            cut = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s", (f"{APPLICATION} A",)).fetchall()
        assert cut == [(True,)]
        cut_at = time.monotonic()
        await asyncio.to_thread(wait_until, lambda: holds(b, "B"), 20, what="B registered")
        takeover = time.monotonic() - cut_at
        await asyncio.to_thread(wait_until, lambda: standby_for(a, "B"), 10,
                                what="A standing by")
        assert "registration lease for pbx lost" in a.log_text()
        assert 'instance="B"} 1.0' in await metrics(a)
        # a text posted to A now goes out to the phone from B, the holder
        assert await post_twilio_webhook(a, inbound_params("SMc", "after the cut")) == 200
        await asyncio.to_thread(phone.wait_messages, 3)
        assert phone.messages[-1]["body"] == "after the cut"
        mid = message_id(database, "SMc")
        assert f"message {mid} delivered" in b.log_text()
        assert f"message {mid} delivered" not in a.log_text()
        print(f"\nlock connection cut: B registered {takeover:.2f} s later")


async def test_kill_9_of_the_holder_under_load_loses_nothing(tmp_path, peers, postgres):
    database = postgres.create_database()
    async with CarrierServer() as carrier:
        carrier_ok(carrier)
        kam, a, b, phone = await start_pair(tmp_path, peers, carrier, database)
        traffic = Traffic()
        acked_out, acked_in = traffic.acked_out, traffic.acked_in
        target = f"sip:{REMOTE}@127.0.0.1:{kam.port}"
        stop = asyncio.Event()
        # a steady flow of webhooks to each, not a flood of the phone
        load = [asyncio.create_task(traffic.send_texts(phone, target, stop)),
                asyncio.create_task(traffic.send_texts(phone, target, stop)),
                asyncio.create_task(traffic.post_webhooks(a, stop, pause=0.25)),
                asyncio.create_task(traffic.post_webhooks(b, stop, pause=0.25))]
        # under way both ways through A (the holder) and B before the kill
        await asyncio.to_thread(wait_until, lambda: len(acked_out) >= 1 and len(acked_in) >= 3,
                                45, what="texts acknowledged before the kill")
        before = (len(acked_out), len(acked_in))
        a.kill()
        killed_at = time.monotonic()
        await asyncio.to_thread(wait_until, lambda: holds(b, "B"), 30, interval=0.05,
                                what="B registered")
        takeover = time.monotonic() - killed_at
        # the load goes on through B alone, until texts both ways got through it
        await asyncio.to_thread(wait_until, lambda: len(acked_in) >= before[1] + 3, 45,
                                what="webhooks acknowledged by B")
        stop.set()
        await asyncio.gather(*load)
        # the phone's texts now reach B through the PBX (the phone process, busy receiving,
        # answers its own sends too late under the load: these go once it is over)
        for n in range(3):
            assert await asyncio.to_thread(phone.send, target, f"after-{n}", timeout=10) == 200
            acked_out.append(f"after-{n}")
        # systemd starts the killed instance again: a MESSAGE it had answered but not yet
        # stored is in its SIP journal, on its disk, and is stored now; it stands by
        await asyncio.to_thread(a.start, a.web_port)
        await asyncio.to_thread(wait_until, lambda: standby_for(a, "B"), 15, what="A standby")

        out_repeats, in_repeats = await traffic.all_delivered(carrier, phone)
        assert stored_twice(database) == []  # no carrier message id stored twice
        print(f"\nkill -9 of the holder: B registered {takeover:.2f} s later; "
              f"{len(acked_out)} outbound and {len(acked_in)} inbound acknowledged, "
              f"all delivered (lost: 0); repeats: {out_repeats} to the carrier, "
              f"{in_repeats} to the phone")


def test_the_readme_two_instance_config_is_valid(tmp_path, monkeypatch):
    """The worked config in README "Scaling out" loads as written (with its credentials)."""
    from pathlib import Path

    from bridge.settings import load_settings

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("### A worked two-instance config", 1)[1]
    block = section.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "database-url").write_text("postgresql://bridge:pw@db.example.net/bridge")
    (tmp_path / "pbx-password").write_text("secret")
    (tmp_path / "twilio-token").write_text("twilio-auth-token")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    (tmp_path / "bridge.toml").write_text(block)
    settings = load_settings(tmp_path / "bridge.toml")
    assert settings.bridge.instance == "sms-a"
    assert settings.bridge.database is not None
    assert "pw" not in repr(settings.bridge)
