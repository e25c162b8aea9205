"""What the store holds and hands out: plain frozen records, the same on every backend."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.model import Direction, ImdnRequest, Kind, MediaRef, State

Row = Mapping[str, Any]  # a database row by column name (sqlite3.Row or a psycopg dict row)


class StoreError(Exception):
    pass


class Conflict(StoreError):
    """A write hit a unique key (a carrier's retry, a repeated carrier id)."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    direction: Direction
    kind: Kind
    state: State
    account: str
    extension: str
    remote: str
    did: str | None
    provider: str | None
    carrier_id: str | None
    copy_of: int | None
    sender_id: str | None
    body: str
    media: tuple[MediaRef, ...]
    attempts: int
    next_attempt_at: float | None
    expires_at: float
    created_at: float
    updated_at: float
    last_error: str | None
    intake_key: str | None = None
    carrier_parts: tuple[str, ...] = ()
    imdn: ImdnRequest | None = None  # the sender asked to be told of delivery (RFC 5438)

    @classmethod
    def from_row(cls, row: Row) -> StoredMessage:
        media = tuple(MediaRef(**m) for m in json.loads(row["media"]))
        imdn = ImdnRequest(**json.loads(row["imdn"])) if row["imdn"] else None
        return cls(
            id=row["id"], direction=Direction(row["direction"]), kind=Kind(row["kind"]),
            state=State(row["state"]), account=row["account"], extension=row["extension"],
            remote=row["remote"], did=row["did"], provider=row["provider"],
            carrier_id=row["carrier_id"], copy_of=row["copy_of"], sender_id=row["sender_id"],
            body=row["body"], media=media, attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"], expires_at=row["expires_at"],
            created_at=row["created_at"], updated_at=row["updated_at"],
            last_error=row["last_error"], intake_key=row["intake_key"],
            carrier_parts=tuple(json.loads(row["carrier_parts"])), imdn=imdn,
        )

    @classmethod
    def just_claimed(cls, new: NewMessage, id: int, now: float) -> StoredMessage:
        """The record ``from_row`` would read back for ``new`` stored at ``now`` already
        claimed (state SENDING, its first attempt), without reading it back: the insert that
        hands a text straight to its attempt is on every text's path. Only for values every
        backend stores as given (see ``stored_as_given``)."""
        return cls(
            id=id, direction=new.direction, kind=new.kind, state=State.SENDING,
            account=new.account, extension=new.extension, remote=new.remote, did=new.did,
            provider=new.provider, carrier_id=new.carrier_id, copy_of=None,
            sender_id=new.sender_id, body=new.body, media=new.media, attempts=1,
            next_attempt_at=now, expires_at=new.expires_at, created_at=now, updated_at=now,
            last_error=new.last_error, intake_key=new.intake_key, imdn=new.imdn,
        )


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store. ``state`` is QUEUED, or REJECTED with ``last_error`` saying why.
    ``intake_key`` identifies what it was made from (a journalled SIP MESSAGE): a second
    insert with the same key, like one with the same (provider, carrier_id), is a replay."""

    direction: Direction
    account: str
    extension: str
    remote: str
    body: str
    expires_at: float
    kind: Kind = Kind.TEXT
    state: State = State.QUEUED
    did: str | None = None
    provider: str | None = None
    carrier_id: str | None = None
    sender_id: str | None = None
    media: tuple[MediaRef, ...] = ()
    last_error: str | None = None
    event_detail: str = ""
    intake_key: str | None = None  # SIP journal key: a replayed MESSAGE is stored once
    imdn: ImdnRequest | None = None


def stored_as_given(new: NewMessage) -> bool:
    """Whether every backend stores ``new``'s text columns as they are: PostgreSQL keeps a
    NUL as U+FFFD (``postgresql._text``), SQLite keeps it. (Media and IMDN are stored as
    JSON, which escapes a NUL.)"""
    return not any("\0" in text for text in (
        new.account, new.extension, new.remote, new.body, new.did or "", new.provider or "",
        new.carrier_id or "", new.sender_id or "", new.last_error or "", new.intake_key or ""))


MEDIA_FIELDS = ("token", "filename", "content_type", "size", "sha256", "origin", "source_key",
                "created_at", "expires_at")


@dataclass(frozen=True, slots=True)
class StoredMedia:
    """A media file we hold: its bytes are under state_dir/media/<token> (SQLite) or in the
    database (PostgreSQL, so that every instance can serve it)."""

    token: str
    filename: str
    content_type: str
    size: int
    sha256: str
    origin: str
    source_key: str | None
    created_at: float
    expires_at: float

    @classmethod
    def from_row(cls, row: Row) -> StoredMedia:
        return cls(**{k: row[k] for k in MEDIA_FIELDS})


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    at: float
    state: str
    detail: str


def imdn_json(imdn: ImdnRequest | None) -> str | None:
    if imdn is None:
        return None
    return json.dumps({"message_id": imdn.message_id, "positive": imdn.positive,
                       "negative": imdn.negative})


def media_json(media: Iterable[MediaRef]) -> str:
    return json.dumps(
        [{k: v for k, v in (("url", m.url), ("content_type", m.content_type),
                            ("size", m.size)) if v is not None} for m in media]
    )
