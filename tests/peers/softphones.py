"""Drivers for two softphones that are not ours, from Debian: baresip (``baresip-core``) and
linphonec (``linphone-cli``).

Each runs in a fresh temporary directory (its config, accounts and, for linphone, a private
HOME and XDG directories), registers with a Kamailio fixture over UDP on 127.0.0.1 with digest
auth, sends texts to a number through Kamailio, and records the texts it receives from its
console output. Nothing global is read or written; every wait is bounded.

- baresip 1.0: commands over its ``ctrl_tcp`` module (netstring-framed JSON:
  ``{"command", "params", "token"}``). Its ``message`` command (``contact`` module) texts
  only the *current contact*, and contacts are read only at start: the numbers it may text
  are given up front (see ``Baresip.send``). The ``menu`` module shows a received MESSAGE as
  ``<peer-uri>: "<body>"`` after a carriage return, but only through a UI module:
  ``stdio`` must be loaded (on a pipe it warns that it cannot set up the terminal, and
  works). ``net_interface`` takes
  ``127.0.0.1`` (not ``lo``) to keep it on loopback.
- linphonec 5.1: commands on stdin (``chat <sip-uri> <text>``: the text is everything after
  the URI, no quoting); received texts are printed as ``Message received from <from>:
  <text>``; registration shows only in ``proxy list``. It needs its data directory
  (``$XDG_DATA_HOME/linphone``) to exist, or it cannot open its message database and
  crashes on the first chat. Its default IMDN policy stays on: it answers every text it
  receives with a delivery notification (``message/imdn+xml``, deflated, in CPIM).
- Both write their console through stdio buffers, which a pipe makes block-buffered:
  they run under ``stdbuf -oL`` so each line is seen when it is printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tests.peers.harness import free_port, wait_until

ANSI = re.compile(r"\x1b\[[0-9;]*m")
BARESIP_MODULES = "/usr/lib/baresip/modules"


@dataclass(frozen=True)
class Received:
    """A text a softphone showed: who it says it is from, and the text."""

    sender: str
    body: str


class _ConsolePhone:
    """A softphone process whose console output is read line by line on a thread."""

    name = "softphone"

    def __init__(self, ext: str, password: str, kamailio_port: int) -> None:
        self.ext = ext
        self.password = password
        self.kamailio_port = kamailio_port
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-{ext}-"))
        self.output: list[str] = []
        self.messages: list[Received] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _spawn(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            args, cwd=self.dir, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = ANSI.sub("", raw.decode("utf-8", errors="replace")).rstrip("\r\n")
            line = line.rsplit("\r", 1)[-1]  # baresip starts some lines with a bare CR
            with self._lock:
                self.output.append(line)
            received = self._parse_received(line)
            if received is not None:
                with self._lock:
                    self.messages.append(received)

    def _parse_received(self, line: str) -> Received | None:
        raise NotImplementedError

    def log_text(self) -> str:
        with self._lock:
            return "\n".join(self.output)

    def _wait_output(self, pattern: str, timeout: float, what: str) -> re.Match[str]:
        regex = re.compile(pattern)

        def found() -> re.Match[str] | None:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} {self.ext} exited ({self.proc.returncode}):\n"
                                   f"{self.log_text()[-3000:]}")
            with self._lock:
                lines = list(self.output)
            return next((m for m in map(regex.search, lines) if m), None)

        try:
            return wait_until(found, timeout, interval=0.1, what=f"{self.name} {what}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; output:\n{self.log_text()[-3000:]}") from None

    def wait_message(self, body: str, timeout: float = 20.0) -> Received:
        """The received text whose body is ``body``."""
        def found() -> Received | None:
            with self._lock:
                return next((m for m in self.messages if m.body == body), None)

        try:
            return wait_until(found, timeout, interval=0.1,
                              what=f"{body!r} at {self.name} {self.ext}")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; got {self.messages}; output:\n"
                               f"{self.log_text()[-3000:]}") from None

    def number_uri(self, number: str) -> str:
        return f"sip:{number}@127.0.0.1:{self.kamailio_port}"

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._quit()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def _quit(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)


class Baresip(_ConsolePhone):
    """baresip 1.0 registered as ``ext`` with Kamailio on 127.0.0.1:``kamailio_port``."""

    name = "baresip"
    # menu's incoming-MESSAGE line: <peer URI>: "<body>"
    RECEIVED = re.compile(r'^(sips?:\S+): "(.*)"$')

    def __init__(self, ext: str, password: str, kamailio_port: int,
                 numbers: tuple[str, ...] = (), timeout: float = 15.0) -> None:
        super().__init__(ext, password, kamailio_port)
        self.numbers = numbers  # the numbers it can text (its contacts)
        self.ctrl_port = free_port()
        self.sip_port = free_port()
        (self.dir / "config").write_text("\n".join([
            "poll_method\tepoll",
            f"sip_listen\t127.0.0.1:{self.sip_port}",
            "net_interface\t127.0.0.1",
            f"module_path\t{BARESIP_MODULES}",
            # commands come over ctrl_tcp, but a UI module must be loaded for received texts
            # to be shown at all (menu prints them through ui_output): stdio, on a pipe
            "module\tstdio.so",
            "module_app\taccount.so",
            "module_app\tcontact.so",
            "module_app\tmenu.so",
            "module_app\tctrl_tcp.so",
            f"ctrl_tcp_listen\t127.0.0.1:{self.ctrl_port}",
            # no audio device is needed to text; point them at nothing real
            "audio_player\taufile,/dev/null",
            "audio_source\taufile,/dev/null",
            "audio_alert\taufile,/dev/null",
            "",
        ]))
        (self.dir / "accounts").write_text(
            f"<sip:{ext}@127.0.0.1:{kamailio_port};transport=udp>"
            f";auth_pass={password};regint=60\n")
        (self.dir / "contacts").write_text(
            "".join(f'"{n}" <{self.number_uri(n)}>\n' for n in numbers))
        self._ctrl: socket.socket | None = None
        self._token = 0
        try:
            self._spawn(["stdbuf", "-oL", "baresip", "-f", str(self.dir)], env=self._env())
            self._wait_output(rf"{ext}@127\.0\.0\.1: \{{0/UDP/v4\}} 200 OK", timeout,
                              "registration")
            self._ctrl = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=5)
        except BaseException:
            self.close()
            raise

    def _env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.dir)}

    def _parse_received(self, line: str) -> Received | None:
        match = self.RECEIVED.match(line)
        return Received(match[1], match[2]) if match else None

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict:
        """One ctrl_tcp command; its JSON response (``{"response": true, "ok": ...}``)."""
        assert self._ctrl is not None
        self._token += 1
        token = str(self._token)
        data = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._ctrl.sendall(str(len(data)).encode() + b":" + data + b",")
        deadline = time.monotonic() + timeout
        buffer = b""
        while time.monotonic() < deadline:
            while b":" in buffer:
                length, _, rest = buffer.partition(b":")
                size = int(length)
                if len(rest) < size + 1:
                    break
                frame, buffer = json.loads(rest[:size]), rest[size + 1:]
                if frame.get("response") and frame.get("token") == token:
                    return frame
            self._ctrl.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self._ctrl.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise RuntimeError("baresip closed its control connection")
            buffer += chunk
        raise TimeoutError(f"baresip: no answer to {command!r} in {timeout}s")

    def send(self, number: str, text: str) -> None:
        """Text ``number`` through Kamailio. baresip 1.0 messages only its *current contact*
        and reads its contacts at start only: step through them with ``contact_next`` until
        ``number`` is current (bounded by their count)."""
        uri = self.number_uri(number)
        if number not in self.numbers:
            raise ValueError(f"baresip knows only the numbers it started with: {self.numbers}")
        for _ in range(len(self.numbers)):
            if f"<{uri}>" in self.command("contact_next").get("data", ""):
                break
        else:
            raise RuntimeError(f"baresip cannot make {uri} its current contact")
        answer = self.command("message", text)
        if not answer.get("ok"):
            raise RuntimeError(f"baresip could not send: {answer}")

    def _quit(self) -> None:
        if self._ctrl is not None:
            with contextlib.suppress(OSError, TimeoutError, RuntimeError):
                self.command("quit", timeout=2)
            self._ctrl.close()
            self._ctrl = None
        else:
            super()._quit()


class Linphone(_ConsolePhone):
    """linphonec 5.1 registered as ``ext`` with Kamailio on 127.0.0.1:``kamailio_port``, in a
    private HOME and XDG directories, with its default IMDN policy."""

    name = "linphone"
    RECEIVED = re.compile(r"Message received from (.*?): (.*)$")

    def __init__(self, ext: str, password: str, kamailio_port: int,
                 timeout: float = 15.0) -> None:
        super().__init__(ext, password, kamailio_port)
        self.sip_port = free_port()
        home = self.dir / "home"
        self.xdg = {"HOME": home, "XDG_CONFIG_HOME": home / ".config",
                    "XDG_DATA_HOME": home / ".local" / "share",
                    "XDG_CACHE_HOME": home / ".cache", "XDG_RUNTIME_DIR": self.dir / "run"}
        for path in self.xdg.values():
            path.mkdir(parents=True, exist_ok=True)
        (home / ".local" / "share" / "linphone").mkdir()  # its message database goes here
        self.rc = self.dir / "linphonerc"
        self.rc.write_text(f"""\
[sip]
sip_port={self.sip_port}
sip_tcp_port=-1
sip_tls_port=-1
bind_address=127.0.0.1
default_proxy=0

[net]
ipv6=0

[proxy_0]
reg_proxy=<sip:127.0.0.1:{kamailio_port};transport=udp>
reg_identity=sip:{ext}@127.0.0.1
reg_expires=60
reg_sendregister=1
publish=0

[auth_info_0]
username={ext}
passwd={password}
realm=kamailio.test
domain=127.0.0.1
""")
        env = {**os.environ, **{k: str(v) for k, v in self.xdg.items()}}
        env.pop("DISPLAY", None)
        try:
            self._spawn(["stdbuf", "-oL", "linphonec", "-c", str(self.rc)], env=env)
            deadline = time.monotonic() + timeout
            while True:  # linphonec has no registration event line: ask until it says so
                self.write("proxy list")
                try:
                    self._wait_output(r"^registered: yes", 0.5, "registration")
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise
        except BaseException:
            self.close()
            raise

    def _parse_received(self, line: str) -> Received | None:
        match = self.RECEIVED.search(line)
        return Received(match[1], match[2]) if match else None

    def write(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def send(self, number: str, text: str) -> None:
        """Text ``number`` through Kamailio (linphonec's ``chat <uri> <text>``)."""
        self.write(f"chat {self.number_uri(number)} {text}")

    def _quit(self) -> None:
        try:
            self.write("quit")
        except OSError:
            super()._quit()
