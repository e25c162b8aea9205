"""What a SIP answer to one of our MESSAGEs means for the text it carried: the SIP side's
policy, so the core only sees delivered / try again / refused / too large."""

from __future__ import annotations

from bridge.model import SipOutcome, SipResult

# Answers that mean "not now" (phone offline, busy, overloaded) rather than "never".
RETRYABLE = frozenset({0, 404, 408, 480, 486, 500, 503, 504})
# pjsua reports a send it could not even start (no transport, bad URI) as this.
LOCAL_FAILURE = 503


def classify(code: int, reason: str = "") -> SipResult:
    if 200 <= code < 300:
        return SipResult(code, SipOutcome.DELIVERED, reason)
    if code in {413, 513}:  # Request Entity Too Large, Message Too Large
        return SipResult(code, SipOutcome.TOO_LARGE, reason)
    if code in RETRYABLE or 500 <= code < 600:
        return SipResult(code, SipOutcome.RETRY, reason)
    return SipResult(code, SipOutcome.REFUSED, reason)


def local_failure(reason: str) -> SipResult:
    return SipResult(LOCAL_FAILURE, SipOutcome.RETRY, reason)


def too_large(size: int) -> SipResult:
    return SipResult(0, SipOutcome.TOO_LARGE, f"a MESSAGE of {size:,} bytes does not fit "
                                               "one SIP packet")


# The largest text body one MESSAGE to a phone carries. pjsip writes at most 4,000 bytes per
# SIP message (PJSIP_MAX_PKT_LEN); measured with this wheel, our MESSAGE headers take about
# 450 bytes, a proxy's digest answer and long URIs add a few hundred more: 2,600 bytes leaves
# room for both. Longer texts go to the phone in several MESSAGEs.
MAX_PART_BYTES = 2600
