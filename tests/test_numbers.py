"""Number normalisation and SMS segment arithmetic."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.numbers import InvalidNumber, from_carrier, segments, split_text, to_e164


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+1 (555) 123-0001", "US", "+15551230001"),
        ("5551230001", "US", "+15551230001"),
        ("tel:+44 20 7946 0018", "US", "+442079460018"),
        ("0044 20 7946 0018", "US", "+442079460018"),
        ("020 7946 0018", "GB", "+442079460018"),
        ("+15551230001", "GB", "+15551230001"),
    ],
)
def test_to_e164(raw, region, e164):
    assert to_e164(raw, region) == e164


@pytest.mark.parametrize("raw", ["", "12", "hello", "+1 555", "1" * 30, "+999 1234567"])
def test_invalid_numbers(raw):
    with pytest.raises(InvalidNumber):
        to_e164(raw)


@pytest.mark.parametrize(("raw", "e164"), [("15551230001", "+15551230001"),
                                           ("+15551230001", "+15551230001"),
                                           ("5551230001", "+15551230001"),
                                           ("447700900123", "+447700900123"),
                                           ("22395", "22395"), ("898287", "898287")])
def test_from_carrier(raw, e164):
    assert from_carrier(raw) == e164


@given(st.text(max_size=30), st.sampled_from(["US", "GB", "DE", "FR", "IN"]))
def test_normalisation_never_crashes_and_is_idempotent(raw, region):
    try:
        e164 = to_e164(raw, region)
    except InvalidNumber:
        return
    assert e164.startswith("+") and e164[1:].isdigit()
    assert to_e164(e164, region) == e164
    assert to_e164(e164, "US") == e164  # an E.164 number ignores the region


@pytest.mark.parametrize(
    ("text", "encoding", "count"),
    [
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("€" * 80, "GSM-7", 1),  # extension characters cost two septets
        ("€" * 81, "GSM-7", 2),
        ("é" * 160, "GSM-7", 1),  # é is in the basic table
        ("ê" * 70, "UCS-2", 1),
        ("ê" * 71, "UCS-2", 2),
        ("👋" * 35, "UCS-2", 1),  # an emoji is two UTF-16 units
        ("👋" * 36, "UCS-2", 2),
        ("", "GSM-7", 0),
    ],
)
def test_segments(text, encoding, count):
    result = segments(text)
    assert (result.encoding, result.count) == (encoding, count)


@given(st.text(max_size=500), st.integers(min_value=1, max_value=200))
def test_split_text_keeps_every_word(text, limit):
    parts = split_text(text, limit)
    assert all(len(p) <= limit for p in parts)
    assert "".join(parts).replace(" ", "") == "".join(text.split(" ")).replace(" ", "") or \
        "".join(text.split()) == "".join("".join(parts).split())


@pytest.mark.parametrize("raw", ["١٢٣٤٥", "１２３４５", "¹²³", "+１５５５１２３０００１",  # noqa: RUF001
                                 "+1555123000\u0661"])
def test_only_ascii_digits_are_read(raw):
    """str.isdigit() and libphonenumber both accept these; a carrier never sends them."""
    for parse in (from_carrier, to_e164):
        with pytest.raises(InvalidNumber, match="only ASCII digits"):
            parse(raw)
