"""Per-DID pacing: the send rates carriers impose on a number (10DLC, toll-free, Commio).

Texts over the pace are not dropped: each is given the next free slot and waits in the queue
until then. Pure and clock-free: callers pass ``now`` (wall-clock seconds).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from bridge.settings import PacingSettings

DAY = 86400.0
HOUR = 3600.0


@dataclass
class _Lane:
    slots: deque[float] = field(default_factory=deque)  # booked send times, ascending
    booked: dict[int, float] = field(default_factory=dict)  # message id -> its slot


class Pacer:
    def __init__(self) -> None:
        self._lanes: dict[str, _Lane] = {}

    def wait(self, did: str, message_id: int, pacing: PacingSettings, now: float) -> float:
        """Seconds ``message_id`` must wait before it may go out from ``did`` (0: send now).
        A message told to wait keeps its slot: asking again at that time returns 0."""
        lane = self._lanes.setdefault(did, _Lane())
        slot = lane.booked.get(message_id)
        if slot is not None:
            if slot <= now + 0.001:
                del lane.booked[message_id]
                return 0.0
            return slot - now
        while lane.slots and lane.slots[0] <= now - DAY:
            lane.slots.popleft()
        slot = now
        if lane.slots:
            if pacing.per_second:
                slot = max(slot, lane.slots[-1] + 1.0 / pacing.per_second)
            if pacing.per_hour and len(lane.slots) >= pacing.per_hour:
                slot = max(slot, lane.slots[-pacing.per_hour] + HOUR)
            if pacing.per_day and len(lane.slots) >= pacing.per_day:
                slot = max(slot, lane.slots[-pacing.per_day] + DAY)
        lane.slots.append(slot)
        if slot <= now:
            return 0.0
        lane.booked[message_id] = slot
        return slot - now
