"""The benchmark's processes: the bridge (``python -m bridge run``), the pjsua2 UAS, the local
carrier, sipp; and what /proc says about a process (CPU time, resident memory).

Everything listens on 127.0.0.1 with ports picked free at run time.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.ports import free_port

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")

TWILIO_SID = "AC" + "b" * 32
TWILIO_TOKEN = "bench-twilio-auth-token-0123456789"  # a local stand-in, not a credential
# HTTP Basic with the account SID and auth token, as twilio-python authenticates
TWILIO_BASIC = "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
DID = "+15551230001"
REMOTE = "+12025550123"  # a valid US number: routing refuses numbers of no country
EXTENSION = "1001"  # receives the SMS -> phone texts
# Phone -> SMS texts come from this many extensions of the trunk in turn, as from a PBX (one
# extension sending everything would only measure its toll-fraud counters).
SENDERS = [str(2000 + i) for i in range(1000)]


# --- /proc ------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        return f.read().rsplit(")", 1)[1].split()  # from the state field on


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants (Kamailio's workers; a bridge's, if it forks)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(int(_stat(int(entry))[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its descendants, all threads included."""
    total = 0
    for p in tree_pids(pid):
        try:
            fields = _stat(p)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (peak resident set since start), in KiB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return out


def machine_busy(seconds: float = 2.0) -> float:
    """How busy the whole machine is, as % of all its cores (from /proc/stat): anything else
    running during the benchmark takes CPU from the bridge and its peers."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    return 100 * (busy1 - busy0) / max(1, total1 - total0)


@dataclass
class CpuWindow:
    """CPU used by a process between ``start()`` and ``stop()``, as % of one core."""

    pid: int
    wall0: float = 0.0
    cpu0: float = 0.0
    percent: float = 0.0
    seconds: float = 0.0  # CPU seconds used in the window

    def start(self) -> CpuWindow:
        self.wall0, self.cpu0 = time.monotonic(), cpu_seconds(self.pid)
        return self

    def stop(self) -> float:
        wall = time.monotonic() - self.wall0
        self.seconds = cpu_seconds(self.pid) - self.cpu0
        self.percent = 100 * self.seconds / wall if wall > 0 else 0.0
        return self.percent


# --- the bridge -------------------------------------------------------------------------------


def bridge_config(web_port: int, sip_port: int, uas_port: int, carrier_url: str,
                  durability: str) -> str:
    """Trunk mode, one Twilio provider, one DID ringing extension 1001 at the UAS. Defaults
    everywhere else (log level info, retry policy, concurrency), as an operator runs it."""
    return f"""
[bridge]
state_dir = "state"
public_url = "http://127.0.0.1:{web_port}"
log_level = "info"
durability = "{durability}"

[web]
port = {web_port}

[sip]
port = {sip_port}

[[accounts]]
name = "pbx"
mode = "trunk"
domain = "127.0.0.1"
pbx_uri = "sip:127.0.0.1:{uas_port}"
allowed_sources = ["127.0.0.1/32"]

[[providers]]
name = "twilio"
type = "twilio"
account_sid = "{TWILIO_SID}"
auth_token = {{ env = "BENCH_TWILIO_TOKEN" }}
api_base = "{carrier_url}"

[[numbers]]
number = "{DID}"
provider = "twilio"
deliver_to = ["{EXTENSION}"]

[[extensions]]
extension = "{EXTENSION}"
send = "allow"
caller_ids = ["{DID}"]
""" + "".join(_sender(ext) for ext in SENDERS)


def _sender(extension: str) -> str:
    # A whole run sends about 45 texts from each sender in two minutes: raise the per-minute
    # toll-fraud cap (30) above that; the checks still run for every text, as in production.
    return f"""
[[extensions]]
extension = "{extension}"
send = "allow"
caller_ids = ["{DID}"]
max_per_minute = 600
max_per_day = 50000
"""


class Bridge:
    """The bridge as a real process, in its own working directory (its state lives there)."""

    def __init__(self, workdir: Path, uas_port: int, carrier_url: str, durability: str,
                 python: str = sys.executable, wrap: list[str] | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.web_port, self.sip_port = free_port(), free_port()
        self.config = workdir / "bridge.toml"
        self.config.write_text(bridge_config(self.web_port, self.sip_port, uas_port,
                                             carrier_url, durability))
        self.python = python
        self.wrap = wrap or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "bridge.log"
        self.startup_seconds = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def db_path(self) -> Path:
        return self.workdir / "state" / "bridge.sqlite3"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> float:
        """Start and wait for /readyz; returns seconds from exec to ready."""
        env = {**os.environ, "BENCH_TWILIO_TOKEN": TWILIO_TOKEN, "PYTHONPATH": str(REPO)}
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [*self.wrap, self.python, "-m", "bridge", "run", "--config", str(self.config)],
            cwd=self.workdir, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bridge exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        self.startup_seconds = time.monotonic() - t0
                        return self.startup_seconds
            except OSError:
                pass
            time.sleep(0.01)
        self.stop()
        raise TimeoutError(f"bridge not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --- peers ------------------------------------------------------------------------------------


class Uas:
    """bench/uas.py in a subprocess: a pjsua2 UAS that records arrivals, or a UAC blaster."""

    def __init__(self, port: int = 0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.uas", "--port", str(port)], cwd=REPO,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, encoding="utf-8",
        )
        self.events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()
        self.port = int(self.wait("ready", 15)["port"])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                continue

    def wait(self, kind: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                raise TimeoutError(f"UAS: no {kind} event in {timeout}s")
            try:
                event = self.events.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if event.get("event") == kind:
                return event

    def command(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def count(self, prefix: str = "") -> int:
        self.command(cmd="count", prefix=prefix)
        return int(self.wait("count", 10)["n"])

    def dump(self) -> list[tuple[float, str]]:
        with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
            self.command(cmd="dump", path=tmp.name)
            self.wait("dumped", 30)
            return [(t, b) for t, b in json.loads(Path(tmp.name).read_text())]

    def blast(self, to: str, n: int, window: int) -> dict[str, Any]:
        self.command(cmd="blast", to=to, n=n, window=window)
        return self.wait("blast", 90)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.command(cmd="quit")
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


class Carrier:
    """bench/carrier.py in a subprocess."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.carrier"], cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.close()
            raise RuntimeError(f"carrier did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"
        self.messages_url = f"{self.url}/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"

    def count(self, prefix: str = "") -> int:
        query = urllib.parse.urlencode({"prefix": prefix})
        with urllib.request.urlopen(f"{self.url}/_bench/count?{query}", timeout=10) as resp:
            return int(json.loads(resp.read())["n"])

    def dump(self) -> list[tuple[float, str]]:
        with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
            req = urllib.request.Request(f"{self.url}/_bench/dump?path={tmp.name}", b"",
                                         method="POST")
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()
            return [(t, b) for t, b in json.loads(Path(tmp.name).read_text())]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class SippResult:
    calls: int
    successful: int
    failed: int
    retransmissions: int
    returncode: int


def run_sipp(target: str, *, count: int, rate: int, tag: str, timeout: float = 60,
             transport: str = "u1") -> SippResult:
    """sipp UAC: ``count`` MESSAGEs to REMOTE at ``rate`` per second, from the SENDERS in
    turn, over one UDP socket (``u1``) or one TCP connection (``t1``), as a PBX trunk."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-sipp-"))
    stats = workdir / "stats.csv"
    senders = workdir / "senders.csv"
    senders.write_text("SEQUENTIAL\n" + "".join(f"{s};\n" for s in SENDERS))
    args = ["sipp", "-sf", str(BENCH / "sipp" / "message_ts.xml"), target,
            "-i", "127.0.0.1", "-p", str(free_port()), "-m", str(count), "-r", str(rate),
            "-rp", "1000", "-l", str(max(1000, rate * 4)), "-nostdin", "-t", transport,
            "-timeout", f"{int(timeout)}s", "-max_recv_loops", "5000", "-max_sched_loops",
            "5000", "-inf", str(senders), "-key", "to", REMOTE, "-key", "tag", tag,
            "-trace_stat", "-stf", str(stats), "-fd", "1"]
    try:
        proc = subprocess.run(args, cwd=workdir, capture_output=True, text=True,
                              timeout=timeout + 30)
        row = _last_csv_row(stats)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return SippResult(
        calls=int(row.get("TotalCallCreated", 0)),
        successful=int(row.get("SuccessfulCall(C)", 0)),
        failed=int(row.get("FailedCall(C)", 0)),
        retransmissions=int(row.get("Retransmissions(C)", 0)),
        returncode=proc.returncode,
    )


def _last_csv_row(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < 2:
        return {}
    header = lines[0].rstrip(";").split(";")
    values = lines[-1].rstrip(";").split(";")
    return dict(zip(header, values, strict=False))
