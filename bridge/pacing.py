"""Per-DID pacing: the send rates carriers impose on a number (10DLC, toll-free, Commio).

Texts over the pace are not dropped: each is given the next free slot and waits in the queue
until then. The slots are booked in the store (``Store.reserve_slot``), one DID at a time
under a lock, so the pace holds however many bridge instances send from the number; this
module is the pure rule that picks the slot. Callers pass ``now`` (wall-clock seconds).
"""

from __future__ import annotations

from typing import Protocol

from bridge.settings import PacingSettings

DAY = 86400.0
HOUR = 3600.0


def next_slot(now: float, last: float | None, hour_ago_nth: float | None,
              day_ago_nth: float | None, pacing: PacingSettings) -> float:
    """The earliest send time at or after ``now`` that keeps the pace, given the latest slot
    booked, and the ``per_hour``-th and ``per_day``-th latest (None where fewer are booked)."""
    slot = now
    if last is not None and pacing.per_second:
        slot = max(slot, last + 1.0 / pacing.per_second)
    if hour_ago_nth is not None and pacing.per_hour:
        slot = max(slot, hour_ago_nth + HOUR)
    if day_ago_nth is not None and pacing.per_day:
        slot = max(slot, day_ago_nth + DAY)
    return slot


class SlotBook(Protocol):
    async def reserve_slot(self, did: str, message_id: int, pacing: PacingSettings,
                           now: float) -> float: ...


class Pacer:
    def __init__(self, book: SlotBook) -> None:
        self.book = book

    async def wait(self, did: str, message_id: int, pacing: PacingSettings,
                   now: float) -> float:
        """Seconds ``message_id`` must wait before it may go out from ``did`` (0: send now).
        A message told to wait keeps its slot: asking again at that time returns 0."""
        return await self.book.reserve_slot(did, message_id, pacing, now)
