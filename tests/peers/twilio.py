"""Talking to the bridge as Twilio does in end-to-end tests: canned API answers, webhooks
signed with Twilio's official SDK, and the bridge's stored messages (its CLI)."""

from __future__ import annotations

import json

import aiohttp
from twilio.request_validator import RequestValidator

from tests.carrier_server import CannedResponse, RecordedRequest
from tests.peers import configs
from tests.peers.harness import BridgeProcess

DID = "+15551230001"
REMOTE = "+15557654321"


def twilio_ok(counter: list[int]):
    def respond(req: RecordedRequest) -> CannedResponse:
        counter[0] += 1
        return CannedResponse(201, {"sid": f"SM{counter[0]:032d}", "status": "queued"})
    return respond


async def post_twilio_webhook(bridge: BridgeProcess, params: dict[str, str],
                              token: str = configs.TWILIO_TOKEN,
                              signature: str | None = None) -> int:
    url = f"{bridge.url}/webhooks/twilio"
    if signature is None:
        signature = RequestValidator(token).compute_signature(url, params)
    headers = {"X-Twilio-Signature": signature} if signature else {}
    async with aiohttp.ClientSession() as session, session.post(
        url, data=params, headers=headers
    ) as resp:
        await resp.read()
        return resp.status


def inbound_params(sid: str, body: str, to: str = DID, sender: str = REMOTE) -> dict[str, str]:
    return {"MessageSid": sid, "SmsSid": sid, "AccountSid": configs.TWILIO_SID, "From": sender,
            "To": to, "Body": body, "NumMedia": "0", "NumSegments": "1",
            "SmsStatus": "received", "ApiVersion": "2010-04-01"}


def stored(bridge: BridgeProcess) -> list[dict]:
    result = bridge.cli("messages", "--json", "--limit", "1000")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
