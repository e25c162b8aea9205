"""Delivery notifications to phones (RFC 5438 IMDN), so a SIP softphone shows its SMS as
delivered or failed when the carrier reports it.

A phone asks for them in the CPIM wrapper of its text (``imdn.Message-ID`` and
``imdn.Disposition-Notification: positive-delivery, negative-delivery``). The notification
is a ``message/imdn+xml`` document naming that Message-ID, sent in CPIM from the number the
phone was texting (so the phone files it in the same conversation), the way Linphone and
other RFC 5438 clients send their own.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from bridge.model import ImdnRequest
from bridge.uris import uri_of

CPIM = "message/cpim"


def render(request: ImdnRequest, delivered: bool, from_uri: str, to_uri: str) -> tuple[str, str]:
    """The body and content type of the notification for ``request``."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = "<delivered/>" if delivered else "<failed/>"
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\r\n'
        '<imdn xmlns="urn:ietf:params:xml:ns:imdn">'
        f"<message-id>{escape(request.message_id)}</message-id>"
        f"<datetime>{now}</datetime>"
        f"<delivery-notification><status>{status}</status></delivery-notification>"
        "</imdn>"
    )
    body = (
        f"From: <{uri_of(from_uri)}>\r\n"
        f"To: <{uri_of(to_uri)}>\r\n"
        f"DateTime: {now}\r\n"
        "NS: imdn <urn:ietf:params:imdn>\r\n"
        f"imdn.Message-ID: {secrets.token_hex(8)}\r\n"
        "\r\n"
        "Content-Type: message/imdn+xml\r\n"
        "Content-Disposition: notification\r\n"
        f"Content-Length: {len(xml.encode())}\r\n"
        "\r\n"
        f"{xml}"
    )
    return body, CPIM
