"""SIP and tel URIs -> their parts. Pure functions on text, used by the SIP edge for what
arrives and by routing for what is configured."""

from __future__ import annotations

import re
from urllib.parse import unquote

_URI_RE = re.compile(r"<([^>]*)>")


def uri_of(name_addr: str) -> str:
    """'"Bob" <sip:1001@pbx;tag=x>' -> 'sip:1001@pbx'."""
    match = _URI_RE.search(name_addr)
    uri = match.group(1) if match else name_addr.strip().split(";", 1)[0]
    return uri.strip()


def user_of(name_addr: str) -> str:
    """The user part of a SIP or tel URI: '<sip:+1555@pbx>' -> '+1555'."""
    uri = uri_of(name_addr)
    scheme, _, rest = uri.partition(":")
    if scheme.lower() == "tel":
        return rest.split(";", 1)[0]
    if "@" not in rest:
        return ""
    user = rest.rsplit("@", 1)[0].split(";", 1)[0]
    return unquote(user, errors="surrogateescape")


def host_of(name_addr: str) -> str:
    """The host of a SIP URI: '"Bob" <sip:1001@pbx.example.com:5060>' -> 'pbx.example.com'."""
    rest = uri_of(name_addr).removeprefix("sips:").removeprefix("sip:").split(";", 1)[0]
    rest = rest.rsplit("@", 1)[-1]
    if rest.startswith("["):
        return rest[1 : rest.find("]")]
    return rest.split(":", 1)[0]
