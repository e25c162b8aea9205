"""The SIP intake journal: every MESSAGE pjsua answered 200 is on disk before it leaves the
SIP thread.

pjsua answers an out-of-dialog MESSAGE before the bridge sees it, and the store commits in
groups a few milliseconds later; a crash in between used to lose every MESSAGE waiting for
that commit. So the SIP thread appends each received MESSAGE, raw, to a journal segment with
one ``write(2)`` (no fsync: the kernel keeps it across a crash of the process; a power cut
is covered by the store's own commit moments later), and the core stores the text under the
journal key, which the store keeps unique. A segment is deleted once every MESSAGE in it has
been handled; at start-up the segments left by a crash are replayed through the normal
intake, and a MESSAGE that was already stored is recognised by its key and skipped.

Records are one line of JSON each; a line cut by the crash itself is skipped.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("bridge.sip")

ROLL_RECORDS = 5000  # a segment holds at most this many MESSAGEs ...
ROLL_SECONDS = 30.0  # ... or what arrived in this long, so finished segments go soon


@dataclass(frozen=True, slots=True)
class Record:
    key: str
    account: str
    source: str
    raw: bytes


@dataclass(slots=True)
class _Segment:
    path: Path
    fd: int | None
    opened: float
    written: int = 0
    done: int = 0


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._run = secrets.token_hex(4)  # keys stay unique across restarts
        self._seq = 0
        self._lock = threading.Lock()
        self._segments: dict[int, _Segment] = {}
        self._current: _Segment | None = None
        self._failing = False

    # --- start-up ---------------------------------------------------------------------------

    def left_over(self) -> list[Path]:
        """Segments a previous run left behind (it crashed, or stopped with work unhandled)."""
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("segment-*.jsonl"))

    @staticmethod
    def read(path: Path) -> Iterator[Record]:
        with path.open("rb") as segment:
            for line in segment:
                try:
                    item = json.loads(line)
                    yield Record(str(item["k"]), str(item["a"]), str(item["s"]),
                                 base64.b64decode(item["r"], validate=True))
                except (ValueError, KeyError, TypeError):
                    continue  # the last line of a crashed run may be cut short

    # --- SIP thread -------------------------------------------------------------------------

    def append(self, account: str, source: str, raw: bytes) -> str | None:
        """Write one received MESSAGE; its key, or None if it could not be written (disk full:
        the core then fails to store it too, and tells the sender)."""
        with self._lock:
            try:
                segment = self._segment()
                key = f"{self._run}-{self._seq}-{segment.written}"
                line = json.dumps({"k": key, "a": account, "s": source,
                                   "r": base64.b64encode(raw).decode("ascii")})
                assert segment.fd is not None
                os.write(segment.fd, line.encode("ascii") + b"\n")
            except OSError as exc:
                if not self._failing:
                    log.warning("SIP journal cannot be written (%s); texts rely on the store "
                                "alone until it can", exc.strerror or exc)
                self._failing = True
                return None
            if self._failing:
                log.info("SIP journal is written again")
                self._failing = False
            segment.written += 1
            return key

    def _segment(self) -> _Segment:
        current = self._current
        now = time.monotonic()
        if current is not None and (current.written >= ROLL_RECORDS
                                    or now - current.opened >= ROLL_SECONDS):
            self._close(current)
            current = None
        if current is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._seq += 1
            path = self.directory / f"segment-{time.time():017.6f}-{self._run}-{self._seq}.jsonl"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            current = _Segment(path, fd, now)
            self._segments[self._seq] = current
            self._current = current
        return current

    def _close(self, segment: _Segment) -> None:
        if segment.fd is not None:
            os.close(segment.fd)
            segment.fd = None
        if self._current is segment:
            self._current = None
        self._forget_if_done(segment)

    # --- asyncio side -----------------------------------------------------------------------

    def done(self, key: str | None) -> None:
        """The MESSAGE under ``key`` was handled (stored, or explained to its sender)."""
        if key is None:
            return
        run, _, rest = key.partition("-")
        if run != self._run:
            return
        with self._lock:
            segment = self._segments.get(int(rest.partition("-")[0]))
            if segment is not None:
                segment.done += 1
                self._forget_if_done(segment)

    def _forget_if_done(self, segment: _Segment) -> None:
        if segment.fd is None and segment.done >= segment.written:
            for seq, candidate in list(self._segments.items()):
                if candidate is segment:
                    del self._segments[seq]
            try:
                segment.path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("cannot delete SIP journal segment %s: %s", segment.path.name, exc)

    def close(self) -> None:
        """At a clean stop: close the open segment (deleted if everything in it was
        handled; otherwise replayed at the next start)."""
        with self._lock:
            if self._current is not None:
                self._close(self._current)
