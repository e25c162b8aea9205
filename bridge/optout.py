"""Opt-out keywords (CTIA / carrier conventions): a whole-message STOP, START or HELP.

Carriers handle these keywords for their own compliance; the bridge records them per (our
number, their number) so that an extension is told, in plain words, why a text to someone
who opted out is not sent.
"""

from __future__ import annotations

import enum

OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT",
                     "REVOKE"})
OPT_IN = frozenset({"START", "UNSTOP", "YES", "OPTIN"})
HELP = frozenset({"HELP", "INFO"})


class Keyword(enum.Enum):
    OPT_OUT = "opt-out"
    OPT_IN = "opt-in"
    HELP = "help"


def keyword_of(text: str) -> tuple[Keyword, str] | None:
    """The keyword a text consists of, if it is one ("Stop." counts; "stop by later" not)."""
    word = text.strip().strip(".!").upper().replace(" ", "")
    if word in OPT_OUT:
        return Keyword.OPT_OUT, word
    if word in OPT_IN:
        return Keyword.OPT_IN, word
    if word in HELP:
        return Keyword.HELP, word
    return None
