"""Redaction of secrets, and of every form a secret takes on the way through HTTP.

A carrier that echoes its request back in an error does not echo the secret as we wrote it:
it echoes the ``Authorization`` header (``Basic base64(account_sid:auth_token)``), a query
string (percent-encoded), or a JSON string (escaped). So a secret is searched for in each of
those forms, and a base64 run is redacted whole when it carries the secret at any offset
(base64 of ``anything + secret + anything`` contains one of three fixed substrings, one per
alignment of the secret in the 3-byte groups).

Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

MASK = "***"
# Shorter values are too likely to occur by chance (and too weak to be secrets anyway).
MIN_SECRET_CHARS = 4
# A tail this short could end an ordinary word: a cut-off secret is masked from this length.
MIN_CUT_CHARS = 6
# A base64 core shorter than this could match ordinary base64 by chance.
MIN_BASE64_CORE = 6


def _base64_cores(secret: bytes) -> list[str]:
    """The base64 characters that depend on ``secret`` alone, for each of the three ways
    it can sit in 3-byte groups: a substring of the base64 of anything that contains it."""
    cores = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + secret).decode()
        # the first chars mix the padding bytes in; the last group may mix what follows
        head = -(-shift * 4 // 3)  # ceil(shift * 8 / 6)
        full_groups = (shift + len(secret)) // 3
        core = encoded[head:full_groups * 4]
        if len(core) >= MIN_BASE64_CORE:
            cores.append(core)
    return cores


def _forms(secrets: Iterable[str]) -> tuple[list[str], frozenset[str]]:
    """Every form of every secret (longest first), and which of them are base64 cores."""
    literal: set[str] = set()
    b64: set[str] = set()
    for secret in secrets:
        if len(secret) < MIN_SECRET_CHARS:
            continue
        literal.update({secret, json.dumps(secret)[1:-1]})
        try:
            raw = secret.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate: it has no byte form to look for
            continue
        literal.update({quote(raw, safe=""), quote_plus(raw), quote(raw, safe="").lower(),
                        raw.hex(), raw.hex().upper()})
        for core in _base64_cores(raw):
            b64.update({core, core.replace("+", "-").replace("/", "_")})
    return sorted((literal | b64) - {""}, key=len, reverse=True), frozenset(b64)


# Characters of log lines, most common first (words, numbers, ids); any other is rarer.
_COMMON_CHARS = " e0123456789tasoinrlcdmuhgpf.:/-bywvk+x_jqz"
_ANCHOR_CHARS = 4


def _anchor(form: str) -> str:
    """A part of ``form`` that any text holding the form holds: the few characters from the
    one rarest in log lines (a search first looks for where an anchor could start)."""
    if len(form) <= _ANCHOR_CHARS:
        return form

    def rarity(start: int) -> int:
        found = _COMMON_CHARS.find(form[start])
        return len(_COMMON_CHARS) if found < 0 else found

    start = max(range(len(form) - _ANCHOR_CHARS + 1), key=rarity)
    return form[start:start + _ANCHOR_CHARS]


def _trie_pattern(words: Iterable[str]) -> str:
    """A regex matching any of ``words`` with common prefixes shared (``ab|ac`` is
    ``a(?:b|c)``): the regex engine tries alternatives one by one, so fewer is faster."""
    trie: dict[str, dict] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}  # a word ends here

    def pattern(node: dict[str, dict]) -> str:
        branches = [re.escape(char) + pattern(child) for char, child in sorted(node.items())
                    if char]
        if not branches:
            return ""
        ends = "" in node
        body = branches[0] if len(branches) == 1 and not ends else f"(?:{'|'.join(branches)})"
        return f"{body}?" if ends else body

    return pattern(trie)


_BASE64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-")


class Redactor:
    """Redaction for a fixed set of secrets, prepared once (the log filter runs it on every
    line: a line holding no secret costs one regex search, for the forms' anchors, which
    start at characters rare in log lines so the search stops at few places)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms, self._b64 = _forms(secrets)
        self._forms = forms
        self._pattern = re.compile("|".join(map(re.escape, forms))) if forms else None
        self._anchors = re.compile(_trie_pattern({_anchor(f) for f in forms})) if forms else None

    def __call__(self, text: str) -> str:
        """``text`` with each secret, and each derived form of it, replaced by ``***``. A
        base64 form is replaced with the whole base64 run around it (the rest of it, e.g. the
        account id in ``Basic base64(id:token)``, is no use without it)."""
        if self._pattern is None or not text or self._anchors.search(text) is None:
            return text
        out: list[str] = []
        done = 0
        for match in self._pattern.finditer(text):
            start, end = match.span()
            if match.group() in self._b64:
                while start > done and text[start - 1] in _BASE64_CHARS:
                    start -= 1
                while end < len(text) and text[end] in _BASE64_CHARS:
                    end += 1
            if end <= done:
                continue
            out.append(text[done:max(start, done)])
            out.append(MASK)
            done = end
        out.append(text[done:])
        return "".join(out)

    def cut(self, text: str) -> str:
        """As ``__call__``, for text that may have been cut short (a carrier's error message
        truncated to a length): a secret's form cut off at the end is masked too."""
        text = self(text)
        for form in self._forms:
            for keep in range(len(form) - 1, MIN_CUT_CHARS - 1, -1):
                if text.endswith(form[:keep]):
                    return text[:-keep] + MASK
        return text


@functools.lru_cache(maxsize=64)
def _redactor(secrets: frozenset[str]) -> Redactor:
    return Redactor(secrets)


def redact(text: str, secrets: Iterable[str], *, cut: bool = False) -> str:
    """``text`` with each secret, and each derived form of it, replaced by ``***``; with
    ``cut``, also a form cut off at the end of ``text``."""
    redactor = _redactor(frozenset(secrets))
    return redactor.cut(text) if cut else redactor(text)


# --- webhook URL tokens ---------------------------------------------------------------------

# /webhooks/<provider>/<token>: the token is the carrier's only credential for some carriers.
_WEBHOOK_TOKEN = re.compile(r"(/webhooks/[^/\s?#\"']+/)[^\s?#\"']+")
TOKEN_MASK = "<webhook_token>"  # noqa: S105 (a placeholder, not a password)


def mask_paths(text: str) -> str:
    """Webhook URL tokens masked wherever a path is named (log lines, errors)."""
    if "/webhooks/" not in text:
        return text
    return _WEBHOOK_TOKEN.sub(rf"\g<1>{TOKEN_MASK}", text)
