"""Hostile HTTP against the bridge as a real process: whatever arrives (bytes that are not
UTF-8, lone surrogates in signed JSON, Unicode digits, NULs, huge and nested values, clients
that go away mid-body, a thousand slow clients), the answer is never a 5xx, the log has no
traceback and no secret, and every text that was acknowledged is stored exactly once."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey
from twilio.request_validator import RequestValidator

from tests.peers import configs
from tests.peers.harness import BridgeProcess, free_port
from tests.rawhttp import cut_short, exchange, request_bytes

SANDBOX_DID = "+15551230002"
TELNYX_DID = "+15551230004"
REMOTE = "+15557654321"
FLOWROUTE_TOKEN = "flowroute-url-token-s3cr3t-77"
ADMIN_TOKEN = "admin-token-s3cr3t-0123456789"
TELNYX_KEY = SigningKey(bytes(range(32)))
SECRETS = (FLOWROUTE_TOKEN, ADMIN_TOKEN, configs.TWILIO_TOKEN, "flowroute-api-s3cr3t",
           "telnyx-api-key-s3cr3t")
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
PER_CLIENT = 50


def hostile_http_config(web_port: int, sip_port: int, pbx_port: int) -> str:
    public_key = base64.b64encode(bytes(TELNYX_KEY.verify_key)).decode()
    return (configs.base(web_port, sip_port, retry=30, max_retry=60,
                         web=f"max_body_bytes = 65536\nheader_timeout_seconds = {HEADER_TIMEOUT}\n"
                             f"body_timeout_seconds = {BODY_TIMEOUT}\nmax_connections = 900\n"
                             f"max_connections_per_client = {PER_CLIENT}")
            .replace('log_level = "debug"', 'log_level = "info"')
            + configs.trunk_account(pbx_port)
            + configs.twilio_provider("http://127.0.0.1:9")
            + f'\n[admin]\ntoken = "{ADMIN_TOKEN}"\n'
            + configs.sandbox_provider()
            + configs.flowroute_provider("http://127.0.0.1:9",
                                         secret_key='"flowroute-api-s3cr3t"',
                                         webhook_token=f'"{FLOWROUTE_TOKEN}"')
            + f"""
[[providers]]
name = "telnyx"
type = "telnyx"
api_key = "telnyx-api-key-s3cr3t"
public_key = "{public_key}"
api_base = "http://127.0.0.1:9"
"""
            + configs.number("+15551230001", "twilio", ["1001"])
            + configs.number(SANDBOX_DID, "sandbox", ["1001"])
            + configs.number("+15551230003", "flowroute", ["1001"])
            + configs.number(TELNYX_DID, "telnyx", ["1001"])
            + configs.extension("1001", ["+15551230001"]))


@pytest.fixture(scope="module")
def bridge(tmp_path_factory) -> Iterator[BridgeProcess]:
    web_port = free_port()
    process = BridgeProcess(tmp_path_factory.mktemp("hostile-http"),
                            hostile_http_config(web_port, free_port(), free_port()),
                            env=configs.ENV)
    process.start(web_port)
    yield process
    process.stop()


def stored(bridge: BridgeProcess) -> list[dict]:
    out = bridge.cli("messages", "--json", "--limit", "100000")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def assert_log_clean(bridge: BridgeProcess) -> str:
    log = bridge.log_text()
    assert "Traceback" not in log
    assert " ERROR " not in log, [line for line in log.splitlines() if " ERROR " in line][:3]
    for secret in SECRETS:
        assert secret not in log, f"secret {secret[:6]}... in the log"
    return log


def post(bridge: BridgeProcess, path: str, body: bytes, ctype: str = "application/json",
         headers: list[tuple[bytes | str, bytes | str]] = ()) -> tuple[int | None, bytes]:
    data = request_bytes("POST", path, [("Content-Type", ctype), *headers], body)
    return exchange(bridge.web_port, data)


def telnyx_body(message_id: str, text: str, sender: str = REMOTE) -> bytes:
    return json.dumps({"data": {"event_type": "message.received", "payload": {
        "id": message_id, "from": {"phone_number": sender},
        "to": [{"phone_number": TELNYX_DID}], "text": text}}}).encode()


def telnyx_headers(body: bytes) -> list[tuple[str, str]]:
    stamp = str(int(time.time()))
    signature = TELNYX_KEY.sign(f"{stamp}|".encode() + body).signature
    return [("Telnyx-Signature-Ed25519", base64.b64encode(signature).decode()),
            ("Telnyx-Timestamp", stamp)]


# --- the request line and headers ------------------------------------------------------------

UNDECODABLE = [
    # (what, raw request)
    ("a signature header byte that is not UTF-8",
     request_bytes("POST", "/webhooks/twilio", [("Content-Type",
                                                 "application/x-www-form-urlencoded"),
                                                ("X-Twilio-Signature", b"\xff")], b"A=1")),
    ("a bearer token byte that is not UTF-8",
     request_bytes("POST", "/admin/send", [("Authorization", b"Bearer \xff"),
                                           ("Content-Type", "application/json")], b"{}")),
    ("a path byte that is not UTF-8",
     request_bytes("POST", b"/webhooks/flowroute/\xff\xfe", [], b"{}")),
    ("a percent-encoded path byte that is not UTF-8",
     request_bytes("POST", "/webhooks/flowroute/%FF%FE", [], b"{}")),
    ("a query byte that is not UTF-8",
     request_bytes("GET", "/webhooks/twilio?From=%FF&Body=%ED%A0%80", [])),
    ("a NUL in a header", request_bytes("GET", "/healthz", [("X-Thing", b"a\x00b")])),
    ("an 8 KB request line", request_bytes("GET", "/webhooks/twilio?" + "a" * 8200, [])),
    ("200 headers", request_bytes("GET", "/healthz", [(f"X-H{i}", "v") for i in range(200)])),
    ("a header name with a control byte", request_bytes("GET", "/healthz", [(b"X\x01Y", "v")])),
    ("a bad token in a webhook URL with a bad header",
     request_bytes("POST", f"/webhooks/flowroute/{FLOWROUTE_TOKEN}x",
                   [("Content-Type", "application/json"), ("X-Bad", b"\xc3\x28")], b"{}")),
]


@pytest.mark.parametrize(("what", "raw"), UNDECODABLE, ids=[w for w, _ in UNDECODABLE])
def test_undecodable_requests_get_a_4xx_and_one_warning(bridge, what, raw):
    before = len(bridge.log_text().splitlines())
    status, body = exchange(bridge.web_port, raw)
    assert status is not None and 400 <= status < 500, (what, status, body)
    assert b"Traceback" not in body
    time.sleep(0.2)
    new = bridge.log_text().splitlines()[before:]
    assert any("WARNING" in line and "127.0.0.1" in line for line in new), new
    assert_log_clean(bridge)


# --- bodies: valid JSON that is not valid text, Unicode digits, overflowing ids ---------------

def test_lone_surrogates_in_signed_webhooks_are_refused_after_authentication(bridge):
    for body in (telnyx_body("tx-sur-1", "\ud800"), telnyx_body("\udfff-id", "hi"),
                 telnyx_body("tx-nul-1", "a\x00b")):
        assert post(bridge, "/webhooks/telnyx", body)[0] == 403  # unsigned: still 403 first
        status, _ = post(bridge, "/webhooks/telnyx", body, headers=telnyx_headers(body))
        assert status == 400, body
    status, _ = post(bridge, "/webhooks/sandbox", b'{"from": "%s", "to": "%s", "text": "\\ud83d"}'
                     % (REMOTE.encode(), SANDBOX_DID.encode()))
    assert status == 400
    good = telnyx_body("tx-good-1", "a real text \U0001f600")
    assert post(bridge, "/webhooks/telnyx", good, headers=telnyx_headers(good))[0] == 200
    texts = {m["carrier_id"]: m["body"] for m in stored(bridge)}
    assert texts.get("tx-good-1") == "a real text \U0001f600"
    assert not any(k.startswith(("tx-sur", "tx-nul")) or "\\udfff" in k for k in texts)
    assert_log_clean(bridge)


@pytest.mark.parametrize("digits", ["١٢٣٤٥", "１２３４５", "¹²³", "+１５５５７６５４３２１"])  # noqa: RUF001
def test_unicode_digits_are_not_numbers(bridge, digits):
    signer = RequestValidator(configs.TWILIO_TOKEN)
    params = {"MessageSid": "SM" + "9" * 32, "From": digits, "To": "+15551230001",
              "Body": "lookalike"}
    signature = signer.compute_signature(f"{bridge.url}/webhooks/twilio", params)
    status, _ = post(bridge, "/webhooks/twilio", urllib.parse.urlencode(params).encode(),
                     "application/x-www-form-urlencoded", [("X-Twilio-Signature", signature)])
    assert status == 400
    body = json.dumps({"from": digits, "to": SANDBOX_DID, "text": "lookalike"}).encode()
    assert post(bridge, "/webhooks/sandbox", body)[0] == 400
    assert not [m for m in stored(bridge) if m["body"] == "lookalike"]


def test_admin_api_refuses_bad_text_and_huge_ids_with_a_4xx(bridge):
    auth = [("Authorization", f"Bearer {ADMIN_TOKEN}")]
    for text in ("\ud800", "a\x00b"):
        body = json.dumps({"from": "1001", "to": REMOTE, "text": text}).encode()
        status, answer = post(bridge, "/admin/send", body, headers=auth)
        assert status == 400, answer
    for message_id in ("9" * 40, "1" + "0" * 19, "١٢", "-1"):
        status, answer = post(bridge, f"/admin/messages/{message_id}/retry", b"{}",
                              headers=auth)
        assert status in (400, 404), (message_id, status, answer)
    assert_log_clean(bridge)


# --- hypothesis: headers and bodies -----------------------------------------------------------

header_bytes = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
texts = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF,
                                       blacklist_categories=()), max_size=40)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | texts,
                           lambda c: st.lists(c, max_size=3)
                           | st.dictionaries(texts, c, max_size=3), max_leaves=12)
huge_texts = st.integers(min_value=1000, max_value=40000).map(lambda n: "é\U0001f600" * n)
numbers = st.just(REMOTE) | st.sampled_from([
    "١٢٣٤٥", "１２３４５", "¹²³", "12345", "+1555\x007654321",  # noqa: RUF001
    "\ud800", "x" * 300, "", "+" + "9" * 30])


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(["X-Twilio-Signature", "Authorization", "Telnyx-Timestamp",
                             "Content-Type", "X-Anything"]),
       value=header_bytes,
       path=st.sampled_from(["/webhooks/twilio", "/webhooks/telnyx", "/webhooks/sandbox",
                             f"/webhooks/flowroute/{FLOWROUTE_TOKEN}", "/admin/send",
                             "/admin/messages/1/retry", "/healthz", "/media/x/y",
                             "/upload/z"]),
       body=st.binary(max_size=200))
def test_fuzzed_headers_never_get_a_5xx(bridge, name, value, path, body):
    raw = request_bytes("POST", path, [(name, value)], body)
    status, answer = exchange(bridge.web_port, raw)
    assert status is None or status < 500, (status, answer)


ACKNOWLEDGED: dict[str, str] = {}


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=texts | huge_texts, sender=numbers, extra=json_values,
       nested=st.integers(min_value=0, max_value=3000), repeat=st.booleans())
def test_fuzzed_webhook_bodies_never_get_a_5xx_and_acknowledged_texts_are_stored(
        bridge, text, sender, extra, nested, repeat):
    message_id = f"fz-{len(ACKNOWLEDGED)}-{time.monotonic_ns()}"
    document = {"id": message_id, "from": sender, "to": SANDBOX_DID, "text": text,
                "extra": extra}
    body = json.dumps(document).encode()
    if nested:
        body = body[:-1] + b', "deep": ' + b"[" * nested + b"]" * nested + b"}"
    for _ in range(2 if repeat else 1):  # a carrier's retry: answered 200, stored once
        status, answer = post(bridge, "/webhooks/sandbox", body)
        assert status is not None and status < 500, (status, answer)
        if status == 200:
            ACKNOWLEDGED[message_id] = text


def test_every_acknowledged_fuzzed_text_is_stored_once(bridge):
    assert ACKNOWLEDGED, "the fuzzed bodies above acknowledged nothing: the test proves nothing"
    rows = [m for m in stored(bridge) if m["carrier_id"] and m["carrier_id"].startswith("fz-")]
    ids = [m["carrier_id"] for m in rows]
    assert len(ids) == len(set(ids))
    assert {m["carrier_id"]: m["body"] for m in rows} == ACKNOWLEDGED
    assert_log_clean(bridge)


# --- clients that go away, clients that are slow ----------------------------------------------

def test_clients_that_disconnect_mid_body_get_one_warning_and_no_token_in_the_log(bridge):
    before = len(bridge.log_text().splitlines())
    body = json.dumps({"data": {"id": "x", "type": "message"}}).encode() * 50
    for path in (f"/webhooks/flowroute/{FLOWROUTE_TOKEN}", "/webhooks/sandbox", "/admin/send"):
        raw = request_bytes("POST", path, [("Content-Type", "application/json")], body)
        for keep in (len(raw) - len(body) + 10, len(raw) - 5):
            cut_short(bridge.web_port, raw, keep)
    time.sleep(1.0)
    new = bridge.log_text().splitlines()[before:]
    gone = [line for line in new if "went away" in line]
    assert gone and all("WARNING" in line for line in gone), new
    # the address, unless the connection was reset before it was even accepted
    assert all("127.0.0.1" in line or "client unknown" in line for line in gone), gone
    assert any("127.0.0.1" in line for line in gone), gone
    assert any("/webhooks/flowroute/<webhook_token>" in line for line in gone), gone
    assert_log_clean(bridge)
    assert exchange(bridge.web_port, request_bytes("GET", "/healthz", []))[0] == 200


async def _slow_client(port: int, source: str, prefix: bytes, slowly: bytes, hold: float,
                       closed: list[float]) -> None:
    """Connect from ``source``, send ``prefix`` at once and then ``slowly`` one byte every
    0.5 s; record how long until the server closed the connection (nothing if it was still
    open after ``hold`` seconds)."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=(source, 0))
    except OSError:
        closed.append(0.0)
        return
    started = time.monotonic()
    try:
        async with asyncio.timeout(hold):
            writer.write(prefix)
            for i in range(len(slowly)):
                writer.write(slowly[i:i + 1])
                await writer.drain()
                try:
                    async with asyncio.timeout(0.5):
                        data = await reader.read(65536)
                except TimeoutError:
                    continue
                while data:  # an answer (408), then the close; or the close alone
                    data = await reader.read(65536)
                break
        closed.append(time.monotonic() - started)
    except TimeoutError:
        pass  # still open: the assertion on len(closed) catches it
    except ConnectionError:
        closed.append(time.monotonic() - started)
    finally:
        writer.close()


async def test_a_thousand_slow_clients_do_not_stop_valid_webhooks(bridge):
    sources = [f"127.0.0.{i}" for i in range(2, 12)]  # 10 addresses x 100 = 1,000 clients
    slow_headers = (b"POST /webhooks/sandbox HTTP/1.1\r\nHost: x\r\n", b"X-Slow: " + b"a" * 200)
    slow_body = (b"POST /webhooks/sandbox HTTP/1.1\r\nHost: x\r\nContent-Type: "
                 b"application/json\r\nContent-Length: 500\r\n\r\n", b" " * 200)
    closed: list[float] = []
    hold = HEADER_TIMEOUT + BODY_TIMEOUT + 20
    clients = [asyncio.create_task(_slow_client(
        bridge.web_port, sources[i % len(sources)], *(slow_body if i % 5 == 0 else slow_headers),
        hold, closed)) for i in range(1000)]
    await asyncio.sleep(1.0)  # all connected (or refused), none has finished a request

    answered = []
    for n in range(40):  # valid webhooks from another address keep being answered
        body = json.dumps({"id": f"during-slow-{n}", "from": REMOTE, "to": SANDBOX_DID,
                           "text": f"during slow clients {n}"}).encode()
        started = time.monotonic()
        status, _ = await asyncio.to_thread(post, bridge, "/webhooks/sandbox", body)
        answered.append((status, time.monotonic() - started))
    await asyncio.gather(*clients)

    assert [s for s, _ in answered] == [200] * 40
    print(f"valid webhooks during 1,000 slow clients: max {max(t for _, t in answered):.3f} s")
    # every slow client was either refused at once (over the per-address cap) or closed by
    # the server once its header or body time ran out: none held its socket
    assert len(closed) == 1000
    assert max(closed) < HEADER_TIMEOUT + BODY_TIMEOUT + 5, max(closed)
    refused = sum(1 for t in closed if t < 1.0)
    assert refused >= 1000 - PER_CLIENT * len(sources), refused
    rows = [m for m in stored(bridge) if (m["carrier_id"] or "").startswith("during-slow-")]
    assert len(rows) == 40
    log = assert_log_clean(bridge)
    assert f"refused: {PER_CLIENT} connections from this address" in log
    assert exchange(bridge.web_port, request_bytes("GET", "/healthz", []))[0] == 200


def test_no_5xx_was_ever_logged(bridge):
    log = assert_log_clean(bridge)
    assert "unhandled error" not in log
    assert Path(bridge.log).exists()
