"""Real peers for end-to-end tests: Kamailio, pjsua2 phones, sipp, and the bridge process.

Everything listens on 127.0.0.1 with ports picked free at run time.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.ports import free_port

PEERS = Path(__file__).parent
REPO = PEERS.parent.parent
KAMAILIO_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"


def sip_ping(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Send an OPTIONS over UDP; True if anything answers."""
    call_id = uuid.uuid4().hex
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        local = sock.getsockname()[1]
        request = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{local};branch=z9hG4bK{call_id[:10]};rport\r\n"
            f"From: <sip:ping@{host}>;tag=1\r\nTo: <sip:{host}:{port}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 5\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.settimeout(timeout)
        sock.sendto(request.encode(), (host, port))
        try:
            sock.recvfrom(4096)
            return True
        except OSError:
            return False


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class Kamailio:
    """A Kamailio registrar/proxy with digest auth. ``users``: name -> password.
    ``routes``: extension -> the bridge user its numbers are relayed to (default "sms").
    ``rejects``: extensions that answer every MESSAGE with 603 Decline. ``single_contact``:
    users kept to one registered contact (the latest REGISTER replaces the others)."""

    def __init__(self, users: dict[str, str], routes: dict[str, str] | None = None,
                 rejects: Iterable[str] = (), single_contact: Iterable[str] = ()) -> None:
        self.users = users
        self.routes = routes or {}
        self.rejects = list(rejects)
        self.single_contact = list(single_contact)  # users whose new registration replaces
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="kamailio-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "kamailio.log"

    def _config(self) -> str:
        lines = [f'    $sht(users=>{u}) = "{p}";' for u, p in self.users.items()]
        lines += [f'    $sht(routes=>{e}) = "{b}";' for e, b in self.routes.items()]
        lines += [f'    $sht(reject=>{e}) = "1";' for e in self.rejects]
        lines += [f'    $sht(single=>{u}) = "1";' for u in self.single_contact]
        template = (PEERS / "kamailio.cfg.in").read_text()
        return (template.replace("@@PORT@@", str(self.port))
                .replace("@@MPATH@@", KAMAILIO_MODULES)
                .replace("@@USERS@@", "\n".join(lines)))

    def start(self) -> Kamailio:
        cfg = self.dir / "kamailio.cfg"
        cfg.write_text(self._config())
        self.proc = subprocess.Popen(
            ["kamailio", "-f", str(cfg), "-DD", "-E", "-m", "32", "-M", "4",
             "-Y", str(self.dir), "-w", str(self.dir)],
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            wait_until(lambda: self.proc.poll() is not None or sip_ping(self.port), 15,
                       what="kamailio")
        except TimeoutError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise RuntimeError(f"kamailio exited: {self.log.read_text()[-2000:]}")
        return self

    @property
    def uri(self) -> str:
        return f"sip:127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Phone:
    """A pjsua2 phone in a subprocess (tests/peers/phone.py)."""

    def __init__(self, ext: str, *, password: str | None = None,
                 registrar: str | None = None, port: int = 0, expires: int = 120,
                 tls: bool = False) -> None:
        args = [sys.executable, "-m", "tests.peers.phone", "--ext", ext, "--port", str(port),
                "--expires", str(expires)]
        if tls:
            args.append("--tls")
        if registrar:
            args += ["--registrar", registrar, "--password", password or ""]
        self.ext = ext
        self.proc = subprocess.Popen(args, cwd=REPO, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, encoding="utf-8")
        self.events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.messages: list[dict[str, Any]] = []
        self._seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.port = self.wait("ready", timeout=10)["port"]
        if registrar:
            event = self.wait("registered", timeout=10)
            if not event["active"]:
                raise RuntimeError(f"phone {ext} could not register: {event}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "message":
                self.messages.append(event)
            self.events.put(event)

    def wait(self, kind: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        for i, event in enumerate(self._seen):
            if event["event"] == kind and all(event.get(k) == v for k, v in match.items()):
                return self._seen.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"phone {self.ext}: no {kind} {match} in {timeout}s")
            try:
                event = self.events.get(timeout=remaining)
            except queue.Empty:
                continue
            if event["event"] == kind and all(event.get(k) == v for k, v in match.items()):
                return event
            self._seen.append(event)

    def wait_messages(self, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        wait_until(lambda: len(self.messages) >= count, timeout,
                   what=f"{count} messages at phone {self.ext}")
        return self.messages

    def command(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def send(self, to: str, body: str, content_type: str = "text/plain",
             wait: bool = True, timeout: float = 40.0) -> int | None:
        """Send a MESSAGE; the final status code, or None if none came within ``timeout``
        (or ``wait`` is off)."""
        ident = uuid.uuid4().hex
        self.command(cmd="send", id=ident, to=to, body=body, content_type=content_type)
        if not wait:
            return None
        try:
            return int(self.wait("status", timeout=timeout, id=ident)["code"])
        except TimeoutError:
            return None

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.command(cmd="quit")
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


class BridgeProcess:
    """The bridge as a real process (``python -m bridge run``) on a config written here."""

    def __init__(self, workdir: Path, config: str, env: dict[str, str] | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.workdir = workdir
        self.config_path = workdir / "bridge.toml"
        self.config_path.write_text(config)
        self.env = {**os.environ, **(env or {})}
        self.log = workdir / "bridge.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.web_port = 0
        self.ssl_context = ssl_context  # set: the web server speaks HTTPS

    def start(self, web_port: int, ready_timeout: float = 20.0) -> BridgeProcess:
        self.web_port = web_port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "run", "--config", str(self.config_path)],
            cwd=self.workdir, env=self.env, stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"bridge exited:\n{self.log_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=1,
                                            context=self.ssl_context) as resp:
                    return resp.status == 200
            except OSError:
                return False

        wait_until(ready, ready_timeout, interval=0.1, what="bridge /readyz")
        return self

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.web_port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bridge", *args, "--config", str(self.config_path)],
            cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=60,
        )

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                self.kill()


def run_sipp(scenario: Path, target: str, *, bind: str = "127.0.0.1", count: int = 1,
             rate: int = 10, extra: Iterable[str] = (), timeout: float = 60,
             keys: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a sipp UAC scenario to completion."""
    args = ["sipp", "-sf", str(scenario), target, "-i", bind, "-p", str(free_port(bind)),
            "-m", str(count), "-r", str(rate), "-nostdin", "-timeout", f"{int(timeout)}s",
            "-trace_err", "-max_recv_loops", "1000"]
    for key, value in (keys or {}).items():
        args += ["-key", key, value]
    args += list(extra)
    workdir = tempfile.mkdtemp(prefix="sipp-")
    try:
        return subprocess.run(args, cwd=workdir, capture_output=True, text=True,
                              timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        # keep the failure short: the arguments may hold a large body
        return subprocess.CompletedProcess(args[:3], -1, "", "sipp timed out")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
