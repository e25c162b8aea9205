"""Splitting long texts into marked parts (bridge/textparts.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.textparts import split_marked, utf8_len


def test_a_text_that_fits_is_whole_and_unmarked():
    assert split_marked("hello", 100) == ["hello"]


def test_parts_are_marked_in_order_and_cut_at_spaces():
    parts = split_marked("alpha beta gamma delta epsilon zeta", 20)
    assert parts[0].startswith("(1/") and parts[-1].startswith(f"({len(parts)}/{len(parts)})")
    assert all(utf8_len(p) <= 20 for p in parts)
    words = " ".join(p.split(") ", 1)[1] for p in parts).split()
    assert words == ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]


def test_emoji_with_modifiers_are_never_split():
    thumbs = "👍🏽" * 400
    for part in split_marked(thumbs, 100):
        body = part.split(") ", 1)[1]
        assert body.replace("👍🏽", "") == ""


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=3000), st.integers(min_value=40, max_value=400))
def test_parts_fit_and_join_back(text, limit):
    parts = split_marked(text, limit)
    assert all(utf8_len(p) <= limit for p in parts)
    if len(parts) == 1:
        assert parts == [text]
        return
    bodies = [p.split(") ", 1)[1] for p in parts]
    # a cut at a space may drop that space, nothing else
    assert "".join(bodies).replace(" ", "") == text.replace(" ", "")
