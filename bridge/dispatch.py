"""Dispatch: workers that take due messages from the store and attempt them, with retry,
capped exponential backoff with jitter, and expiry.

The policy (``next_attempt``) is a pure function; the ``Dispatcher`` is the loop around it.
One dispatcher per direction: phone->SMS attempts a carrier API call, SMS->phone attempts a
SIP MESSAGE. The attempt itself is a callable supplied by the app, so this module knows
neither carriers nor SIP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bridge.metrics import Metrics
from bridge.model import Direction, State
from bridge.store import Store, StoredMessage

log = logging.getLogger("bridge.dispatch")


@dataclass(frozen=True, slots=True)
class Done:
    """The attempt succeeded: the message moves to ``state`` (SENT or DELIVERED)."""

    state: State
    carrier_id: str | None = None
    detail: str = ""
    carrier_parts: tuple[str, ...] | None = None  # ids of a multi-part message's parts


@dataclass(frozen=True, slots=True)
class Retry:
    """Worth another attempt later (carrier 5xx/429/timeout, phone offline)."""

    reason: str
    after: float | None = None  # e.g. the carrier's Retry-After
    carrier_parts: tuple[str, ...] | None = None  # parts accepted so far: not sent again


@dataclass(frozen=True, slots=True)
class Fail:
    """Permanent: no attempt will succeed."""

    reason: str
    category: str = "other"  # coarse class for the failures metric (see bridge.metrics)
    carrier_parts: tuple[str, ...] | None = None  # parts that went out before the refusal


@dataclass(frozen=True, slots=True)
class Defer:
    """Not now, and not a failure: try again in exactly ``after`` seconds (pacing)."""

    after: float
    reason: str


Outcome = Done | Retry | Fail | Defer
Attempt = Callable[[StoredMessage], Awaitable[Outcome]]
Finished = Callable[[StoredMessage, State, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    first: float = 5.0
    maximum: float = 300.0
    jitter: float = 0.2  # +/- fraction, so retries after an outage do not arrive in lockstep


def next_attempt(
    policy: RetryPolicy, attempts: int, now: float, expires_at: float,
    retry_after: float | None = None, rand: Callable[[], float] = random.random,
) -> float | None:
    """When to try again after ``attempts`` failed attempts, or None if the message will
    have expired by then."""
    delay = min(policy.maximum, policy.first * 2 ** max(0, attempts - 1))
    delay *= 1 + policy.jitter * (2 * rand() - 1)
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.maximum))
    at = now + delay
    return None if at > expires_at else at


class Dispatcher:
    def __init__(
        self,
        direction: Direction,
        store: Store,
        attempt: Attempt,
        finished: Finished,
        policy: RetryPolicy,
        concurrency: int,
        metrics: Metrics | None = None,
    ) -> None:
        self.direction = direction
        self.metrics = metrics or Metrics()
        self.store = store
        self.attempt = attempt
        self.finished = finished
        self.policy = policy
        self.concurrency = concurrency
        self._wake = asyncio.Event()
        self._stopping = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._reserved = 0  # slots promised to messages being stored now (``reserve``)
        self._backlog = True  # more may be due than the last claim took: claims go first
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """New work was stored: look now rather than at the next scheduled time."""
        self._wake.set()

    def reserve(self) -> bool:
        """Promise a slot to a message about to be stored, so that it is stored already
        claimed and attempted at once (no claim round trip, no wait for the next cycle).
        Only while nothing else is due: a backlog is claimed first, in its order. A True
        must be followed by exactly one ``take``."""
        if (self._stopping or self._backlog
                or len(self._in_flight) + self._reserved >= self.concurrency):
            return False
        self._reserved += 1
        return True

    def take(self, message: StoredMessage | None) -> None:
        """The reserved slot's message, stored and claimed; None if it was not (refused, a
        replay, or the store failed). After shutdown began the message is left claimed:
        the next start's recovery queues it again."""
        self._reserved -= 1
        if message is not None and not self._stopping:
            self._begin(message)
        else:
            self._wake.set()  # the slot is free again

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"dispatch-{self.direction}")

    async def stop(self, deadline: float = 5.0) -> None:
        """Stop taking work; give in-flight attempts until ``deadline`` seconds to finish.
        Whatever is still in flight stays SENDING in the store and resumes after restart."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        if self._in_flight:
            _, pending = await asyncio.wait(self._in_flight, timeout=deadline)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def _run(self) -> None:
        failing = False
        while not self._stopping:
            try:
                await self._cycle()
            except Exception as exc:  # the store is failing (disk full, I/O error)
                if not failing:
                    log.error("%s dispatcher cannot read the queue (%s); trying again every "
                              "second", self.direction, exc or type(exc).__name__)
                failing = True
                await asyncio.sleep(1)
            else:
                if failing:
                    log.info("%s dispatcher reads the queue again", self.direction)
                failing = False

    async def _cycle(self) -> None:
        self._wake.clear()
        free = self.concurrency - len(self._in_flight) - self._reserved
        claimed = await self.store.claim_due(self.direction, free) if free > 0 else []
        for message in claimed:
            self._begin(message)
        self._backlog = free <= 0 or len(claimed) == free
        if self._backlog and free > 0:
            return  # there may be more due right now
        timeout = 1.0 if free <= 0 else await self._sleep_for()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _sleep_for(self) -> float:
        due = await self.store.next_due_at(self.direction)
        if due is None:
            return 30.0
        return min(30.0, max(0.0, due - time.time()))

    def _begin(self, message: StoredMessage) -> None:
        task = asyncio.create_task(self._work(message))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _work(self, message: StoredMessage) -> None:
        try:
            try:
                outcome = await self.attempt(message)
            except asyncio.CancelledError:
                # shutdown gave up waiting for this attempt: queue it for the next start
                await self.store.transition(message.id, State.QUEUED,
                                            next_attempt_at=time.time(),
                                            detail="interrupted by shutdown")
                raise
            except Exception as exc:  # a bug in an adapter must not lose the message
                log.exception("message %d: attempt raised", message.id)
                outcome = Retry(f"internal error: {type(exc).__name__}")
            await self._record_until_stored(message, outcome)
        except BaseException:
            self._wake.set()
            raise
        else:
            # The freed slot matters to the queue only when the last look left due messages
            # behind; a retry or a deferral may be due sooner than the queue's next look.
            # Otherwise no look: in steady traffic every text is handed over already claimed,
            # and a look after each one was two queries per text for nothing.
            if self._backlog or not isinstance(outcome, Done | Fail):
                self._wake.set()

    async def _record_until_stored(self, message: StoredMessage, outcome: Outcome) -> None:
        """Record an attempt's outcome, however long the store needs to take writes again: the
        attempt happened (the carrier or the phone has the text), so it must not stay
        ``sending`` nor be made again. Shutdown leaves it to the restart's recovery."""
        delay = 0.5
        while True:
            try:
                await self._record(message, outcome)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping:
                    log.error("message %d: outcome not recorded before shutdown (%s); it is "
                              "attempted again at the next start", message.id, exc)
                    return
                log.warning("message %d: cannot record its outcome yet (%s); retrying in "
                            "%.1f s", message.id, exc or type(exc).__name__, delay,
                            extra={"message_id": message.id})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _record(self, message: StoredMessage, outcome: Outcome) -> None:
        ids = {"message_id": message.id}
        if isinstance(outcome, Defer):
            await self.store.transition(message.id, State.QUEUED,
                                        next_attempt_at=time.time() + outcome.after,
                                        detail=outcome.reason)
            return
        if isinstance(outcome, Done):
            # a delivery report may have overtaken us: count only a change we made
            if await self.store.transition(message.id, outcome.state, detail=outcome.detail,
                                           carrier_id=outcome.carrier_id,
                                           carrier_parts=outcome.carrier_parts):
                self.metrics.outcome(self.direction, message.provider, outcome.state)
            log.info("message %d %s: %s", message.id, outcome.state, outcome.detail, extra=ids)
            if outcome.state == State.DELIVERED or self.direction == Direction.OUT:
                await self.finished(message, outcome.state, outcome.detail)
            return
        if isinstance(outcome, Retry):
            at = next_attempt(self.policy, message.attempts, time.time(), message.expires_at,
                              outcome.after)
            if at is not None:
                await self.store.transition(
                    message.id, State.QUEUED, next_attempt_at=at, error=outcome.reason,
                    detail=f"attempt {message.attempts} failed: {outcome.reason}; "
                           f"retrying in {at - time.time():.0f} s",
                    carrier_parts=outcome.carrier_parts,
                )
                self.metrics.retried(self.direction)
                log.info("message %d attempt %d failed (%s); retry in %.0f s",
                         message.id, message.attempts, outcome.reason, at - time.time(),
                         extra=ids)
                return
            reason = f"expired after {message.attempts} attempts; last error: {outcome.reason}"
            category = "expired"
        else:
            reason, category = outcome.reason, outcome.category
        if await self.store.transition(message.id, State.FAILED, error=reason,
                                       carrier_parts=outcome.carrier_parts):
            self.metrics.outcome(self.direction, message.provider, State.FAILED, category)
        log.warning("message %d failed: %s", message.id, reason, extra=ids)
        await self.finished(message, State.FAILED, reason)
