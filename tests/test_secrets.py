"""Secrets never reach any output, in any form: distinctive values are planted inline, in an
environment variable, in a file and as a systemd credential; a carrier stand-in echoes the
``Authorization`` header it got (``Basic base64(account_sid:auth_token)``), the token
URL-encoded and base64-encoded, in its error; then the log, every CLI command's output,
``show``, ``messages --json``, the stored history and the notice the phone gets are searched
for each secret and each derived form of it."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from urllib.parse import quote, quote_plus

from tests.carrier_server import CannedResponse, CarrierServer, RecordedRequest
from tests.peers import configs
from tests.peers.harness import BridgeProcess, Phone, free_port, run_sipp
from tests.rawhttp import exchange, request_bytes

SIPP = Path(__file__).parent / "peers" / "sipp"
DID = "+15551230001"
REMOTE = "+15557654321"
SID = configs.TWILIO_SID
ENV_TOKEN = "envTok/7f3a+9c2e=51d8 4b06"  # characters that URL- and base64-encode differently
FILE_TOKEN = "fileTok-a1b2c3d4e5f60718"
CREDENTIAL_TOKEN = "credTok-0f1e2d3c4b5a6978"
INLINE_SECRET = "inlineTok-9a8b7c6d5e4f3021"
URL_TOKEN = "inlineUrlTok-1234567890ab"
SECRETS = (ENV_TOKEN, FILE_TOKEN, CREDENTIAL_TOKEN, INLINE_SECRET, URL_TOKEN)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def derived_forms(secret: str) -> list[str]:
    forms = [secret, b64(secret), quote(secret, safe=""), quote_plus(secret),
             secret.encode().hex(), json.dumps(secret)[1:-1],
             base64.urlsafe_b64encode(secret.encode()).decode()]
    if secret == ENV_TOKEN:
        forms.append(b64(f"{SID}:{secret}"))  # the Basic credentials built from it
    return forms


def echo_authorization(request: RecordedRequest) -> CannedResponse:
    auth = request.headers.get("Authorization", "")
    return CannedResponse(401, {"code": 20003, "message": (
        f"Authenticate: got {auth}; token={quote(ENV_TOKEN, safe='')}; b64={b64(ENV_TOKEN)}")})


def secrets_config(web_port: int, sip_port: int, pbx_port: int, carrier_url: str,
                   token_file: Path) -> str:
    return (configs.base(web_port, sip_port)
            + configs.trunk_account(pbx_port)
            + f"""
[admin]
token = {{ file = "{token_file}" }}

[media]
upload_token = {{ credential = "upload-token" }}
"""
            + configs.twilio_provider(carrier_url)  # auth_token = { env = "TWILIO_AUTH_TOKEN" }
            + configs.flowroute_provider(carrier_url, secret_key=f'"{INLINE_SECRET}"',
                                         webhook_token=f'"{URL_TOKEN}"')
            + configs.number(DID, "twilio", ["1001"])
            + configs.number("+15551230003", "flowroute", ["1001"])
            + configs.extension("1001", [DID]))


async def test_no_secret_or_derived_form_reaches_any_output(tmp_path, peers):
    token_file = tmp_path / "admin-token"
    token_file.write_text(FILE_TOKEN + "\n")
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "upload-token").write_text(CREDENTIAL_TOKEN)
    env = {"TWILIO_AUTH_TOKEN": ENV_TOKEN, "CREDENTIALS_DIRECTORY": str(credentials)}
    async with CarrierServer() as carrier:
        carrier.responder = echo_authorization
        web_port, sip_port = free_port(), free_port()
        pbx = await asyncio.to_thread(Phone, "pbx")  # stands in for the PBX: gets notices
        peers.append(pbx)
        bridge = BridgeProcess(tmp_path, secrets_config(web_port, sip_port, pbx.port,
                                                        carrier.url, token_file), env=env)
        peers.append(bridge)
        await asyncio.to_thread(bridge.start, web_port)

        result = await asyncio.to_thread(
            run_sipp, SIPP / "message.xml", f"127.0.0.1:{sip_port}",
            keys={"from": "1001", "to": REMOTE, "ctype": "text/plain", "body": "leak?"})
        assert result.returncode == 0, result.stderr[-500:]
        (notice,) = await asyncio.to_thread(pbx.wait_messages, 1, 20)
        # the carrier really echoed the Basic credentials: the test would see a leak
        (sent,) = carrier.requests
        assert sent.headers["Authorization"] == f"Basic {b64(f'{SID}:{ENV_TOKEN}')}"
        assert "failed" in notice["body"] and "***" in notice["body"]

        outputs = {"notice": notice["body"]}
        # requests that name the URL token, right and wrong, and bearer tokens derived
        for path in (f"/webhooks/flowroute/{URL_TOKEN}", f"/webhooks/flowroute/{URL_TOKEN}x"):
            status, body = await asyncio.to_thread(exchange, web_port, request_bytes(
                "POST", path, [("Content-Type", "application/json")], b'{"data": 1}'))
            assert status == 400 if path.endswith(URL_TOKEN) else status == 403
            outputs[path] = body.decode(errors="replace")
        status, body = await asyncio.to_thread(exchange, web_port, request_bytes(
            "POST", "/admin/messages/1/retry", [("Authorization", f"Bearer {FILE_TOKEN}x")]))
        assert status == 401
        outputs["admin"] = body.decode()
        for command in (("check-config",), ("messages",), ("messages", "--json"),
                        ("show", "1"), ("webhook-urls",)):
            out = await asyncio.to_thread(bridge.cli, *command)
            assert out.returncode == 0, (command, out.stderr)
            outputs[" ".join(command)] = out.stdout + out.stderr
        # webhook-urls is the one place the URL token is printed: that is its job
        assert URL_TOKEN in outputs["webhook-urls"]
        outputs["webhook-urls"] = outputs["webhook-urls"].replace(URL_TOKEN, "")
        (text,) = [m for m in json.loads(outputs["messages --json"]) if m["kind"] == "text"]
        assert text["state"] == "failed" and "***" in text["last_error"]
        assert bridge.terminate() == 0
        outputs["log"] = bridge.log_text()
        database = b"".join(p.read_bytes() for p in (tmp_path / "state").glob("bridge.sqlite3*"))

    for secret in SECRETS:
        for form in derived_forms(secret):
            for where, text in outputs.items():
                assert form not in text, f"{secret[:7]}... as {form[:12]}... in {where}"
            assert form.encode() not in database, f"{secret[:7]}... in the database"
    assert "<webhook_token>" in outputs["log"] or URL_TOKEN not in outputs["log"]
