"""Phone numbers (E.164 via ``phonenumbers``) and SMS segment arithmetic (GSM-7 / UCS-2).

Pure functions, no I/O.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import phonenumbers

# Characters phones and PBXs put into dialled strings that carry no meaning.
_VISUAL_SEPARATORS = str.maketrans("", "", " -.()/\u00a0")


class InvalidNumber(ValueError):
    """A string that is not a phone number we can text."""


@functools.lru_cache(maxsize=4096)
def to_e164(raw: str, default_region: str = "US") -> str:
    """Normalise a number in any common written form to E.164 (``+15551230001``).

    Cached: parsing is a large share of the bridge's CPU per text, and the same few numbers
    recur (our DIDs, people in a conversation).

    ``default_region`` (ISO 3166 alpha-2) is used when the number has no country code.
    We require a *possible* number rather than a *valid* one: carriers, not libphonenumber's
    allocation tables, are the authority on which numbers exist, and the tables lag behind.
    """
    text = (raw or "").strip()
    if text.lower().startswith("tel:"):
        text = text[4:]
    text = text.split(";", 1)[0].translate(_VISUAL_SEPARATORS)
    if not text.isascii():  # libphonenumber reads Arabic-Indic or fullwidth digits
        raise InvalidNumber(f"{raw!r} is not a phone number (only ASCII digits are read)")
    if text.startswith("00"):
        text = "+" + text[2:]
    if not text or len(text) > 20:
        raise InvalidNumber(f"{raw!r} is not a phone number")
    try:
        parsed = phonenumbers.parse(text, None if text.startswith("+") else default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(f"{raw!r} is not a phone number ({exc})") from None
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidNumber(f"{raw!r} is not a possible phone number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@functools.lru_cache(maxsize=4096)
def region_of(e164: str) -> str | None:
    """The ISO region code of an E.164 number ("US", "GB", ...), or None if unknown.

    A number outside the allocation tables (e.g. a 555 test number) gets its country code's
    main region, so it is treated like the country it dials into."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    if region in (None, "ZZ"):
        region = phonenumbers.region_code_for_country_code(parsed.country_code)
    return None if region in (None, "ZZ", "001") else region


def digits(e164: str) -> str:
    """E.164 without the '+': the form many carriers want (``15551230001``)."""
    return e164.lstrip("+")


def national_nanp(e164: str) -> str:
    """The 10-digit national form of a NANP (+1) number, as VoIP.ms and Commio want it."""
    if not e164.startswith("+1") or len(e164) != 12:
        raise InvalidNumber(f"{e164} is not a North American (+1) number")
    return e164[2:]


SHORT_CODE_DIGITS = range(3, 9)


def is_ascii_digits(text: str) -> bool:
    """Only 0-9 (``str.isdigit()`` is also true for Arabic-Indic, fullwidth and superscript
    digits)."""
    return bool(text) and text.isascii() and text.isdigit()


@functools.lru_cache(maxsize=4096)
def from_carrier(raw: str, default_region: str = "US") -> str:
    """Normalise a number as a carrier wrote it (``+1555...``, ``1555...``, ``555...``).

    A short code (3-8 digits, e.g. a bank's verification texts) has no E.164 form and is
    kept as its digits, so such a text still reaches the phone."""
    text = (raw or "").strip()
    if not text.translate(_VISUAL_SEPARATORS).isascii():
        # str.isdigit() and libphonenumber both take Arabic-Indic, fullwidth and superscript
        # digits; no carrier sends them, and a lookalike number must not pass as a real one.
        raise InvalidNumber(f"{raw!r} is not a phone number (only ASCII digits are read)")
    bare = text.lstrip("+")
    if is_ascii_digits(bare) and len(bare) in SHORT_CODE_DIGITS and not text.startswith("+"):
        return bare
    # 11+ digits without '+' already carry a country code (Vonage, Plivo, Flowroute style).
    if not text.startswith("+") and is_ascii_digits(bare) and len(bare) > 10:
        text = "+" + bare
    return to_e164(text, default_region)


# --- GSM 03.38 ------------------------------------------------------------------------------

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")


@dataclass(frozen=True, slots=True)
class Segments:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    count: int  # how many SMS the carrier will bill
    per_segment: int  # capacity of one part at this length
    reason: str  # why this encoding was chosen, for people


def segments(text: str) -> Segments:
    """How a text will be split into SMS, as carriers count it."""
    non_gsm = [ch for ch in text if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION]
    if not non_gsm:
        units = sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)
        single, multi = 160, 153
        encoding = "GSM-7"
        reason = "every character is in the GSM-7 alphabet"
        if any(ch in GSM7_EXTENSION for ch in text):
            reason += " (characters such as ^ { } [ ] ~ | € \\ count twice)"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi = 70, 67
        encoding = "UCS-2"
        shown = "".join(dict.fromkeys(non_gsm))[:5]
        reason = f"{shown!r} is not in the GSM-7 alphabet, so the whole text is sent as UCS-2"
    if units <= single:
        return Segments(encoding, units, 1 if units else 0, single, reason)
    count = -(-units // multi)
    return Segments(encoding, units, count, multi, reason)


def split_text(text: str, max_chars: int) -> list[str]:
    """Split text into parts of at most ``max_chars`` characters for carriers with a hard
    length limit, preferring to break at whitespace and never splitting a surrogate pair
    (Python strings are code points, so that holds by construction)."""
    if max_chars <= 0:
        raise ValueError("max_chars must be positive")
    parts: list[str] = []
    rest = text
    while len(rest) > max_chars:
        cut = rest.rfind(" ", max_chars // 2, max_chars + 1)
        if cut <= 0:
            cut = max_chars
        parts.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest or not parts:
        parts.append(rest)
    return parts
