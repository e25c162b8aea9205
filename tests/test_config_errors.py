"""Every config and start-up failure is one line naming the file, the place and what to do,
with exit status 2: never a traceback. Each case runs the real command (``run`` starts the
real daemon, which fails where it should)."""

from __future__ import annotations

import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.store import Store
from tests.peers.harness import free_port

REPO = Path(__file__).resolve().parent.parent


def config(state: Path, web_port: int, sip_port: int) -> str:
    return f"""
[bridge]
state_dir = "{state}"
[web]
port = {web_port}
[sip]
port = {sip_port}
transports = ["udp", "tcp"]
[[accounts]]
name = "main"
domain = "127.0.0.1"
allowed_sources = ["127.0.0.1"]
[[providers]]
name = "sandbox"
type = "sandbox"
"""


def cli(*args: str, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "bridge", *args], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, **(env or {})},
                          timeout=timeout)


def one_line_failure(out: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit status 2, no traceback, and one line on stderr holding every needle."""
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    text = out.stdout + out.stderr
    assert "Traceback" not in text
    # the daemon's own log lines before the failure (INFO: "web server listening") aside
    lines = [line for line in out.stderr.splitlines()
             if line.strip() and not re.search(r" (DEBUG|INFO|WARNING) ", line)]
    assert len(lines) == 1, out.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def setup(tmp_path):
    state = tmp_path / "state"
    path = tmp_path / "bridge.toml"
    path.write_text(config(state, free_port(), free_port()))
    return path, state


@pytest.mark.parametrize("command", ["check-config", "run", "messages"])
def test_a_byte_that_is_not_utf8(setup, command):
    path, _ = setup
    path.write_bytes(b"# caf\xe9\n" + path.read_bytes())
    one_line_failure(cli(command, "--config", str(path)), str(path), "line 1",
                     "0xe9 is not UTF-8", "save the file as UTF-8")


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_an_array_nested_3000_deep(setup, command):
    path, _ = setup
    path.write_text(path.read_text().replace(
        "[web]", "[web]\ntrusted_proxies = " + "[" * 3000 + "]" * 3000))
    one_line_failure(cli(command, "--config", str(path)), str(path), "nested 3000 deep")


@pytest.mark.parametrize("command", ["check-config", "run", "messages"])
def test_invalid_json_in_a_complex_environment_override(setup, command):
    path, _ = setup
    if command == "messages":  # messages reads only [bridge]: break that section's override
        env = {"SIP_SMS_BRIDGE_BRIDGE": "x"}
        needle = "$SIP_SMS_BRIDGE_BRIDGE is not valid JSON"
    else:
        env = {"SIP_SMS_BRIDGE_WEB": "x"}
        needle = "$SIP_SMS_BRIDGE_WEB is not valid JSON"
    one_line_failure(cli(command, "--config", str(path), env=env), str(path), needle,
                     "SIP_SMS_BRIDGE_")


@pytest.mark.parametrize("command", [("run",), ("messages",), ("show", "1")])
def test_a_corrupt_database(setup, command):
    path, state = setup
    state.mkdir()
    (state / "bridge.sqlite3").write_bytes(b"this is not a database" * 500)
    line = one_line_failure(cli(*command, "--config", str(path)),
                            str(state / "bridge.sqlite3"), "restore it from a backup")
    assert "not a usable bridge database" in line


@pytest.mark.parametrize("command", [("run",), ("messages",), ("show", "1")])
def test_a_database_from_a_newer_version(setup, command):
    path, state = setup
    store = Store(state / "bridge.sqlite3")
    store.open_sync()
    store.close_sync()
    with sqlite3.connect(state / "bridge.sqlite3") as db:
        db.execute("INSERT INTO schema_version VALUES (999)")
    one_line_failure(cli(*command, "--config", str(path)), str(state / "bridge.sqlite3"),
                     "newer than this program knows", "upgrade sip-sms-bridge")


@pytest.mark.parametrize("kind", ["udp", "tcp"])
def test_the_sip_port_in_use(tmp_path, kind):
    sip_port = free_port()
    path = tmp_path / "bridge.toml"
    path.write_text(config(tmp_path / "state", free_port(), sip_port))
    with socket.socket(socket.AF_INET,
                       socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", sip_port))
        if kind == "tcp":
            squatter.listen()
        out = cli("run", "--config", str(path))
    one_line_failure(out, str(path), "sip.port", f"127.0.0.1 port {sip_port} ({kind.upper()})",
                     "in use by another program")


def test_the_web_port_in_use(tmp_path):
    web_port = free_port()
    path = tmp_path / "bridge.toml"
    path.write_text(config(tmp_path / "state", web_port, free_port()))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", web_port))
        squatter.listen()
        out = cli("run", "--config", str(path))
    one_line_failure(out, str(path), "web.port", f"port {web_port} (HTTP)",
                     "in use by another program")
