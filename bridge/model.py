"""The bridge's message model: lifecycle states, their legal transitions, and the typed events
that the I/O edges (SIP, webhooks, carrier adapters) hand to the core.

Everything here is pure data: frozen dataclasses that validate themselves, no I/O.
"""

from __future__ import annotations

import enum
import re
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
    IMDN = "imdn"  # a delivery notification (RFC 5438) to a phone that asked for one


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
    # Carrier ids of the parts earlier attempts got accepted, in part order. Parts go out in
    # order and an attempt stops at the first refusal, so this is always a prefix: part i
    # went out iff i < len(accepted_parts). The adapter never sends those parts again.
    accepted_parts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Sent:
    """The carrier accepted the message (all of its parts)."""

    carrier_id: str  # the first part's id: delivery reports are matched on it
    detail: str | None = None
    parts: tuple[str, ...] = ()  # every part's id, when the message went out in several


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
    # A partial failure: the ids of the parts accepted so far (this attempt's included), as
    # in ``OutboundSms.accepted_parts``. Empty when nothing went out.
    accepted_parts: tuple[str, ...] = ()


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


class SipOutcome(enum.StrEnum):
    """What a phone's answer to a MESSAGE means for the text (decided by the SIP side)."""

    DELIVERED = "delivered"
    RETRY = "retry"  # offline, busy, overloaded: try again later
    REFUSED = "refused"  # for good (403, 603, ...)
    TOO_LARGE = "too_large"  # does not fit one MESSAGE: send it in smaller parts


@dataclass(frozen=True, slots=True)
class SipResult:
    code: int  # the SIP status code (0 when nothing was sent)
    outcome: SipOutcome
    reason: str = ""


# --- what the SIP edge hands the core ---------------------------------------------------


_NOT_TEXT = re.compile("[\0\ud800-\udfff]")


def is_valid_text(value: str) -> bool:
    """True when ``value`` can be stored and sent as UTF-8: no lone surrogates (what a
    surrogate-escaped wire byte becomes) and no NUL. (Called for every field of every
    text: one regex scan, not a Python loop.)"""
    return _NOT_TEXT.search(value) is None


def _require_text(**fields: str) -> None:
    for name, value in fields.items():
        if not is_valid_text(value):
            raise ValueError(f"{name} is not valid text")


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file a phone carried in the MESSAGE body itself."""

    content_type: str
    data: bytes
    filename: str = ""

    def __post_init__(self) -> None:
        _require_text(content_type=self.content_type, filename=self.filename)


@dataclass(frozen=True, slots=True)
class Content:
    """A phone's text as the SIP edge decoded it: valid text, files by URL, files inline."""

    text: str
    media: tuple[MediaRef, ...] = ()  # files offered by URL (RCS file transfer)
    attachments: tuple[Attachment, ...] = ()  # files in the body
    names: tuple[str, ...] = ()  # file names offered with ``media``, in the same order

    def __post_init__(self) -> None:
        _require_text(text=self.text, names="".join(self.names),
                      media="".join(m.url for m in self.media))

    def __add__(self, other: Content) -> Content:
        text = "\n".join(t for t in (self.text, other.text) if t)
        return Content(text, self.media + other.media, self.attachments + other.attachments,
                       self.names + other.names)

    @property
    def empty(self) -> bool:
        return not (self.text.strip() or self.media or self.attachments)


@dataclass(frozen=True, slots=True)
class ImdnRequest:
    """A phone asked to be told when its text is delivered (RFC 5438: CPIM headers
    ``imdn.Message-ID`` and ``imdn.Disposition-Notification``)."""

    message_id: str
    positive: bool  # positive-delivery: tell it when the carrier reports delivery
    negative: bool  # negative-delivery: tell it when delivery failed

    def __post_init__(self) -> None:
        _require_text(message_id=self.message_id)
        if not self.message_id or len(self.message_id) > 200:
            raise ValueError("imdn.Message-ID missing or too long")


@dataclass(frozen=True, slots=True)
class SipText:
    """A MESSAGE a phone sent, as the SIP edge decoded and checked it (pjsua has already
    answered 200). Every string is valid text. ``content`` is None when the MESSAGE cannot
    become an SMS; ``refusal`` then says why, in words for the sender."""

    account: str  # the SIP account (registration, or the trunk listener) it reached
    source: str  # "host:port" it came from
    from_user: str  # the sending extension ("" when the From has no user)
    from_host: str
    to_user: str  # what the user dialled (a number, maybe with a selector)
    call_id: str
    content: Content | None
    refusal: str | None = None
    imdn: ImdnRequest | None = None
    intake_key: str | None = None  # the SIP journal's key: dedupes a replay after a crash

    def __post_init__(self) -> None:
        _require_text(account=self.account, source=self.source, from_user=self.from_user,
                      from_host=self.from_host, to_user=self.to_user, call_id=self.call_id,
                      refusal=self.refusal or "")
        if (self.content is None) == (self.refusal is None):
            raise ValueError("a SipText has either content or a refusal")
