"""form_body: the bytes and headers aiohttp's FormData would send, for any field values;
parse_form: the fields parse_qsl reads, for any body."""

from __future__ import annotations

import asyncio
import random
from urllib.parse import parse_qsl, urlencode

import aiohttp
import pytest

from bridge.providers.base import form_body, parse_form

FIELDS = [
    [("To", "+15557654321"), ("From", "+15551230001"), ("Body", "hello")],
    [("Body", "a&b=c+d %20 ?#/;:@!$'()*,~"), ("Body", "repeated name")],
    [("Body", "Grüße, 你好, 😀 and a\r\nline break"), ("Empty", "")],
    [("MediaUrl", "https://example.com/m.jpg?x=1&y=2"), ("MediaUrl", "https://e.x/2")],
    {"from": "ACME", "to": "447700900123", "text": "dict form", "client-ref": "42"},
    [],
]


async def _sent(data: object) -> tuple[bytes, str, str]:
    """What aiohttp's client writes for ``data``: the body, its Content-Type and its
    Content-Length."""
    request = aiohttp.ClientRequest("POST", aiohttp.client.URL("http://127.0.0.1/"),
                                    data=data, loop=asyncio.get_running_loop())
    chunks: list[bytes] = []

    class Writer:
        async def write(self, chunk: bytes) -> None:
            chunks.append(bytes(chunk))

    await request.body.write(Writer())  # type: ignore[arg-type]
    headers = request.headers
    return b"".join(chunks), headers["Content-Type"], headers["Content-Length"]


@pytest.mark.parametrize("fields", FIELDS)
async def test_form_body_is_what_formdata_sends(fields):
    expected = await _sent(aiohttp.FormData(fields))
    assert await _sent(form_body(fields)) == expected
    assert expected[1] == "application/x-www-form-urlencoded"


async def test_form_body_encodes_what_urlencode_encodes_for_random_text():
    rng = random.Random(16)  # fixed: a failure is reproducible
    ranges = [(0, 0x80), (0x80, 0x800), (0x800, 0xD800), (0xE000, 0x110000)]

    def text(most: int) -> str:
        return "".join(chr(rng.randrange(*rng.choice(ranges))) for _ in range(rng.randrange(most)))

    for _ in range(3000):
        pairs = [(text(4), text(24)) for _ in range(rng.randrange(4))]
        assert form_body(pairs)._value == urlencode(pairs).encode(), pairs
    assert form_body([("n", 7)])._value == urlencode([("n", 7)]).encode()  # type: ignore[list-item]


async def test_form_body_length_header_counts_its_bytes():
    body, _, length = await _sent(form_body([("Body", "😀" * 100)]))
    assert int(length) == len(body) == len("Body=") + 100 * len("%F0%9F%98%80")


ODD_BODIES = ["", "&", "&&a=1&&", "a", "a=", "=b", "=", "a=b=c", "a+b=c+d", "%", "%2", "%zz=%4",
              "a=%FF%FE", "%E2%82=%E2%82%AC", "%00=%0A", "a=1;b=2", "+=+", "a=%2B%26%3D",
              "\u00e9=\U0001f600", "a=1&a=2&a="]


@pytest.mark.parametrize("body", ODD_BODIES + [urlencode(f) for f in FIELDS])
def test_parse_form_reads_what_parse_qsl_reads(body):
    assert parse_form(body) == parse_qsl(body, keep_blank_values=True)


def test_parse_form_reads_what_parse_qsl_reads_for_random_bodies():
    rng = random.Random(16)  # fixed: a failure is reproducible
    alphabet = "ab=&+%;2Ff0e\u00e9 \U0001f600"
    for _ in range(3000):
        body = "".join(rng.choice(alphabet) for _ in range(rng.randrange(24)))
        assert parse_form(body) == parse_qsl(body, keep_blank_values=True), body
