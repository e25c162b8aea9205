"""Running the bridge in production: the systemd unit, the sd_notify protocol (READY,
WATCHDOG, STOPPING), Prometheus metrics after a known traffic mix, the admin API, the CLI's
operator commands, and JSON logs. All against real peers: the bridge as a process, Kamailio,
pjsua2 phones, a local Twilio-speaking carrier, webhooks signed by Twilio's SDK."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bridge.store import Store, StoredMessage
from tests.carrier_server import CannedResponse, CarrierServer, RecordedRequest
from tests.peers import configs
from tests.peers.harness import REPO, BridgeProcess, Kamailio, Phone, free_port, wait_until
from tests.peers.twilio import inbound_params, post_twilio_webhook, stored

UNIT = REPO / "systemd" / "sip-sms-bridge.service"
DASHBOARD = REPO / "config" / "grafana-dashboard.json"
DID = "+15551230001"
HELD_DID = "+15551230002"  # its texts go to extension 1003, which never registers
REMOTE = "+15557654321"
OTHER = "+15550001111"
ADMIN_TOKEN = "ops-test-admin-token-5f3a9c0d1e"
SANDBOX = '\n[[providers]]\nname = "sandbox"\ntype = "sandbox"\n'
BRIDGE = [sys.executable, "-m", "bridge"]


def admin_section(token: str = ADMIN_TOKEN) -> str:
    return f'\n[admin]\ntoken = "{token}"\n'


# --- systemd ---------------------------------------------------------------------------------


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """The shipped unit, with only ExecStart's program swapped for an executable that exists
    here, verifies without a single warning."""
    text = UNIT.read_text()
    (exec_line,) = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    program = exec_line.removeprefix("ExecStart=").split()[0]
    assert program == "/opt/sip-sms-bridge/bin/sip-sms-bridge"
    assert "\nType=notify\n" in text and "\nWatchdogSec=" in text

    def verify(unit_text: str) -> subprocess.CompletedProcess[str]:
        unit = tmp_path / "sip-sms-bridge.service"
        unit.write_text(unit_text)
        return subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                              text=True, timeout=60)

    result = verify(text.replace(f"ExecStart={program}", "ExecStart=/bin/true", 1))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    # the check has teeth: the same unit with its real (here absent) program is refused
    unshipped = verify(text)
    assert unshipped.returncode != 0 and "not executable" in unshipped.stderr


# --- sd_notify -------------------------------------------------------------------------------


class NotifySocket:
    """The systemd side of sd_notify: a unix datagram socket the bridge writes to."""

    def __init__(self) -> None:
        # AF_UNIX paths are limited to 108 bytes: pytest's tmp_path can be longer.
        self.dir = Path(tempfile.mkdtemp(prefix="notify-"))
        self.path = self.dir / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.settimeout(0.1)
        self.received: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received.append((time.monotonic(), data.decode()))

    def messages(self, since: float = 0.0) -> list[str]:
        return [m for at, m in list(self.received) if at >= since]

    def first(self, message: str) -> float | None:
        return next((at for at, m in list(self.received) if m == message), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def test_sd_notify_ready_after_registration_then_watchdog_and_stopping(tmp_path, peers):
    """The PBX is frozen (SIGSTOP) while the bridge starts: the bridge serves /healthz but does
    not say READY=1. Once Kamailio runs again it answers the REGISTER retransmissions, and
    READY=1 follows; WATCHDOG=1 keeps coming at a third of WATCHDOG_USEC; SIGTERM brings
    STOPPING=1 and exit code 0."""
    notify = NotifySocket()
    kam = Kamailio({"sms": configs.PBX_PASSWORD}).start()
    peers.append(kam)
    assert kam.proc is not None
    os.killpg(kam.proc.pid, signal.SIGSTOP)
    try:
        web_port = free_port()
        config = (configs.base(web_port, free_port()) + configs.registered_account(kam.port)
                  + SANDBOX)
        bridge = BridgeProcess(tmp_path, config, env={
            **configs.ENV, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "200000"})
        peers.append(bridge)
        bridge.web_port = web_port
        bridge.proc = subprocess.Popen(
            [*BRIDGE, "run", "--config", str(bridge.config_path)], cwd=tmp_path,
            env=bridge.env, stdout=bridge.log.open("ab"), stderr=subprocess.STDOUT)

        wait_until(lambda: http_status(f"{bridge.url}/healthz") == 200, 15, what="/healthz")
        time.sleep(0.5)
        assert http_status(f"{bridge.url}/readyz") == 503  # not registered: not ready
        assert notify.messages() == []

        os.killpg(kam.proc.pid, signal.SIGCONT)
        kam_up = time.monotonic()
        wait_until(lambda: notify.first("READY=1"), 15, what="READY=1")
        ready_at = notify.first("READY=1")
        assert ready_at is not None and ready_at > kam_up
        assert http_status(f"{bridge.url}/readyz") == 200
        assert not any(m.startswith("STATUS=waiting") for m in notify.messages())
        log = bridge.log_text()
        assert log.index("account pbx registered") < log.index("sip-sms-bridge ready")

        window = time.monotonic()
        time.sleep(1.0)
        pings = [m for m in notify.messages(since=window) if m == "WATCHDOG=1"]
        assert 8 <= len(pings) <= 40  # every ~67 ms

        assert bridge.proc is not None
        bridge.proc.send_signal(signal.SIGTERM)
        assert bridge.proc.wait(20) == 0
        stopping = notify.first("STOPPING=1")
        assert stopping is not None and stopping > ready_at
    finally:
        os.killpg(kam.proc.pid, signal.SIGCONT)  # so that the cleanup can stop it
        notify.close()


# --- metrics ---------------------------------------------------------------------------------


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(bridge: BridgeProcess) -> tuple[Samples, dict[str, str]]:
    with urllib.request.urlopen(f"{bridge.url}/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, types


def metric(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def wait_for_metrics(bridge: BridgeProcess, ready: Callable[[Samples], bool],
                           timeout: float = 15.0) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        samples, _ = await asyncio.to_thread(scrape, bridge)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.2)


async def test_metrics_count_a_known_traffic_mix(tmp_path, peers):
    """3 texts out through Twilio (the first attempt gets a 503 and is retried), 1 refused
    (1002 may not send), 2 in to 1001, 1 in held for 1003 (offline), 1 webhook with a bad
    signature, 2 delivery reports (delivered, undelivered): /metrics says exactly that."""
    async with CarrierServer() as twilio:
        sids: list[str] = []

        def respond(req: RecordedRequest) -> CannedResponse:
            if not sids and len(twilio.requests) == 1:
                return CannedResponse(503, {"code": 20503, "message": "Service Unavailable"})
            sids.append(f"SM{len(sids) + 1:032d}")
            return CannedResponse(201, {"sid": sids[-1], "status": "queued"})

        twilio.responder = respond
        kam = Kamailio({"sms": configs.PBX_PASSWORD, "1001": "pw1001",
                        "1002": "pw1002"}).start()
        peers.append(kam)
        web_port = free_port()
        config = (configs.base(web_port, free_port()) + configs.registered_account(kam.port)
                  + configs.twilio_provider(twilio.url)
                  + configs.number(DID, "twilio", ["1001"])
                  + configs.number(HELD_DID, "twilio", ["1003"])
                  + configs.extension("1001", [DID]) + configs.extension("1002", [], "deny"))
        bridge = BridgeProcess(tmp_path, config, env=configs.ENV)
        peers.append(bridge)
        await asyncio.to_thread(bridge.start, web_port)
        alice = await asyncio.to_thread(Phone, "1001", password="pw1001", registrar=kam.uri)
        peers.append(alice)
        bob = await asyncio.to_thread(Phone, "1002", password="pw1002", registrar=kam.uri)
        peers.append(bob)
        to_remote = f"sip:{REMOTE}@127.0.0.1:{kam.port}"

        for i in range(3):
            assert await asyncio.to_thread(alice.send, to_remote, f"out {i}") == 200
        assert await asyncio.to_thread(bob.send, to_remote, "not allowed") == 200
        await asyncio.to_thread(bob.wait_messages, 1)  # the refusal notice
        for i in range(2):
            params = inbound_params(f"SM{i:031d}a", f"in {i}")
            assert await post_twilio_webhook(bridge, params) == 200
        held = inbound_params("SM" + "h" * 32, "for 1003", to=HELD_DID)
        assert await post_twilio_webhook(bridge, held) == 200
        forged = inbound_params("SM" + "f" * 32, "forged")
        assert await post_twilio_webhook(bridge, forged, token="not-the-token") == 403

        async def all_sent() -> None:
            while len([m for m in stored(bridge) if m["state"] == "sent"]) < 3:
                await asyncio.sleep(0.2)

        await asyncio.wait_for(all_sent(), 15)
        for sid, status in ((sids[0], "delivered"), (sids[1], "undelivered")):
            report = {"MessageSid": sid, "MessageStatus": status, "AccountSid":
                      configs.TWILIO_SID, "From": DID, "To": REMOTE}
            if status == "undelivered":
                report["ErrorCode"] = "30003"
            assert await post_twilio_webhook(bridge, report) == 200
        await asyncio.to_thread(alice.wait_messages, 3)  # 2 texts + the failure notice

        def settled(s: Samples) -> bool:
            return (metric(s, "sip_sms_bridge_messages_total", direction="in",
                           provider="none", state="delivered") >= 2
                    and metric(s, "sip_sms_bridge_retries_total", direction="in") >= 1)

        s = await wait_for_metrics(bridge, settled)
        _, types = await asyncio.to_thread(scrape, bridge)

        def messages(direction: str, provider: str, state: str) -> float:
            return metric(s, "sip_sms_bridge_messages_total", direction=direction,
                          provider=provider, state=state)

        assert messages("out", "twilio", "sent") == 3
        assert messages("out", "twilio", "delivered") == 1
        assert messages("out", "twilio", "failed") == 1
        assert messages("out", "none", "rejected") == 1
        assert messages("in", "twilio", "delivered") == 2
        assert messages("in", "none", "delivered") == 2  # refusal and failure notices
        assert sum(v for (name, _), v in s.items()
                   if name == "sip_sms_bridge_messages_total") == 10
        assert metric(s, "sip_sms_bridge_failures_total", direction="out", provider="none",
                      reason="refused") == 1
        assert metric(s, "sip_sms_bridge_failures_total", direction="out", provider="twilio",
                      reason="carrier_report") == 1
        assert metric(s, "sip_sms_bridge_webhook_auth_failures_total", provider="twilio") == 1
        assert metric(s, "sip_sms_bridge_retries_total", direction="out") == 1
        assert metric(s, "sip_sms_bridge_carrier_request_seconds_count", provider="twilio") == 4
        assert len(twilio.requests) == 4
        retries_in = metric(s, "sip_sms_bridge_retries_total", direction="in")
        sip_sends = metric(s, "sip_sms_bridge_sip_send_seconds_count")
        # 2 texts and 2 notices delivered, plus each attempt at the offline 1003 (one may be
        # under way, timed but not yet counted as a retry)
        assert sip_sends - 4 in (retries_in, retries_in + 1)
        assert metric(s, "sip_sms_bridge_queue_depth", direction="in") == 1
        assert metric(s, "sip_sms_bridge_queue_depth", direction="out") == 0
        assert 0 < metric(s, "sip_sms_bridge_queue_oldest_age_seconds", direction="in") < 60
        assert metric(s, "sip_sms_bridge_queue_oldest_age_seconds", direction="out") == 0
        assert metric(s, "sip_sms_bridge_registration_up", account="pbx") == 1
        assert types["sip_sms_bridge_messages"] == "counter"
        assert types["sip_sms_bridge_carrier_request_seconds"] == "histogram"
        assert types["sip_sms_bridge_queue_depth"] == "gauge"

        # the shipped Grafana dashboard asks only for series the bridge exports
        dashboard = json.loads(DASHBOARD.read_text())
        exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
        wanted = {name for e in exprs for name in re.findall(r"sip_sms_bridge_\w+", e)}
        exported = {name for name, _ in s}
        assert len(exprs) >= 15 and wanted and wanted <= exported, wanted - exported


# --- admin API and CLI -----------------------------------------------------------------------


def admin_post(bridge: BridgeProcess, path: str, body: bytes = b"{}",
               headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"{bridge.url}{path}", data=body, method="POST",
                                     headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, {"raw": raw.decode(errors="replace")}


async def wait_state(db: Store, message_id: int, state: str) -> StoredMessage:
    """Read the daemon's database directly (WAL lets a reader in): polling through the CLI
    would cost a process start each time."""

    async def poll() -> StoredMessage:
        while True:
            message = await db.get(message_id)
            if message is not None and message.state == state:
                return message
            await asyncio.sleep(0.1)

    return await asyncio.wait_for(poll(), 15)


async def test_operator_commands_against_a_running_daemon(tmp_path, peers):
    """send (allowed and refused), retry (failed -> sent; wrong state; unknown id), show,
    messages with each filter and --json, segments; the admin API's locks; JSON logs that
    carry the message id; clear errors when the API is off or the daemon is down. No secret
    appears in any output."""
    async with CarrierServer() as twilio:
        carrier_up = False

        def respond(req: RecordedRequest) -> CannedResponse:
            if not carrier_up:
                return CannedResponse(400, {"code": 21211, "message":
                                            "The 'To' number is not a valid phone number."})
            return CannedResponse(201, {"sid": "SM" + "c" * 32, "status": "queued"})

        twilio.responder = respond
        kam = Kamailio({"sms": configs.PBX_PASSWORD, "1001": "pw1001"}).start()
        peers.append(kam)
        web_port = free_port()
        config = (configs.base(web_port, free_port()).replace(
                      'log_level = "debug"', 'log_level = "info"\nlog_format = "json"')
                  + admin_section() + configs.registered_account(kam.port)
                  + configs.twilio_provider(twilio.url) + configs.number(DID, "twilio", ["1001"])
                  + configs.extension("1001", [DID]) + configs.extension("1002", [], "deny"))
        bridge = BridgeProcess(tmp_path, config, env=configs.ENV)
        peers.append(bridge)
        await asyncio.to_thread(bridge.start, web_port)
        phone = await asyncio.to_thread(Phone, "1001", password="pw1001", registrar=kam.uri)
        peers.append(phone)
        outputs: list[str] = []

        async def cli(*args: str) -> subprocess.CompletedProcess[str]:
            result = await asyncio.to_thread(bridge.cli, *args)
            outputs.extend([result.stdout, result.stderr])
            return result

        # send: goes out through the carrier, which refuses it permanently -> failed
        db = Store(tmp_path / "state" / "bridge.sqlite3")
        db.open_sync()
        sent = await cli("send", "--from", "1001", "--to", REMOTE, "hello", "from", "the", "CLI")
        assert sent.returncode == 0, sent.stderr
        assert sent.stdout.startswith("message 1 queued")
        failed = await wait_state(db, 1, "failed")
        assert failed.last_error is not None and failed.last_error.startswith("twilio: ")
        assert dict(twilio.requests[0].form())["Body"] == "hello from the CLI"

        # the same permission path as the phone: 1002 may not send; stored as rejected
        refused = await cli("send", "--from", "1002", "--to", REMOTE, "let me out")
        assert refused.returncode == 1
        assert "not sent: extension 1002 is not allowed to send SMS" in refused.stderr
        good = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"}
        unknown = json.dumps({"from": "1001", "to": REMOTE, "text": "x", "account": "nope"})
        assert await asyncio.to_thread(admin_post, bridge, "/admin/send", unknown.encode(),
                                       good) == (400, {"error": "there is no account named "
                                                                "'nope'"})

        assert await post_twilio_webhook(
            bridge, inbound_params("SM" + "9" * 32, "inbound one", sender=OTHER)) == 200
        await asyncio.to_thread(phone.wait_messages, 2)  # the failure notice and the text

        # retry: the carrier is fixed, the failed text goes out
        carrier_up = True
        retried = await cli("retry", "1")
        assert retried.returncode == 0, retried.stderr
        assert "message 1 queued again" in retried.stdout
        await wait_state(db, 1, "sent")
        db.close_sync()
        assert len(twilio.requests) == 2
        assert await asyncio.to_thread(admin_post, bridge, "/admin/messages/999/retry",
                                       b"", good) == (404, {"error": "there is no message 999"})

        # read-only commands, run side by side (each is a process start)
        (again, show, everything, of_1001, from_other, table, nothing, seg) = (
            await asyncio.gather(
                cli("retry", "1"),
                cli("show", "1"),
                cli("messages", "--since", "1", "--json"),
                cli("messages", "--extension", "1001", "--json"),
                cli("messages", "--number", OTHER, "--json"),
                cli("messages", "--state", "rejected"),
                cli("messages", "--since", "0.000001", "--json"),
                asyncio.to_thread(subprocess.run, [*BRIDGE, "segments", "Ça va? 👋" * 9],
                                  capture_output=True, text=True, timeout=30, cwd=REPO),
            ))
        assert again.returncode == 1 and "message 1 is sent: only failed or queued" in (
            again.stderr)

        # show: the whole story of message 1
        assert show.returncode == 0
        assert "message 1: text from extension 1001 to " + REMOTE in show.stdout
        assert "state sent" in show.stdout
        for step in ("submitted through the admin API", "failed", "queued again by the operator",
                     "accepted by twilio"):
            assert step in show.stdout, step

        # messages: the filters, JSON and the table
        rows = {m["id"]: (m["direction"], m["kind"], m["extension"], m["state"], m["body"])
                for m in json.loads(everything.stdout)}
        assert rows == {
            1: ("out", "text", "1001", "sent", "hello from the CLI"),
            2: ("in", "notice", "1001", "delivered", rows[2][4]),
            3: ("out", "text", "1002", "rejected", "let me out"),
            4: ("in", "text", "1001", "delivered", "inbound one"),
        }
        assert rows[2][4].startswith(f"SMS to {REMOTE} failed: twilio: ")
        assert [m["id"] for m in json.loads(of_1001.stdout)] == [4, 2, 1]  # newest first
        assert [m["id"] for m in json.loads(from_other.stdout)] == [4]
        assert json.loads(nothing.stdout) == []
        (line,) = table.stdout.splitlines()
        assert line.split()[:2] == ["3", time.strftime("%Y-%m-%d")]
        assert "1002 -> " + REMOTE in line and "rejected" in line

        # segments needs neither a config nor a daemon: 9 x 8 characters, one not GSM-7
        assert seg.returncode == 0, seg.stderr
        assert seg.stdout.splitlines()[:2] == [
            "UCS-2, 2 segments (81 UTF-16 code units; 67 per segment)",
            "why: '👋' is not in the GSM-7 alphabet, so the whole text is sent as UCS-2"]

        # the admin API's locks
        assert (await asyncio.to_thread(admin_post, bridge, "/admin/messages/1/retry"))[0] == 401
        wrong = {**good, "Authorization": "Bearer " + "x" * len(ADMIN_TOKEN)}
        assert (await asyncio.to_thread(
            admin_post, bridge, "/admin/messages/1/retry", b"{}", wrong))[0] == 401
        proxied = {**good, "X-Forwarded-For": "203.0.113.9"}
        assert (await asyncio.to_thread(
            admin_post, bridge, "/admin/send", b"{}", proxied))[0] == 404
        status, answer = await asyncio.to_thread(admin_post, bridge, "/admin/send", b"[", good)
        assert (status, answer) == (400, {"error": "the body must be a JSON object"})
        status, answer = await asyncio.to_thread(
            admin_post, bridge, "/admin/send", json.dumps({"from": "1001"}).encode(), good)
        assert status == 400 and "to, text" in answer["error"]

        # JSON logs: every line the bridge's logging wrote parses, and carries the message id
        entries = [json.loads(line) for line in bridge.log_text().splitlines()
                   if line.startswith("{")]
        assert entries and all({"time", "level", "logger", "message"} <= set(e) for e in entries)
        assert any(e.get("message_id") == 1 and "queued again" in e["message"] for e in entries)

        # a config without [admin] token: the CLI says what to do
        no_admin = tmp_path / "no-admin.toml"
        no_admin.write_text(config.replace(admin_section(), ""))
        off = await asyncio.to_thread(
            subprocess.run, [*BRIDGE, "retry", "1", "--config", str(no_admin)],
            capture_output=True, text=True, timeout=30, cwd=tmp_path, env=bridge.env)
        outputs.extend([off.stdout, off.stderr])
        assert off.returncode == 1 and "the admin API is off: set [admin] token" in off.stderr

        # the daemon down: the CLI says so
        assert await asyncio.to_thread(bridge.terminate) == 0
        down = await cli("retry", "1")
        assert down.returncode == 1 and "the bridge is not running" in down.stderr

        for secret in (ADMIN_TOKEN, configs.TWILIO_TOKEN, configs.PBX_PASSWORD):
            assert not any(secret in out for out in outputs)
            assert secret not in bridge.log_text()
