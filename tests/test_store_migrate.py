"""``sip-sms-bridge migrate-db``: a populated SQLite state copied into a real PostgreSQL
server, counts verified and printed, a non-empty target refused unless --force; then the
daemon runs on PostgreSQL with the queue intact (its queued texts reach the carrier)."""

from __future__ import annotations

import asyncio
import json
import time

from bridge.cli import main
from bridge.model import Direction, State
from bridge.settings import PacingSettings
from bridge.store import NewMessage, Store, StoredMedia
from tests.carrier_server import CannedResponse, CarrierServer, RecordedRequest
from tests.peers import configs
from tests.peers.harness import BridgeProcess, free_port

DID = "+15551230001"
REMOTE = "+15557654321"


def config(web_port: int, twilio_url: str, database: str | None = None) -> str:
    text = (configs.base(web_port, free_port()) + configs.trunk_account(free_port())
            + configs.twilio_provider(twilio_url) + configs.number(DID, "twilio", ["1001"])
            + configs.extension("1001", [DID]))
    if database is not None:
        text = text.replace("[bridge]\n", f'[bridge]\ndatabase = "{database}"\n', 1)
    return text


def text(body: str) -> NewMessage:
    return NewMessage(direction=Direction.OUT, account="pbx", extension="1001", remote=REMOTE,
                      did=DID, provider="twilio", body=body, expires_at=time.time() + 3600)


async def populate(state_dir) -> dict[str, int]:
    """A state with a bit of everything: returns the ids of interest."""
    s = Store(state_dir / "bridge.sqlite3")
    await s.open()
    try:
        (failed,) = await s.insert([text("failed long ago")])
        await s.claim_due(Direction.OUT, 1)
        await s.transition(failed, State.FAILED, error="carrier said no")
        (in_flight,) = await s.insert([text("in flight at the move")])
        await s.claim_due(Direction.OUT, 1)
        queued = [(await s.insert([text(f"queued {n}")]))[0] for n in range(3)]
        await s.set_opt_out(DID, "+15550000001", True, "STOP")
        await s.add_part("twilio", REMOTE, "ref", 1, 2, "c1", "half ")
        await s.reserve_slot(DID, failed, PacingSettings(per_second=1), time.time())
        now = time.time()
        media = StoredMedia(token="m" * 22, filename="a.png", content_type="image/png",
                            size=4, sha256="0" * 64, origin="phone", source_key=None,
                            created_at=now, expires_at=now + 3600)
        await s.add_media(media)
        (state_dir / "media").mkdir()
        (state_dir / "media" / media.token).write_bytes(b"\x89PNG")
    finally:
        await s.close()
    return {"failed": failed, "in_flight": in_flight, "first_queued": queued[0]}


async def test_migrate_db_copies_refuses_then_forces(tmp_path, postgres, capsys, monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", configs.TWILIO_TOKEN)
    (tmp_path / "state").mkdir()
    await populate(tmp_path / "state")
    cfg = tmp_path / "bridge.toml"
    cfg.write_text(config(free_port(), "http://127.0.0.1:9").replace(
        'state_dir = "state"', f'state_dir = "{tmp_path / "state"}"'))
    url = postgres.create_database()
    assert await asyncio.to_thread(main, ["migrate-db", "-c", str(cfg), "--to", url]) == 0
    out = capsys.readouterr().out
    print(out)
    for line in ("messages              5 -> 5", "events                6 -> 6",
                 "inbound_parts         1 -> 1", "opt_outs              1 -> 1",
                 "media                 1 -> 1", "pacing_slots          1 -> 1",
                 "media files           1 -> 1"):
        assert line in out
    assert "bridge@" not in out  # no URL (it may carry a password) in the output
    pg = Store(url)
    await pg.open()
    try:
        assert await pg.media_data("m" * 22) == b"\x89PNG"
        assert await pg.insert([text("new")]) == [6]  # ids go on after the copied ones
        assert await pg.is_opted_out(DID, "+15550000001")
        assert await pg.add_part("twilio", REMOTE, "ref", 2, 2, "c2", "done") \
            == ("half done", "twilio-parts-c1")
    finally:
        await pg.close()
    # a second run finds a state there: refused, nothing changed
    assert await asyncio.to_thread(main, ["migrate-db", "-c", str(cfg), "--to", url]) == 1
    assert "already holds a state" in capsys.readouterr().err
    assert await asyncio.to_thread(
        main, ["migrate-db", "-c", str(cfg), "--to", url, "--force"]) == 0
    assert "messages              5 -> 5" in capsys.readouterr().out
    # a bad target is a clear error, not a traceback
    assert await asyncio.to_thread(main, ["migrate-db", "-c", str(cfg), "--to", "sqlite://x"]) \
        == 2


async def test_the_daemon_runs_on_the_migrated_queue(tmp_path, postgres, peers):
    (tmp_path / "state").mkdir()
    ids = await populate(tmp_path / "state")
    url = postgres.create_database()
    async with CarrierServer() as twilio:
        sent = [0]

        def respond(req: RecordedRequest) -> CannedResponse:
            sent[0] += 1
            return CannedResponse(201, {"sid": f"SM{sent[0]:032d}", "status": "queued"})

        twilio.responder = respond
        web_port = free_port()
        sqlite_bridge = BridgeProcess(tmp_path, config(web_port, twilio.url), env=configs.ENV)
        moved = await asyncio.to_thread(sqlite_bridge.cli, "migrate-db", "--to", url)
        assert moved.returncode == 0, moved.stderr
        bridge = BridgeProcess(tmp_path, config(web_port, twilio.url, url), env=configs.ENV)
        peers.append(bridge)
        await asyncio.to_thread(bridge.start, web_port)
        requests = await twilio.wait_for(4, timeout=20)  # 3 queued + the one in flight
        bodies = sorted(dict(r.form())["Body"] for r in requests)
        assert bodies == ["in flight at the move", "queued 0", "queued 1", "queued 2"]
        await asyncio.sleep(0.5)
        assert len(twilio.requests) == 4  # the failed one stays failed
        listed = await asyncio.to_thread(bridge.cli, "messages", "--json")
        assert listed.returncode == 0, listed.stderr
        states = {m["id"]: m["state"] for m in json.loads(listed.stdout)}
        assert states[ids["failed"]] == "failed"
        assert states[ids["first_queued"]] == "sent" and states[ids["in_flight"]] == "sent"
        shown = await asyncio.to_thread(bridge.cli, "show", str(ids["in_flight"]))
        assert "taken over" in shown.stdout or "resumed after restart" in shown.stdout
