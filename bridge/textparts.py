"""Splitting a long text into parts that each fit one carrier or SIP message. Pure.

Parts are cut at a space or line break where one is near, never inside a character or
between a character and the marks that belong to it (accents, emoji modifiers, joiners),
and each part is marked ``(k/n)`` so the reader sees the order and that more is coming.
"""

from __future__ import annotations

import unicodedata

_JOINERS = frozenset({"\u200d", "\ufe0f", "\ufe0e"})  # ZWJ, variation selectors


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def split_marked(text: str, max_bytes: int) -> list[str]:
    """``text`` as parts of at most ``max_bytes`` UTF-8 bytes each, marker included; a text
    that fits is returned whole and unmarked."""
    if utf8_len(text) <= max_bytes:
        return [text]
    parts: list[str] = []
    for digits in range(1, 6):  # the marker's width depends on how many parts there are
        budget = max_bytes - utf8_len(f"({'9' * digits}/{'9' * digits}) ")
        parts = split_plain(text, budget)
        if len(parts) < 10 ** digits:
            break
    total = len(parts)
    return [f"({i}/{total}) {part}" for i, part in enumerate(parts, 1)]


def split_plain(text: str, max_bytes: int) -> list[str]:
    """``text`` in pieces of at most ``max_bytes`` UTF-8 bytes, cut at whitespace when one is
    in the second half of a piece."""
    if max_bytes < 8:
        raise ValueError("max_bytes is too small to split into")
    parts: list[str] = []
    rest = text
    while utf8_len(rest) > max_bytes:
        cut = _fit(rest, max_bytes)
        space = max(rest.rfind(" ", 0, cut), rest.rfind("\n", 0, cut))
        if space > cut // 2:
            cut = space + 1
        parts.append(rest[:cut].rstrip(" ") or rest[:cut])
        rest = rest[cut:]
    if rest:
        parts.append(rest)
    return parts


def _fit(text: str, max_bytes: int) -> int:
    """The longest prefix length (in characters) within ``max_bytes`` that does not end
    inside a grapheme."""
    size, cut = 0, 0
    for i, ch in enumerate(text):
        size += utf8_len(ch)
        if size > max_bytes:
            break
        cut = i + 1
    while 1 < cut < len(text) and _binds(text[cut - 1], text[cut]):
        cut -= 1
    return max(cut, 1)


def _binds(before: str, after: str) -> bool:
    """True when ``after`` belongs to the character before it."""
    return (before in _JOINERS or after in _JOINERS or unicodedata.combining(after) != 0
            or "\U0001f3fb" <= after <= "\U0001f3ff")  # skin-tone modifiers
