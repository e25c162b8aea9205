"""MMS both ways, with real peers: Kamailio, pjsua2 phones, the bridge as a real process, local
carrier servers (Twilio's and Vonage's wire formats), webhooks signed with Twilio's SDK.
Plus the pure parts (bodies, file-transfer XML, file names) and the media store on its own
(real SQLite, real HTTP on loopback)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import os
import random
import re
import secrets
import struct
import time
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from bridge import fthttp
from bridge.media import MediaStore, describe_size, safe_filename
from bridge.providers.bandwidth import BandwidthProvider
from bridge.providers.base import MediaFetchError, MediaTooLarge
from bridge.providers.twilio import TwilioProvider
from bridge.settings import MediaSection
from bridge.sip.content import BodyError, parse_body, user_of
from bridge.sip.wire import split_message
from bridge.store import Store
from bridge.web.media import MediaRoutes
from tests.carrier_server import CannedResponse, CarrierServer, RecordedRequest
from tests.peers import configs
from tests.peers.harness import BridgeProcess, Kamailio, Phone, free_port

DID = "+15551230001"
DID_VONAGE = "+15551230002"
REMOTE = "+15557654321"
UPLOAD_TOKEN = "upload-token-0123456789abcdef"
MAX_BYTES = 1024  # small, so an "oversized" picture still fits in one SIP packet over UDP
FT_NS = "{urn:gsma:params:xml:ns:rcs:rcs:fthttp}"
LINK_RE = re.compile(r"http://127\.0\.0\.1:\d+/media/[A-Za-z0-9_-]{22}/\S+")


def png(side: int, seed: int) -> bytes:
    """A valid RGB PNG of noise (so it does not compress): about 3*side*side bytes."""
    rng = random.Random(seed)
    raw = b"".join(b"\0" + bytes(rng.getrandbits(8) for _ in range(side * 3))
                   for _ in range(side))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def multipart(text: str, ctype: str, data: bytes, name: str = "photo.png") -> tuple[str, str]:
    """A multipart/mixed MESSAGE body with a text part and a base64 file part (pjsua2's
    string API cannot carry raw binary intact)."""
    boundary = "bridge-test-" + secrets.token_hex(6)
    body = (f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
            f"--{boundary}\r\nContent-Type: {ctype}\r\nContent-Transfer-Encoding: base64\r\n"
            f'Content-Disposition: attachment; filename="{name}"\r\n\r\n'
            f"{base64.b64encode(data).decode()}\r\n--{boundary}--\r\n")
    return f'multipart/mixed; boundary="{boundary}"', body


def media_config(phone_format: str = "link") -> str:
    return f"""
[media]
max_bytes = {MAX_BYTES}
phone_format = "{phone_format}"
upload_token = "{UPLOAD_TOKEN}"
"""


def extension(ext: str, caller_ids: list[str], media_format: str | None = None) -> str:
    fmt = f'media_format = "{media_format}"\n' if media_format else ""
    ids = ", ".join(f'"{c}"' for c in caller_ids)
    return f"""
[[extensions]]
extension = "{ext}"
send = "allow"
caller_ids = [{ids}]
{fmt}"""


def vonage_provider(api_base: str) -> str:
    return f"""
[[providers]]
name = "vonage"
type = "vonage"
api = "sms"
api_key = "abcd1234"
api_secret = "vonage-api-secret"
webhook_token = "vonage-webhook-token-0123456789"
api_base = "{api_base}"
"""


async def post_twilio_webhook(bridge: BridgeProcess, params: dict[str, str]) -> int:
    url = f"{bridge.url}/webhooks/twilio"
    signature = RequestValidator(configs.TWILIO_TOKEN).compute_signature(url, params)
    async with aiohttp.ClientSession() as session, session.post(
        url, data=params, headers={"X-Twilio-Signature": signature}
    ) as resp:
        await resp.read()
        return resp.status


async def http_get(url: str) -> tuple[int, bytes, dict[str, str]]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.read(), dict(resp.headers)


def start_bridge(tmp_path: Path, peers: list, config: str, users: list[str]):
    kam = Kamailio({"sms": configs.PBX_PASSWORD, **{u: f"pw{u}" for u in users}}).start()
    peers.append(kam)
    web_port = free_port()
    bridge = BridgeProcess(tmp_path, configs.base(web_port, free_port())
                           + configs.registered_account(kam.port) + config, env=configs.ENV)
    peers.append(bridge)
    return kam, bridge, web_port


async def phone(peers: list, ext: str, kam: Kamailio) -> Phone:
    p = await asyncio.to_thread(Phone, ext, password=f"pw{ext}", registrar=kam.uri)
    peers.append(p)
    return p


# --- end to end ---------------------------------------------------------------------------


async def test_inbound_mms_as_link_and_as_rcs_file_transfer(tmp_path, peers):
    """A Twilio MMS (picture behind Basic auth, a zip, an oversized picture) reaches 1001 as
    text + link and 1002 as Linphone file-transfer XML + text; both links serve the very
    bytes; refused items become notes; a wrong token or name gets 404."""
    picture = png(12, 1)
    assert len(picture) < MAX_BYTES
    async with CarrierServer() as twilio:
        media_path = (f"/2010-04-01/Accounts/{configs.TWILIO_SID}/Messages/MM{'1' * 32}"
                      f"/Media/ME{'2' * 32}")
        auth = "Basic " + base64.b64encode(
            f"{configs.TWILIO_SID}:{configs.TWILIO_TOKEN}".encode()).decode()

        def respond(req: RecordedRequest) -> CannedResponse:
            if req.method == "GET" and req.path == media_path:
                if req.headers.get("Authorization") != auth:
                    return CannedResponse(401, {"message": "Authenticate"})
                return CannedResponse(200, picture, {"Content-Type": "image/png"})
            return CannedResponse(404, {"message": "not here"})

        twilio.responder = respond
        zip_url = twilio.host_file("/files/archive.zip", b"PK\x03\x04" + b"z" * 50,
                                   "application/zip")
        big_url = twilio.host_file("/files/big.jpg", b"\xff\xd8" + os.urandom(5000),
                                   "image/jpeg")
        kam, bridge, web_port = start_bridge(
            tmp_path, peers,
            configs.twilio_provider(twilio.url) + configs.number(DID, "twilio", ["1001", "1002"])
            + extension("1001", [DID]) + extension("1002", [DID], "rcs-ft") + media_config(),
            ["1001", "1002"])
        await asyncio.to_thread(bridge.start, web_port)
        link_phone, ft_phone = await phone(peers, "1001", kam), await phone(peers, "1002", kam)

        params = {"MessageSid": "MM" + "1" * 32, "AccountSid": configs.TWILIO_SID,
                  "From": REMOTE, "To": DID, "Body": "look at this", "NumMedia": "3",
                  "MediaUrl0": twilio.url + media_path, "MediaContentType0": "image/png",
                  "MediaUrl1": zip_url, "MediaContentType1": "application/zip",
                  "MediaUrl2": big_url, "MediaContentType2": "image/jpeg",
                  "SmsStatus": "received", "ApiVersion": "2010-04-01"}
        started = time.monotonic()
        assert await post_twilio_webhook(bridge, params) == 200
        assert time.monotonic() - started < 2  # downloads happen later, not in the webhook

        (text,) = await asyncio.to_thread(link_phone.wait_messages, 1)
        assert user_of(text["from"]) == REMOTE
        lines = text["body"].splitlines()
        assert lines[0] == "look at this"
        assert "application/zip are not accepted" in text["body"]
        assert "too large" in text["body"]
        (link,) = LINK_RE.findall(text["body"])
        assert lines[-1] == link and link.endswith(".png")
        status, body, headers = await http_get(link)
        assert (status, body) == (200, picture)
        assert headers["Content-Type"] == "image/png"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert any(r.method == "GET" and r.headers.get("Authorization") == auth
                   for r in twilio.requests)

        token, name = link.rsplit("/", 2)[-2:]
        wrong = secrets.token_urlsafe(16)
        for url in (link.replace(token, wrong), link.replace(name, "other.png"),
                    link.replace(token, "short")):
            assert (await http_get(url))[0] == 404

        xml_msg, caption = await asyncio.to_thread(ft_phone.wait_messages, 2)
        assert xml_msg["content_type"] == fthttp.CONTENT_TYPE
        root = ET.fromstring(xml_msg["body"])
        assert root.tag == FT_NS + "file"
        (info,) = root.findall(FT_NS + "file-info")
        assert info.get("type") == "file"
        assert info.findtext(FT_NS + "content-type") == "image/png"
        assert int(info.findtext(FT_NS + "file-size") or 0) == len(picture)
        data = info.find(FT_NS + "data")
        assert data is not None
        until = datetime.datetime.strptime(data.get("until", ""), "%Y-%m-%dT%H:%M:%SZ")
        assert until.replace(tzinfo=datetime.UTC).timestamp() > time.time() + 29 * 86400
        status, body, _ = await http_get(data.get("url", ""))
        assert (status, body) == (200, picture)
        assert caption["content_type"].startswith("text/plain")
        assert caption["body"].startswith("look at this\n[attachment not shown")
        assert not LINK_RE.search(caption["body"])


async def test_outbound_mms_from_multipart_and_from_upload(tmp_path, peers):
    """A phone's multipart/mixed picture, and a picture uploaded Linphone-style and sent as
    file-transfer XML, each reach the carrier as an MMS whose media URL serves the bytes. A
    carrier that cannot send MMS (Vonage SMS API) gets the text with the link instead."""
    first, second, third, fourth = png(10, 2), png(9, 3), png(8, 4), png(7, 6)
    async with CarrierServer() as carrier:
        sent = [0]

        def respond(req: RecordedRequest) -> CannedResponse:
            sent[0] += 1
            if req.path == "/sms/json":
                return CannedResponse(200, {"message-count": "1", "messages": [
                    {"message-id": f"V{sent[0]}", "status": "0"}]})
            return CannedResponse(201, {"sid": f"SM{sent[0]:032d}", "status": "queued"})

        carrier.responder = respond
        kam, bridge, web_port = start_bridge(
            tmp_path, peers,
            configs.twilio_provider(carrier.url) + vonage_provider(carrier.url)
            + configs.number(DID, "twilio", ["1001"])
            + configs.number(DID_VONAGE, "vonage", ["1002"])
            + extension("1001", [DID]) + extension("1002", [DID_VONAGE]) + media_config(),
            ["1001", "1002"])
        await asyncio.to_thread(bridge.start, web_port)
        sender, vonage_sender = await phone(peers, "1001", kam), await phone(peers, "1002", kam)
        to = f"sip:{REMOTE}@127.0.0.1:{kam.port}"

        ctype, body = multipart("a picture ✓", "image/png", first)
        assert await asyncio.to_thread(sender.send, to, body, ctype) == 200
        (req,) = await carrier.wait_for(1)
        form = req.form()
        assert dict(form)["Body"] == "a picture ✓"
        (media_url,) = [v for k, v in form if k == "MediaUrl"]
        assert media_url.startswith(f"{bridge.url}/media/") and media_url.endswith(".png")
        assert (await http_get(media_url))[:2] == (200, first)

        # Linphone's file-transfer server protocol: an empty POST, then the file
        upload = f"{bridge.url}/upload/{UPLOAD_TOKEN}"
        async with aiohttp.ClientSession() as session:
            async with session.post(upload) as resp:
                assert resp.status == 204
            form_data = aiohttp.FormData()
            form_data.add_field("File", second, filename="IMG_0001.png",
                                content_type="image/png")
            async with session.post(upload, data=form_data) as resp:
                assert resp.status == 200
                assert resp.content_type == fthttp.CONTENT_TYPE
                xml_body = await resp.text()
            async with session.post(f"{bridge.url}/upload/not-the-token", data=b"x") as resp:
                assert resp.status == 404
        (offered,) = fthttp.parse(xml_body.encode())
        assert (offered.name, offered.size, offered.content_type) == (
            "IMG_0001.png", len(second), "image/png")
        assert await asyncio.to_thread(sender.send, to, xml_body, fthttp.CONTENT_TYPE) == 200
        _, req = await carrier.wait_for(2)
        form = dict(req.form())
        assert form["MediaUrl"] == offered.url and form["Body"] == ""
        assert (await http_get(offered.url))[:2] == (200, second)

        ctype, body = multipart("via vonage", "image/png", third)
        assert await asyncio.to_thread(vonage_sender.send, to, body, ctype) == 200
        _, _, req = await carrier.wait_for(3)
        assert req.path == "/sms/json"
        text = dict(req.form())["text"]
        assert text.startswith("via vonage\n")
        (link,) = LINK_RE.findall(text)
        assert (await http_get(link))[:2] == (200, third)

        # a file on another file-transfer server is copied here, so the carrier gets our URL
        elsewhere = carrier.host_file("/ft/IMG_0002.png", fourth, "image/png")
        xml_body = fthttp.build(elsewhere, "IMG_0002.png", "image/png", len(fourth),
                                time.time() + 3600)
        assert await asyncio.to_thread(sender.send, to, xml_body, fthttp.CONTENT_TYPE) == 200
        *_, req = await carrier.wait_for(4)
        media_url = dict(req.form())["MediaUrl"]
        assert media_url.startswith(f"{bridge.url}/media/") and media_url.endswith(
            "/IMG_0002.png")
        assert (await http_get(media_url))[:2] == (200, fourth)
        assert sender.messages == [] and vonage_sender.messages == []  # no failure notices


async def test_oversized_or_disallowed_media_from_a_phone_is_refused(tmp_path, peers):
    big = png(20, 5)
    assert MAX_BYTES < len(big) < 1600  # too large for the bridge, small enough for UDP
    async with CarrierServer() as carrier:
        carrier.responder = lambda req: CannedResponse(201, {"sid": "SM" + "9" * 32})
        kam, bridge, web_port = start_bridge(
            tmp_path, peers, configs.twilio_provider(carrier.url)
            + configs.number(DID, "twilio", ["1001"]) + extension("1001", [DID])
            + media_config(), ["1001"])
        await asyncio.to_thread(bridge.start, web_port)
        sender = await phone(peers, "1001", kam)
        to = f"sip:{REMOTE}@127.0.0.1:{kam.port}"
        for ctype, body in (multipart("too big", "image/png", big),
                            multipart("a program", "application/x-msdownload", b"MZ" * 40,
                                      "setup.exe")):
            assert await asyncio.to_thread(sender.send, to, body, ctype) == 200
        notices = await asyncio.to_thread(sender.wait_messages, 2)
        assert sorted(n["body"] for n in notices) == [
            f"SMS to {REMOTE} not sent: files of type application/x-msdownload are not accepted",
            f"SMS to {REMOTE} not sent: the attachment is too large "
            f"({describe_size(len(big))}, at most 1.0 KB)",
        ]
        assert {user_of(n["from"]) for n in notices} == {REMOTE}
        await asyncio.sleep(0.5)
        assert carrier.requests == []


# --- the media store and its HTTP routes, in process ---------------------------------------


async def test_media_urls_expire_uploads_are_checked_and_retention_cleans_up(tmp_path):
    store = Store(tmp_path / "db.sqlite3")
    await store.open()
    settings = MediaSection(max_bytes=2048, max_disk_bytes=2500, retention_days=1,
                            upload_token=UPLOAD_TOKEN)
    app = web.Application()
    port = free_port()
    media = MediaStore(store, tmp_path / "media", settings, f"http://127.0.0.1:{port}")
    MediaRoutes(media, UPLOAD_TOKEN).add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        expired = await media.save(b"old" * 10, "image/png", "old.png", origin="phone", ttl=-1)
        live = await media.save(b"new" * 10, "image/png", "new.png", origin="phone")
        assert (await http_get(media.url(expired)))[0] == 404
        assert (await http_get(media.url(live)))[:2] == (200, b"new" * 10)

        upload = f"http://127.0.0.1:{port}/upload/{UPLOAD_TOKEN}"
        async with aiohttp.ClientSession() as session:
            for data, ctype, status in ((b"x" * 3000, "image/png", 413),
                                        (b"MZ", "application/x-msdownload", 415),
                                        (b"y" * 900, "image/jpeg", 200)):
                form = aiohttp.FormData()
                form.add_field("File", data, filename="f.bin", content_type=ctype)
                async with session.post(upload, data=form) as resp:
                    assert resp.status == status, ctype

        stray_old, stray_new = tmp_path / "media" / "stray-old", tmp_path / "media" / "new-one"
        stray_old.write_bytes(b"?")
        stray_new.write_bytes(b"?")
        os.utime(stray_old, (time.time() - 7200, time.time() - 7200))
        for _ in range(3):  # 3 x 1000 bytes: the oldest goes over the 2500-byte cap
            await media.save(os.urandom(1000), "image/jpeg", "p.jpg", origin="carrier")
        deleted = await media.cleanup()
        # newest first, 2 x 1000 fit under the cap; the expired one, the third 1000, the
        # 900-byte upload and "live" go, and so does the old file without a record
        assert not media.path(expired).exists() and not media.path(live).exists()
        assert not stray_old.exists() and stray_new.exists()
        left = [await media.get(t) for t in await store.media_tokens()]
        assert [m.size for m in left if m] == [1000, 1000]
        assert all(media.path(m).stat().st_size == 1000 for m in left if m)
        assert deleted == 5
    finally:
        await runner.cleanup()
        await store.close()


async def test_carrier_media_credentials_go_to_the_carrier_only():
    """Twilio and Bandwidth media downloads carry the API credentials to the carrier's host;
    a redirect to a storage host (another origin) gets none; size caps hold."""
    picture = png(6, 7)
    async with CarrierServer() as api, CarrierServer() as storage:
        storage_url = storage.url + "/s3/obj"

        def stored_object(req: RecordedRequest) -> CannedResponse:
            if "Authorization" in req.headers:  # must not happen: 400 fails the fetch
                return CannedResponse(400, {"error": "credentials leaked"})
            return CannedResponse(200, picture, {"Content-Type": "image/png"})

        storage.responder = stored_object
        api.responder = lambda req: CannedResponse(302, b"", {"Location": storage_url})
        providers = [
            TwilioProvider(TwilioProvider.Config(
                name="twilio", type="twilio", account_sid=configs.TWILIO_SID,
                auth_token="tw-token", api_base=api.url)),
            BandwidthProvider(BandwidthProvider.Config(
                name="bandwidth", type="bandwidth", account_id="123", application_id="app",
                username="bw-user", password="bw-pass", webhook_username="u",
                webhook_password="p", api_base=api.url)),
        ]
        expected = [("AC" + "5" * 32, "tw-token"), ("bw-user", "bw-pass")]
        for provider, (user, password) in zip(providers, expected, strict=True):
            await provider.start()
            try:
                assert await provider.fetch_media(f"{api.url}/media/1") == (picture, "image/png")
                with pytest.raises(MediaTooLarge):
                    await provider.fetch_media(f"{api.url}/media/1", max_bytes=len(picture) - 1)
                # a URL on another host is fetched without credentials
                assert await provider.fetch_media(storage_url) == (picture, "image/png")
            finally:
                await provider.close()
            auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
            assert [r.headers.get("Authorization") for r in api.requests] == [auth, auth]
            assert len(storage.requests) == 3  # redirected twice, fetched directly once
            api.requests.clear()
            storage.requests.clear()
        storage.responder = lambda req: CannedResponse(503, {"error": "busy"})
        with pytest.raises(MediaFetchError) as err:
            await providers[0].download(storage_url)
        assert err.value.retryable
        storage.responder = lambda req: CannedResponse(404, {"error": "gone"})
        with pytest.raises(MediaFetchError) as err:
            await providers[0].download(storage_url)
        assert not err.value.retryable


# --- pure parts ---------------------------------------------------------------------------

FT_XML = fthttp.build("https://files.example.com/a&b/photo.jpg?x=1&y=\"2\"", "pic <1>.jpg",
                      "image/jpeg", 1234, 1_900_000_000)


def test_file_transfer_xml_round_trip_and_escaping():
    root = ET.fromstring(FT_XML)
    assert root.tag == FT_NS + "file"
    assert root.find(f"{FT_NS}file-info/{FT_NS}data").get("until") == "2030-03-17T17:46:40Z"
    (info,) = fthttp.parse(FT_XML.encode())
    assert info == fthttp.FileInfo('https://files.example.com/a&b/photo.jpg?x=1&y="2"',
                                   "image/jpeg", 1234, "pic <1>.jpg")


def test_linphone_file_transfer_with_thumbnail_inside_cpim():
    xml = (b'<?xml version="1.0" encoding="UTF-8"?><file xmlns="urn:gsma:params:xml:ns:rcs:rcs:'
           b'fthttp"><file-info type="thumbnail"><file-size>99</file-size><content-type>image'
           b'/jpeg</content-type><data url="https://f.example/thumb" until="x"/></file-info>'
           b'<file-info type="file"><file-size>5000</file-size><file-name>IMG.JPG</file-name>'
           b'<content-type>image/jpeg;charset=binary</content-type><data url="https://f.'
           b'example/full" until="x"/></file-info></file>')
    cpim = (b"From: <sip:1001@pbx>\r\nTo: <sip:+15557654321@pbx>\r\n\r\nContent-Type: "
            b"application/vnd.gsma.rcs-ft-http+xml\r\n\r\n" + xml)
    content = parse_body("message/cpim", cpim).content
    assert content.text == "" and content.attachments == ()
    (ref,) = content.media
    assert (ref.url, ref.content_type, ref.size) == ("https://f.example/full", "image/jpeg", 5000)
    assert content.names == ("IMG.JPG",)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (FT_XML.replace("<file-size>", "<file-key>k</file-key><file-size>"), "encrypted"),
        ('<!DOCTYPE x [<!ENTITY a "b">]><file/>', "not plain XML"),
        ("<file><file-info type='file'><data url='ftp://x/y'/></file-info></file>", "http"),
        ("<other/>", "not a file-transfer"),
        ("<file", "broken"),
    ],
)
def test_bad_file_transfer_bodies_are_refused(body, reason):
    with pytest.raises(BodyError, match=reason):
        parse_body(fthttp.CONTENT_TYPE, body.encode())


def test_multipart_with_pictures_binary_and_base64():
    picture = png(4, 9)
    ctype, body = multipart("hello", "image/png", picture)
    content = parse_body(ctype, body.encode()).content
    assert content.text == "hello"
    (att,) = content.attachments
    assert (att.content_type, att.data, att.filename) == ("image/png", picture, "photo.png")

    raw = (b'--b\r\nContent-Type: image/gif\r\n\r\nGIF89a\x00\x01\xff\r\n--b\r\n'
           b"Content-Type: application/smil\r\n\r\n<smil/>\r\n--b--\r\n")
    content = parse_body('multipart/related; boundary="b"', raw).content
    assert content.text == ""
    assert [(a.content_type, a.data) for a in content.attachments] == [
        ("image/gif", b"GIF89a\x00\x01\xff")]
    bare = parse_body("image/jpeg", b"\xff\xd8\xff").content
    assert bare.attachments[0].data == b"\xff\xd8\xff"


def test_raw_message_gives_back_what_pjsip_split():
    body = b"--b\r\nContent-Type: image/png\r\n\r\n\xff\xd8\r\n--b--\r\n"
    raw = (b"MESSAGE sip:+1555@pbx SIP/2.0\r\nc: multipart/mixed; boundary=b\r\n"
           b"Content-Length: 40\r\n\r\n" + body)
    message = split_message(raw)
    assert message.header("content-type") == "multipart/mixed; boundary=b"
    assert message.body == body
    assert split_message(b"MESSAGE x SIP/2.0\r\n").body == b""


@pytest.mark.parametrize(
    ("name", "ctype", "expected"),
    [
        ("/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME123", "image/jpeg", "ME123.jpg"),
        ("../../etc/passwd", "text/plain", "passwd.txt"),
        ("my photo (1).PNG", "image/png", "my_photo_1_.PNG"),
        ("", "application/pdf", "media.pdf"),
        ("x" * 100 + ".jpeg", "image/jpeg", "x" * 43 + ".jpeg"),
        ("%2e%2e%2f.hidden", "image/gif", "hidden.gif"),
    ],
)
def test_safe_filenames(name, ctype, expected):
    assert safe_filename(name, ctype) == expected
