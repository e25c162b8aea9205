"""form_body: the bytes and headers aiohttp's FormData would send, for any field values."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from bridge.providers.base import form_body

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


async def test_form_body_length_header_counts_its_bytes():
    body, _, length = await _sent(form_body([("Body", "😀" * 100)]))
    assert int(length) == len(body) == len("Body=") + 100 * len("%F0%9F%98%80")
