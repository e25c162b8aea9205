"""RCS file transfer over HTTP: the XML body a softphone sends (and renders) instead of the
file itself. Pure functions: build it for a file we host, read it from a phone's MESSAGE.

A phone uploads the file to its file-transfer server (an HTTP multipart POST), gets this XML
back, and sends it as a MESSAGE with content type ``application/vnd.gsma.rcs-ft-http+xml``;
the receiving phone downloads the file from ``data/@url``. Linphone speaks it (GSMA RCC.07
"File Transfer via HTTP")::

    <?xml version="1.0" encoding="UTF-8"?>
    <file xmlns="urn:gsma:params:xml:ns:rcs:rcs:fthttp">
      <file-info type="file">
        <file-size>1234</file-size>
        <file-name>photo.jpg</file-name>
        <content-type>image/jpeg</content-type>
        <data url="https://.../photo.jpg" until="2024-05-01T00:00:00Z"/>
      </file-info>
    </file>

A ``file-info type="thumbnail"`` may come along (ignored). Linphone's end-to-end encrypted
chats add ``file-key``: the file is then ciphertext we cannot forward, so it is refused.
"""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

CONTENT_TYPE = "application/vnd.gsma.rcs-ft-http+xml"
NAMESPACE = "urn:gsma:params:xml:ns:rcs:rcs:fthttp"
MAX_XML_BYTES = 64 * 1024
# ElementTree resolves no external entities, expat >= 2.4 stops entity expansion bombs, and
# parse() refuses DTDs outright: the XML comes from phones, so nothing is trusted.


class FileTransferError(ValueError):
    """A file-transfer body we cannot use; the message is meant for the sender."""


@dataclass(frozen=True, slots=True)
class FileInfo:
    url: str
    content_type: str | None = None
    size: int | None = None
    name: str | None = None


def _until(expires_at: float) -> str:
    moment = datetime.datetime.fromtimestamp(expires_at, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def build(url: str, name: str, content_type: str, size: int, expires_at: float) -> str:
    """The file-transfer XML for one file we serve at ``url`` until ``expires_at``."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<file xmlns="{NAMESPACE}" xmlns:am="urn:gsma:params:xml:ns:rcs:rcs:rram">\n'
        '<file-info type="file">\n'
        f"<file-size>{int(size)}</file-size>\n"
        f"<file-name>{escape(name)}</file-name>\n"
        f"<content-type>{escape(content_type)}</content-type>\n"
        f"<data url={quoteattr(url)} until={quoteattr(_until(expires_at))}/>\n"
        "</file-info>\n"
        "</file>\n"
    )


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(element: ET.Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip() or None
    return None


def parse(body: bytes) -> tuple[FileInfo, ...]:
    """The files a file-transfer body offers (thumbnails left out)."""
    if len(body) > MAX_XML_BYTES:
        raise FileTransferError("the file-transfer description is too long")
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise FileTransferError("the file-transfer description is not plain XML")
    try:
        root = ET.fromstring(body)  # noqa: S314 (DTDs refused above)
    except ET.ParseError:
        raise FileTransferError("broken file-transfer description") from None
    if _local(root.tag) != "file":
        raise FileTransferError("not a file-transfer description")
    files: list[FileInfo] = []
    for info in root:
        if _local(info.tag) != "file-info" or info.get("type", "file") != "file":
            continue
        if _child_text(info, "file-key") is not None:
            raise FileTransferError(
                "encrypted attachments cannot be sent as MMS (turn off encryption for this chat)"
            )
        data = next((c for c in info if _local(c.tag) == "data"), None)
        url = (data.get("url") or "").strip() if data is not None else ""
        if not url.startswith(("http://", "https://")):
            raise FileTransferError("the file-transfer description has no http(s) URL")
        size_text = _child_text(info, "file-size")
        try:
            size = int(size_text) if size_text is not None else None
        except ValueError:
            size = None
        ctype = _child_text(info, "content-type")
        ctype = ctype.split(";", 1)[0].strip().lower() if ctype else None
        files.append(FileInfo(url, ctype or None, size,
                              _child_text(info, "file-name")))
    if not files:
        raise FileTransferError("the file-transfer description names no file")
    return tuple(files)
