"""Reading and writing carrier payloads by dotted field path (``messages.0.id``), and the
``{placeholder}`` template of the send URL. Pure functions: no I/O, no configuration."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol
from urllib.parse import quote

from bridge.providers.base import WebhookMalformed

MISSING = object()  # a path that leads nowhere (unlike a JSON null)
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class Condition(Protocol):
    """A condition on one field (the config's ``Match``)."""

    path: str
    values: list[str] | None
    not_values: list[str]


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each ``{name}`` replaced by its URL-quoted value."""
    return PLACEHOLDER.sub(lambda m: quote(values[m[1]], safe=""), template)


def lookup(obj: Any, path: str) -> Any:
    """The value at a dotted path in parsed JSON (``messages.0.id``), or ``MISSING``."""
    for part in path.split("."):
        if isinstance(obj, dict):
            if part not in obj:
                return MISSING
            obj = obj[part]
        elif isinstance(obj, list):
            if not (part.isascii() and part.isdigit() and len(part) <= 6):
                return MISSING
            index = int(part)
            if index >= len(obj):
                return MISSING
            obj = obj[index]
        else:
            return MISSING
    return obj


def set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at a dotted path, creating objects on the way."""
    parts = path.split(".")
    for part in parts[:-1]:
        node = obj.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(path)
        obj = node
    if parts[-1] in obj:
        raise ValueError(path)
    obj[parts[-1]] = value


class Doc:
    """One webhook event, read by field path: JSON traverses dots, form keys are literal."""

    def __init__(self, data: Any, form: bool) -> None:
        self.data = data
        self.form = form

    def one(self, path: str) -> Any:
        if self.form:
            values = self.data.get(path)
            if not values:
                return MISSING
            if len(values) > 1:
                raise WebhookMalformed(f"field {path!r} appears more than once")
            return values[0]
        return lookup(self.data, path)

    def many(self, path: str) -> list[Any]:
        if self.form:
            return list(self.data.get(path, []))
        value = lookup(self.data, path)
        if value is MISSING or value is None:
            return []
        return value if isinstance(value, list) else [value]


def scalar(value: Any, what: str, *, required: bool) -> str | None:
    """A string or integer field as text; anything else is a malformed payload."""
    if value is MISSING or value is None or value == "":
        if required:
            raise WebhookMalformed(f"missing {what}")
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise WebhookMalformed(f"{what} has the wrong type ({type(value).__name__})")


def matches(doc: Doc | Any, cond: Condition) -> bool:
    value = doc.one(cond.path) if isinstance(doc, Doc) else lookup(doc, cond.path)
    if value is MISSING or value is None or value == "":
        return False
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | int | float):
        text = str(value)
    else:
        return False
    text = text.lower()
    if text in {v.lower() for v in cond.not_values}:
        return False
    return cond.values is None or text in {v.lower() for v in cond.values}


def media_url(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise WebhookMalformed("a media URL is not a string")
    url = value.strip()
    if len(url) > 4096 or not re.match(r"^https?://[^\s/]", url, re.IGNORECASE):
        raise WebhookMalformed("a media URL is not an http(s) URL")
    return url




def form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def multi(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return out


def loads(raw: bytes) -> Any:
    """Parsed JSON, or None for anything that is not (including absurdly deep nesting)."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
