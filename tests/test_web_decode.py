"""events_problem: the one check that parsed webhook events hold only valid text, nested
media included, before the core sees them."""

from __future__ import annotations

import pytest

from bridge.model import DeliveryReport, InboundMessage, MediaRef, State
from bridge.web.decode import events_problem

GOOD = InboundMessage("SM1", "+15551230001", "+15557654321", "hello 😀",
                      (MediaRef("https://e.x/a.jpg", "image/jpeg"),))


def test_valid_events_have_no_problem():
    assert events_problem([GOOD, DeliveryReport("SM2", State.DELIVERED, "delivered")]) is None
    assert events_problem([]) is None


@pytest.mark.parametrize("bad", [
    InboundMessage("SM1", "+15551230001", "+15557654321", "lone \ud800 surrogate"),
    InboundMessage("SM1", "+15551230001", "+15557654321", "a NUL \0 in it"),
    InboundMessage("SM1", "+15551230001", "+15557654321", "x",
                   (MediaRef("https://e.x/ok.jpg"), MediaRef("https://e.x/\udfff.jpg"))),
    DeliveryReport("SM2", State.FAILED, "failed", error="30003: \ud83d"),
])
def test_a_bad_string_anywhere_is_found_and_named_by_event_type(bad):
    problem = events_problem([GOOD, bad])
    assert problem == f"a field of a {type(bad).__name__} is not valid text"
