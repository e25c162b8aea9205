"""The ``generic`` carrier's HMAC webhook check: the common shapes (GitHub's ``sha256=<hex>``
over the raw body, Stripe/Slack-style timestamp-prefixed bodies, URL+body signing)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import TYPE_CHECKING

from bridge.providers.base import WebhookRequest, WebhookUnauthorized

if TYPE_CHECKING:
    from bridge.providers.generic.config import SignatureConfig

MAX_SIGNATURES = 5  # comma-separated signatures tried from one header (key rotation)


def decode_key(secret: str, encoding: str) -> bytes:
    """The HMAC key from the configured secret: ``text``, ``hex`` or ``base64``."""
    if not secret:
        raise ValueError("empty")
    if encoding == "hex":
        return bytes.fromhex(secret)
    if encoding == "base64":
        try:
            return base64.b64decode(secret, validate=True)
        except binascii.Error:
            raise ValueError("not base64") from None
    return secret.encode()


def decode_signature(value: str, sig: SignatureConfig) -> bytes | None:
    """One received signature as bytes, or None if it is not in the configured form."""
    if sig.prefix:
        if not value.lower().startswith(sig.prefix.lower()):
            return None
        value = value[len(sig.prefix):]
    if not value or len(value) > 1024:
        return None
    try:
        if sig.encoding == "hex":
            return bytes.fromhex(value)
        value = value.replace("-", "+").replace("_", "/")
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (ValueError, binascii.Error):
        return None


def signed_bytes(sig: SignatureConfig, req: WebhookRequest, tolerance: int) -> bytes:
    """What the carrier signed; a timestamp outside ``tolerance`` seconds is refused."""
    if sig.signed == "timestamp.body":
        stamp = req.headers.get(sig.timestamp_header or "", "").strip()
        if not stamp:
            raise WebhookUnauthorized(f"{sig.timestamp_header} header missing")
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 16):
            raise WebhookUnauthorized(f"{sig.timestamp_header} is not a Unix time")
        seconds = int(stamp)
        if seconds > 10**11:  # milliseconds
            seconds //= 1000
        if abs(req.received_at - seconds) > tolerance:
            raise WebhookUnauthorized("webhook timestamp outside the tolerance window")
        return stamp.encode() + b"." + req.body
    if sig.signed == "url+body":
        return req.url.encode() + req.body
    return req.body


def verify_signature(sig: SignatureConfig, req: WebhookRequest, tolerance: int) -> None:
    """Raise ``WebhookUnauthorized`` unless the header carries a matching signature."""
    header = req.headers.get(sig.header, "").strip()
    if not header:
        raise WebhookUnauthorized(f"{sig.header} header missing")
    signed = signed_bytes(sig, req, tolerance)
    expected = hmac.new(sig.key(), signed, getattr(hashlib, sig.algorithm)).digest()
    for candidate in header.split(",")[:MAX_SIGNATURES]:
        received = decode_signature(candidate.strip(), sig)
        if received is not None and hmac.compare_digest(received, expected):
            return
    raise WebhookUnauthorized(f"{sig.header} does not match")
