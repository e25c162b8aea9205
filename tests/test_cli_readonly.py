"""The commands that only read the database (``messages``, ``show``) and ``segments`` work
when the config's secrets cannot be resolved (a shell without the daemon's environment or
credentials); ``check-config`` reports each unresolvable secret as a problem."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

from tests.peers import configs
from tests.peers.harness import BridgeProcess, free_port
from tests.rawhttp import exchange, request_bytes

SANDBOX_DID = "+15551230002"


def readonly_config(web_port: int, sip_port: int, pbx_port: int) -> str:
    return (configs.base(web_port, sip_port)
            + configs.trunk_account(pbx_port)
            + configs.twilio_provider("http://127.0.0.1:9")  # auth_token from $TWILIO_AUTH_TOKEN
            + '\n[admin]\ntoken = { credential = "admin-token" }\n'
            + configs.sandbox_provider()
            + configs.number(SANDBOX_DID, "sandbox", ["1001"]))


async def test_read_only_commands_need_no_secrets(tmp_path, peers):
    web_port = free_port()
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "admin-token").write_text("admin-token-0123456789abcdef")
    bridge = BridgeProcess(tmp_path, readonly_config(web_port, free_port(), free_port()),
                           env={**configs.ENV, "CREDENTIALS_DIRECTORY": str(credentials)})
    peers.append(bridge)
    await asyncio.to_thread(bridge.start, web_port)
    body = json.dumps({"id": "ro-1", "from": "+15557654321", "to": SANDBOX_DID,
                       "text": "read me without secrets"}).encode()
    status, _ = await asyncio.to_thread(exchange, web_port, request_bytes(
        "POST", "/webhooks/sandbox", [("Content-Type", "application/json")], body))
    assert status == 200
    assert bridge.terminate() == 0

    # an operator's shell: neither the daemon's environment nor its credentials
    env = {k: v for k, v in os.environ.items()
           if k not in ("TWILIO_AUTH_TOKEN", "CREDENTIALS_DIRECTORY")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bridge", *args], capture_output=True,
                              text=True, cwd=tmp_path, env=env, timeout=60)

    config = ["--config", str(bridge.config_path)]
    listed = cli("messages", "--json", *config)
    assert listed.returncode == 0, listed.stderr
    (message,) = json.loads(listed.stdout)
    assert message["body"] == "read me without secrets"
    shown = cli("show", str(message["id"]), *config)
    assert shown.returncode == 0, shown.stderr
    assert "read me without secrets" in shown.stdout
    assert cli("messages", *config).returncode == 0
    segments = cli("segments", "hello")
    assert segments.returncode == 0 and "GSM-7, 1 segment" in segments.stdout

    checked = cli("check-config", *config)
    assert checked.returncode == 2
    assert "Traceback" not in checked.stderr
    assert ("providers[twilio].auth_token: environment variable TWILIO_AUTH_TOKEN is not set"
            in checked.stderr), checked.stderr
    assert "admin.token: credential 'admin-token' needs $CREDENTIALS_DIRECTORY" in checked.stderr
    # commands that need the secrets still refuse, saying which
    run = cli("run", *config)
    assert run.returncode == 2 and "TWILIO_AUTH_TOKEN is not set" in run.stderr
