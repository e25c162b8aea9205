"""The do-it-yourself peer: the Kamailio configurations an admin would script instead of the
bridge (bench/peer/*.cfg.in), filled in and started against the benchmark's own carrier and
phone stand-ins, so the bridge is measured against them in the same run.

- ``PhoneToSmsPeer``: sipp -> Kamailio (``http_client``) -> the carrier (Twilio's API).
- ``SmsToPhonePeer``: webhooks -> Kamailio (``xhttp`` + ``uac_req_send``) -> the pjsua2 UAS.

Each is several processes (Kamailio forks its workers): CPU is the whole process tree's,
memory the sum of its processes' proportional set size (shared memory counted once).
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

from bench.procs import (
    BENCH,
    DID,
    EXTENSION,
    TWILIO_SID,
    TWILIO_TOKEN,
    free_port,
    tree_pids,
)

TEMPLATES = BENCH / "peer"
KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
CHILDREN = 4
# Kamailio's default shared memory (64 MiB) runs out under load: uac_req_send then fails
# inside the event route, which has already been told to answer 200, so texts vanish.
SHM_MIB = 1024


class DiyPeer:
    """One Kamailio, started from a template in bench/peer/ in its own working directory."""

    template = ""

    def __init__(self, workdir: Path, shm_mib: int = SHM_MIB, children: int = CHILDREN) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.shm_mib = shm_mib
        self.children = children
        self.sip_port = free_port()
        self.ctl = workdir / "ctl.sock"
        self.log = workdir / "kamailio.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._rss_peak = 0.0
        self._sampling = threading.Event()

    def values(self) -> dict[str, str]:
        return {"SIP_PORT": str(self.sip_port), "MPATH": KAMAILIO_MODULES,
                "CTL_SOCKET": str(self.ctl), "CHILDREN": str(self.children)}

    def config(self) -> str:
        text = (TEMPLATES / self.template).read_text()
        for key, value in self.values().items():
            text = text.replace(f"@@{key}@@", value)
        left = re.findall(r"@@\w+@@", text)
        if left:
            raise ValueError(f"{self.template}: unfilled {left}")
        return text

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 15.0) -> float:
        cfg = self.workdir / "kamailio.cfg"
        cfg.write_text(self.config())
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            ["kamailio", "-f", str(cfg), "-DD", "-E", "-m", str(self.shm_mib), "-M", "8",
             "-Y", str(self.workdir), "-w", str(self.workdir)],
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
        while time.monotonic() < t0 + timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kamailio exited:\n{self.log.read_text()[-3000:]}")
            if self.ready():
                threading.Thread(target=self._sample_memory, daemon=True).start()
                return time.monotonic() - t0
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"kamailio not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def ready(self) -> bool:
        return self.rpc("core.uptime") is not None

    def rpc(self, *command: str) -> str | None:
        try:
            out = subprocess.run(["kamcmd", "-s", f"unix:{self.ctl}", *command],
                                 capture_output=True, text=True, timeout=5)
        except subprocess.TimeoutExpired:
            return None
        return out.stdout if out.returncode == 0 else None

    def shm_mib_used(self) -> tuple[float, float]:
        """Shared memory (used now, most ever used) in MiB, from Kamailio's own counters."""
        out = self.rpc("core.shmmem") or ""
        fields = dict(re.findall(r"(\w+):\s*(\d+)", out))
        return (int(fields.get("real_used", 0)) / 2**20, int(fields.get("max_used", 0)) / 2**20)

    def _sample_memory(self) -> None:
        """The peak of the summed PSS of all Kamailio processes, sampled every 0.2 s (no one
        kernel counter holds a process tree's peak)."""
        while not self._sampling.wait(0.2):
            try:
                self._rss_peak = max(self._rss_peak, pss_mib(self.pid))
            except (OSError, AssertionError):
                return

    @property
    def peak_rss_mib(self) -> float:
        return max(self._rss_peak, pss_mib(self.pid))

    def stop(self) -> None:
        self._sampling.set()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.workdir / "tmp", ignore_errors=True)


def pss_mib(pid: int) -> float:
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/smaps_rollup", encoding="ascii") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total / 1024


class PhoneToSmsPeer(DiyPeer):
    """MESSAGEs on ``sip_port`` become POSTs to the carrier's Messages API."""

    template = "phone_to_sms.cfg.in"

    def __init__(self, workdir: Path, carrier_url: str, **kw: int) -> None:
        super().__init__(workdir, **kw)
        host = urllib.parse.urlsplit(carrier_url).netloc
        # credentials in the connection URL: http_client sends them as HTTP Basic
        self.carrier_base = (f"http://{TWILIO_SID}:{TWILIO_TOKEN}@{host}"
                             f"/2010-04-01/Accounts/{TWILIO_SID}")

    def values(self) -> dict[str, str]:
        return {**super().values(), "CARRIER_BASE": self.carrier_base,
                "FROM": urllib.parse.quote(DID, safe="")}


class SmsToPhonePeer(DiyPeer):
    """Webhooks on ``url`` become MESSAGEs to the phone at ``phone_port``."""

    template = "sms_to_phone.cfg.in"

    def __init__(self, workdir: Path, phone_port: int, **kw: int) -> None:
        super().__init__(workdir, **kw)
        self.http_port = free_port()
        self.phone_uri = f"sip:{EXTENSION}@127.0.0.1:{phone_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def values(self) -> dict[str, str]:
        return {**super().values(), "HTTP_PORT": str(self.http_port), "DID": DID,
                "PHONE_URI": self.phone_uri}

    def ready(self) -> bool:
        if not super().ready():
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.http_port), timeout=0.5):
                return True
        except OSError:
            return False
