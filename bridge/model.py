"""The bridge's message model: lifecycle states, their legal transitions, and the typed events
that the I/O edges (SIP, webhooks, carrier adapters) hand to the core.

Everything here is pure data: frozen dataclasses that validate themselves, no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Direction(enum.StrEnum):
    """Which way a text travels, seen from the phone."""

    OUT = "out"  # phone -> SMS (SIP MESSAGE in, carrier API call out)
    IN = "in"  # SMS -> phone (carrier webhook in, SIP MESSAGE out)


class State(enum.StrEnum):
    QUEUED = "queued"  # stored, waiting for (another) attempt
    SENDING = "sending"  # an attempt is under way
    SENT = "sent"  # the carrier accepted it; waiting for a delivery report
    DELIVERED = "delivered"  # the carrier reported delivery, or the phone answered 2xx
    FAILED = "failed"  # a permanent error, or it expired before it could be delivered
    REJECTED = "rejected"  # refused by policy before any attempt (routing, permission, ...)


FINAL_STATES = frozenset({State.DELIVERED, State.FAILED, State.REJECTED})

# Which state may follow which. A carrier's late or repeated report must never move a message
# backwards (a "sent" report arriving after "delivered" is ignored, not applied).
TRANSITIONS: dict[State, frozenset[State]] = {
    State.QUEUED: frozenset({State.SENDING, State.FAILED, State.REJECTED}),
    State.SENDING: frozenset({State.SENT, State.DELIVERED, State.QUEUED, State.FAILED}),
    State.SENT: frozenset({State.DELIVERED, State.FAILED}),
    State.DELIVERED: frozenset(),
    State.FAILED: frozenset(),
    State.REJECTED: frozenset(),
}


# What an operator may do beyond that (``sip-sms-bridge retry``): a failed text is final for
# the bridge, not for a person who fixed the cause; a queued one may be brought forward.
OPERATOR_TRANSITIONS: dict[State, frozenset[State]] = {
    State.FAILED: frozenset({State.QUEUED}),
    State.QUEUED: frozenset({State.QUEUED}),
}


def can_transition(current: State, new: State, *, by_operator: bool = False) -> bool:
    return new in TRANSITIONS[current] or (
        by_operator and new in OPERATOR_TRANSITIONS.get(current, frozenset()))


class Kind(enum.StrEnum):
    TEXT = "text"  # a text from a person
    NOTICE = "notice"  # the bridge telling a phone why its text did not go out


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A piece of media a carrier holds (inbound) or that we offer (outbound)."""

    url: str
    content_type: str | None = None
    size: int | None = None


@dataclass(frozen=True, slots=True)
class OutboundSms:
    """What a carrier adapter is asked to send. Numbers are E.164 with a leading '+'; the
    adapter formats them the way its carrier wants."""

    message_id: int
    from_number: str
    to_number: str
    text: str
    media: tuple[MediaRef, ...] = ()
    sender_id: str | None = None  # alphanumeric sender, when permitted


@dataclass(frozen=True, slots=True)
class Sent:
    """The carrier accepted the message."""

    carrier_id: str
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class SendFailed:
    """The carrier refused the message, or could not be reached.

    ``retryable`` is the adapter's classification: timeouts, connection errors, 5xx and 429
    are worth another attempt; a 4xx such as an invalid number is not.
    """

    reason: str
    retryable: bool
    retry_after: float | None = None
    code: str | None = None


SendResult = Sent | SendFailed


@dataclass(frozen=True, slots=True)
class PartInfo:
    """One part of a long text that the carrier delivers unassembled (Vonage ``concat-*``,
    VoIP.ms per-segment callbacks). Parts sharing ``ref`` (per sender) are joined in
    ``index`` order (1-based) once all ``total`` have arrived."""

    ref: str
    index: int
    total: int

    def __post_init__(self) -> None:
        if not self.ref or not 1 <= self.index <= self.total <= 255:
            raise ValueError("part index/total out of range")


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A text (SMS or MMS) a carrier received for one of our numbers."""

    carrier_id: str
    from_number: str
    to_number: str
    text: str
    media: tuple[MediaRef, ...] = ()
    part: PartInfo | None = None

    def __post_init__(self) -> None:
        if not self.carrier_id:
            raise ValueError("inbound message without a carrier message id")
        if not self.from_number or not self.to_number:
            raise ValueError("inbound message without a from or to number")


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A carrier's report on a message we sent. ``state`` is already mapped from the
    carrier's own vocabulary into ours (SENT, DELIVERED or FAILED)."""

    carrier_id: str
    state: State
    carrier_status: str = ""
    error: str | None = None

    def __post_init__(self) -> None:
        if self.state not in (State.SENT, State.DELIVERED, State.FAILED):
            raise ValueError(f"a delivery report cannot set state {self.state}")


InboundEvent = InboundMessage | DeliveryReport


@dataclass(frozen=True, slots=True)
class SipMessage:
    """A SIP MESSAGE the engine received, reduced to what the core needs."""

    account: str  # the SIP account (registration, or the trunk listener) it reached
    from_uri: str
    to_uri: str
    content_type: str
    body: bytes  # as received; decoding by its charset is the core's job
    source: str  # "host:port" it came from
    call_id: str = ""
