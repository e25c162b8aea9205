"""The one decoding rule of the HTTP edge: what reaches the core is valid text.

aiohttp hands over bytes that are not UTF-8 (in a header, the path, the query string) as
surrogate escapes, and ``json.loads`` turns ``"\\ud800"`` into a lone surrogate. Neither can
be stored, encoded for SIP or printed, so both are refused here, once, with a 400:

- the request line and headers before anything else (no signature can be valid over them);
- the fields of the parsed events after authentication, where a carrier signs the raw body
  (so an unsigned request is still told 403, not 400).

NUL is refused in the same places: no carrier sends it in a text, and C strings further on
(pjsip) would cut the text at it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping

from aiohttp import web


def invalid_text(value: str) -> bool:
    """True for a string that cannot be valid text: a surrogate (an undecodable byte or a
    lone UTF-16 half) or NUL."""
    if "\x00" in value:
        return True
    if value.isascii():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def request_problem(request: web.BaseRequest) -> str | None:
    """Why the request line or a header cannot be valid text, or None. Names the part,
    never its value (which may be a credential)."""
    if invalid_text(request.raw_path) or invalid_text(request.path):
        return "path is not valid UTF-8"
    for key, value in request.query.items():
        if invalid_text(key) or invalid_text(value):
            return "query string is not valid UTF-8"
    for name, value in request.headers.items():
        if invalid_text(name) or invalid_text(value):
            return f"header {name.encode('ascii', 'replace').decode()!r} is not valid UTF-8"
    return None


def json_problem(value: object, where: str = "body") -> str | None:
    """The first string in a parsed JSON document (keys included) that is not valid text."""
    stack: list[tuple[object, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if invalid_text(item):
                return f"{path} is not valid text"
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if isinstance(key, str) and invalid_text(key):
                    return f"a key in {path} is not valid text"
                stack.append((child, f"{path}.{key}"))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))
    return None


@functools.cache
def _field_names(kind: type) -> tuple[str, ...] | None:
    """The field names of a dataclass type, or None for any other type (looked up once per
    type: ``dataclasses.fields`` per event was half of this check)."""
    if not dataclasses.is_dataclass(kind):
        return None
    return tuple(f.name for f in dataclasses.fields(kind))


def events_problem(events: Iterable[object]) -> str | None:
    """The first string field of the parsed events (nested media and part references
    included) that is not valid text."""
    for event in events:
        stack: list[object] = [event]
        while stack:
            item = stack.pop()
            if isinstance(item, str):
                if invalid_text(item):
                    return f"a field of a {type(event).__name__} is not valid text"
            elif (names := _field_names(type(item))) is not None:
                stack.extend(getattr(item, name) for name in names)
            elif isinstance(item, list | tuple):
                stack.extend(item)
    return None
