"""Prometheus metrics: what the bridge did, and what is waiting.

Each ``Metrics`` owns its own ``CollectorRegistry`` (no module-level state), so two bridges in
one process, or tests, never share counters. Counters are bumped where the events happen
(dispatch outcomes, carrier reports, webhook refusals); the queue and registration gauges are
computed at scrape time from the store and the SIP engine, so they can never drift.

Label values are small, fixed sets (directions, provider and account names from the config,
states, failure reasons), never numbers or message text.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

PREFIX = "sip_sms_bridge"
DIRECTIONS = ("out", "in")
# Messages with no carrier: a phone's text refused before routing picked one, and the
# bridge's own notices to phones.
NO_PROVIDER = "none"

# direction -> (messages waiting, created_at of the oldest of them or None)
QueueStats = Callable[[], Awaitable[Mapping[str, tuple[int, float | None]]]]
# account name -> registered?
Registrations = Callable[[], Mapping[str, bool]]

# Carrier APIs answer in tens to hundreds of milliseconds; a timeout is 15 s by default.
CARRIER_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)
# A SIP MESSAGE on a LAN is answered in milliseconds; 32 s is SIP's transaction timeout.
SIP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 32.0)


@dataclass(slots=True)
class WebhookSeen:
    """For the console: when a carrier's last authenticated webhook came, and how many were
    refused (since this process started). The first thing to check when inbound texts stop."""

    last_valid_at: float | None = None
    auth_failures: int = 0
    last_failure_at: float | None = None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            f"{PREFIX}_messages", "Messages that reached an outcome. direction: out = phone to "
            "SMS, in = SMS to phone. state: sent (a carrier accepted it), delivered, failed or "
            "rejected (refused by policy). An outbound text counts once as sent and again when "
            "its delivery report arrives. provider is 'none' for a refused phone text and for "
            "the bridge's own notices to phones.",
            ["direction", "provider", "state"], registry=r)
        self.failures = Counter(
            f"{PREFIX}_failures", "Messages that failed or were rejected, by coarse reason: "
            "refused (routing/permission), expired, carrier_refused, opted_out, carrier_report "
            "(a failed delivery report), phone_refused, media (an MMS attachment could not "
            "be fetched or offered), no_provider, other.",
            ["direction", "provider", "reason"], registry=r)
        self.retries = Counter(
            f"{PREFIX}_retries", "Attempts that failed in a way worth retrying and were "
            "rescheduled.", ["direction"], registry=r)
        self.carrier_latency = Histogram(
            f"{PREFIX}_carrier_request_seconds", "Time a carrier API send took, whatever "
            "its outcome.", ["provider"], buckets=CARRIER_BUCKETS, registry=r)
        self.sip_latency = Histogram(
            f"{PREFIX}_sip_send_seconds", "Time from sending a SIP MESSAGE to a phone to "
            "its final answer.", buckets=SIP_BUCKETS, registry=r)
        self.webhook_auth_failures = Counter(
            f"{PREFIX}_webhook_auth_failures", "Webhook requests refused because their "
            "signature, token or source did not check out.", ["provider"], registry=r)
        self.queue_depth = Gauge(
            f"{PREFIX}_queue_depth", "Messages waiting for an attempt or in one "
            "(queued or sending).", ["direction"], registry=r)
        self.queue_oldest_age = Gauge(
            f"{PREFIX}_queue_oldest_age_seconds", "Age of the oldest message waiting "
            "(0 when none is).", ["direction"], registry=r)
        self.registration_up = Gauge(
            f"{PREFIX}_registration_up", "1 while the SIP account is registered with its "
            "PBX, else 0.", ["account"], registry=r)
        self.registration_holder = Gauge(
            f"{PREFIX}_registration_holder", "1 for the instance that holds the SIP "
            "account's registration lease (several instances on PostgreSQL).",
            ["account", "instance"], registry=r)
        self._queue_stats: QueueStats | None = None
        self._registrations: Registrations | None = None
        self.webhooks: dict[str, WebhookSeen] = {}  # provider name -> its webhooks
        self._holders: Callable[[], Mapping[str, str | None]] | None = None
        # label children of the per-text metrics by metric and label values: few
        # (directions x providers x states); labels() builds and locks on every call
        self._children: dict[tuple[object, ...], Any] = {}

    def observe_state(self, queue_stats: QueueStats, registrations: Registrations) -> None:
        """Where the scrape-time gauges come from (wired by the app)."""
        self._queue_stats = queue_stats
        self._registrations = registrations

    def observe_holders(self, holders: Callable[[], Mapping[str, str | None]]) -> None:
        """Which instance holds each account's registration lease (wired by the app)."""
        self._holders = holders

    # --- events -----------------------------------------------------------------------------

    def outcome(self, direction: str, provider: str | None, state: str,
                reason: str | None = None) -> None:
        """A message reached ``state``; ``reason`` (a failure class) for failed/rejected."""
        name = provider or NO_PROVIDER
        self._child(self.messages, str(direction), name, str(state)).inc()
        if reason is not None:
            self.failures.labels(str(direction), name, reason).inc()

    def carrier_timer(self, provider: str) -> Histogram:
        """The carrier latency histogram of ``provider``, looked up once."""
        return self._child(self.carrier_latency, provider)

    def _child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, built once (a text passes here several times)."""
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def retried(self, direction: str) -> None:
        self.retries.labels(str(direction)).inc()

    def webhook_refused(self, provider: str) -> None:
        self.webhook_auth_failures.labels(provider).inc()
        seen = self.webhooks.setdefault(provider, WebhookSeen())
        seen.auth_failures += 1
        seen.last_failure_at = time.time()

    def webhook_accepted(self, provider: str) -> None:
        """A webhook passed its carrier's authentication."""
        self.webhooks.setdefault(provider, WebhookSeen()).last_valid_at = time.time()

    # --- scrape -----------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Recompute the gauges that mirror current state."""
        if self._queue_stats is not None:
            stats = await self._queue_stats()
            now = time.time()
            for direction in DIRECTIONS:
                count, oldest = stats.get(direction, (0, None))
                self.queue_depth.labels(direction).set(count)
                self.queue_oldest_age.labels(direction).set(
                    max(0.0, now - oldest) if oldest is not None else 0.0)
        if self._registrations is not None:
            for account, up in self._registrations().items():
                self.registration_up.labels(account).set(1 if up else 0)
        if self._holders is not None:
            self.registration_holder.clear()
            for account, instance in self._holders().items():
                if instance:
                    self.registration_holder.labels(account, instance).set(1)

    async def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        await self.refresh()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
