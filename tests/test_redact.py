"""Redaction finds a secret in every form HTTP gives it, at any offset; URL tokens are masked
in paths; secret comparison never raises on bytes that were not UTF-8."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.providers.base import constant_time_equal
from bridge.redact import mask_paths, redact

SECRET = "s3cr3t/T0ken+with=odd chars"


def test_every_derived_form_is_redacted():
    basic = base64.b64encode(f"AC123:{SECRET}".encode()).decode()
    forms = [SECRET, basic, base64.b64encode(SECRET.encode()).decode(),
             base64.urlsafe_b64encode(SECRET.encode()).decode(), quote(SECRET, safe=""),
             quote_plus(SECRET), quote(SECRET, safe="").lower(), json.dumps(SECRET)[1:-1],
             SECRET.encode().hex(), SECRET.encode().hex().upper()]
    for form in forms:
        out = redact(f"carrier said: Authorization: Basic {form} (refused)", [SECRET])
        assert form not in out and "***" in out, form
        assert out.startswith("carrier said: Authorization: Basic ")


@settings(max_examples=50, deadline=None)
@given(prefix=st.binary(max_size=10), suffix=st.binary(max_size=10),
       secret=st.text(min_size=8, max_size=30))
def test_base64_of_anything_containing_the_secret_is_redacted(prefix, suffix, secret):
    encoded = base64.b64encode(prefix + secret.encode() + suffix).decode()
    assert encoded not in redact(f"x {encoded} y", [secret])


def test_short_values_and_unrelated_text_are_left_alone():
    assert redact("a b c", ["ab"]) == "a b c"
    assert redact("nothing to see here", [SECRET]) == "nothing to see here"


def test_webhook_tokens_are_masked_in_paths():
    line = "client 1.2.3.4 went away during POST /webhooks/flowroute/abc123?x=1 (reset)"
    assert mask_paths(line) == ("client 1.2.3.4 went away during POST "
                                "/webhooks/flowroute/<webhook_token>?x=1 (reset)")
    assert mask_paths("GET /webhooks/twilio") == "GET /webhooks/twilio"


def test_constant_time_equal_takes_undecodable_input():
    header = b"Bearer \xff".decode("utf-8", "surrogateescape")  # as aiohttp hands it over
    assert not constant_time_equal(header, "Bearer token")
    assert not constant_time_equal("\ud800", "x")
    assert constant_time_equal("same", "same")


def test_a_secret_cut_off_at_the_end_is_masked_when_the_text_was_cut():
    reason = f"HTTP 401: bad token {SECRET}"[:30]
    assert reason.endswith(SECRET[:10])
    assert redact(reason, [SECRET], cut=True) == "HTTP 401: bad token ***"
    assert redact(reason, [SECRET]) == reason  # log lines are whole: no guessing there
