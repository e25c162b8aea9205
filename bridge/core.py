"""The bridge's core: what happens to a text between the edges.

- A SIP MESSAGE is parsed, authorised and routed, then **stored** (queued, or rejected with a
  notice back to the sender) before anything else happens.
- A carrier webhook's events are routed and **stored** (deduplicated on the carrier's message
  id) before the web layer answers the carrier.
- The dispatchers then attempt each stored message through ``send_sms`` / ``send_sip``.

It sees neither pjsua2 nor aiohttp: the SIP sender and the providers are handed in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from bridge.dispatch import Done, Fail, Outcome, Retry
from bridge.model import (
    DeliveryReport,
    Direction,
    InboundEvent,
    InboundMessage,
    Kind,
    OutboundSms,
    SendFailed,
    Sent,
    SipMessage,
    State,
)
from bridge.numbers import InvalidNumber, to_e164
from bridge.providers.base import Provider
from bridge.routing import Refusal, Router
from bridge.settings import Settings
from bridge.sip.content import BodyError, parse_body, user_of
from bridge.store import NewMessage, Store, StoredMessage

log = logging.getLogger("bridge.core")

SipSender = Callable[[str, str, str, str], Awaitable[int]]  # account, target, from, body
# SIP answers that mean "not now" (phone offline, busy, overloaded) rather than "never".
SIP_RETRYABLE = frozenset({0, 404, 408, 480, 486, 500, 503, 504})


@dataclass(frozen=True, slots=True)
class Notifier:
    """Called after something was stored, so the right dispatcher looks at once."""

    outbound: Callable[[], None]
    inbound: Callable[[], None]


class Bridge:
    def __init__(
        self,
        settings: Settings,
        router: Router,
        store: Store,
        providers: Mapping[str, Provider],
        send_sip: SipSender,
        notify: Notifier,
    ) -> None:
        self.settings = settings
        self.router = router
        self.store = store
        self.providers = providers
        self.send_sip = send_sip
        self.notify = notify
        self.expiry = settings.delivery.expire_hours * 3600

    # --- phone -> SMS: intake ---------------------------------------------------------------

    async def on_sip_message(self, sip: SipMessage) -> None:
        """A MESSAGE arrived (pjsua already answered 200). Store it, or refuse it with a
        notice; never raise."""
        try:
            await self._on_sip_message(sip)
        except Exception:
            log.exception("SIP MESSAGE from %s (Call-ID %s) could not be handled",
                          sip.source, sip.call_id)

    async def _on_sip_message(self, sip: SipMessage) -> None:
        account = self.router.account_for_source(sip.account, sip.source)
        if account is None:
            log.warning("MESSAGE from %s refused: source not allowed (Call-ID %s)",
                        sip.source, sip.call_id)
            return
        extension = user_of(sip.from_uri)
        dialled = user_of(sip.to_uri)
        if not extension:
            log.warning("MESSAGE from %s refused: no user in From %s", sip.source, sip.from_uri)
            return
        refusal: str | None = None
        text = ""
        if len(sip.body) > self.settings.sip.max_body_bytes:
            refusal = f"the message is too long ({len(sip.body)} bytes)"
        else:
            try:
                text = parse_body(sip.content_type, sip.body).text
            except BodyError as exc:
                refusal = str(exc)
        route = None
        remote = _remote_guess(dialled, self.router.accounts[account].default_region)
        if refusal is None:
            sticky = await self.store.last_did_for(account, extension, remote)
            decision = self.router.outbound(account, extension, dialled, sticky)
            if isinstance(decision, Refusal):
                refusal = decision.reason
            else:
                route = decision
        now = time.time()
        if route is None:
            await self.store.insert([NewMessage(
                direction=Direction.OUT, account=account, extension=extension, remote=remote,
                body=text, expires_at=now, state=State.REJECTED, last_error=refusal,
                event_detail=f"refused: {refusal}",
            )])
            log.info("SMS from %s/%s to %s refused: %s", account, extension, dialled, refusal)
            await self._notice(account, extension, remote, f"SMS to {dialled} not sent: {refusal}")
            return
        (message_id,) = await self.store.insert([NewMessage(
            direction=Direction.OUT, account=account, extension=extension, remote=route.to,
            did=route.did, provider=route.provider, body=text, expires_at=now + self.expiry,
            event_detail=f"received by SIP from {sip.source} (Call-ID {sip.call_id})",
        )]) or (0,)
        log.info("message %d queued: %s/%s -> %s via %s from %s", message_id, account,
                 extension, route.to, route.provider, route.did)
        self.notify.outbound()

    # --- phone -> SMS: attempts -------------------------------------------------------------

    async def send_sms(self, message: StoredMessage) -> Outcome:
        provider = self.providers.get(message.provider or "")
        if provider is None:
            return Fail(f"provider {message.provider!r} is no longer configured")
        result = await provider.send(OutboundSms(
            message_id=message.id, from_number=message.did or "", to_number=message.remote,
            text=message.body, media=message.media, sender_id=message.sender_id,
        ))
        if isinstance(result, Sent):
            return Done(State.SENT, result.carrier_id,
                        f"accepted by {provider.name} as {result.carrier_id}")
        assert isinstance(result, SendFailed)
        reason = f"{provider.name}: {result.reason}"
        if result.code is not None and result.code in provider.opt_out_codes:
            return Fail(f"{message.remote} has opted out of texts from {message.did}")
        return Retry(reason, result.retry_after) if result.retryable else Fail(reason)

    # --- SMS -> phone: intake ---------------------------------------------------------------

    async def on_carrier_events(self, provider: Provider, events: Sequence[InboundEvent]) -> None:
        """Store what a verified webhook carried. Raises only if the store fails, in which
        case the web layer answers 5xx and the carrier retries."""
        for event in events:
            if isinstance(event, DeliveryReport):
                await self._on_report(provider, event)
            else:
                await self._on_inbound(provider, event)

    async def _on_inbound(self, provider: Provider, event: InboundMessage) -> None:
        text, carrier_id = event.text, event.carrier_id
        if event.part is not None:
            joined = await self.store.add_part(
                provider.name, event.from_number, event.part.ref, event.part.index,
                event.part.total, event.carrier_id, event.text,
            )
            if joined is None:
                return  # more parts to come
            text, carrier_id = joined
        now = time.time()
        route = self.router.inbound(provider.name, event.to_number)
        if isinstance(route, Refusal):
            stored = await self.store.insert([NewMessage(
                direction=Direction.IN, account="", extension="", remote=event.from_number,
                did=event.to_number, provider=provider.name, carrier_id=carrier_id, body=text,
                media=event.media, expires_at=now, state=State.REJECTED,
                last_error=route.reason, event_detail=f"refused: {route.reason}",
            )])
            if stored is not None:
                log.warning("inbound %s %s refused: %s", provider.name, carrier_id, route.reason)
            return
        copies = [
            NewMessage(
                direction=Direction.IN, account=route.account, extension=ext,
                remote=event.from_number, did=route.did, provider=provider.name,
                carrier_id=carrier_id if i == 0 else None, body=text, media=event.media,
                expires_at=now + self.expiry,
                event_detail=f"received from {provider.name} ({carrier_id})",
            )
            for i, ext in enumerate(route.extensions)
        ]
        ids = await self.store.insert(copies)
        if ids is None:
            log.info("inbound %s %s is a repeat; already stored", provider.name, carrier_id)
            return
        log.info("inbound %s %s stored as %s for %s", provider.name, carrier_id,
                 ",".join(map(str, ids)), ",".join(route.extensions))
        self.notify.inbound()

    async def _on_report(self, provider: Provider, report: DeliveryReport) -> None:
        detail = f"{provider.name} reports {report.carrier_status or report.state}"
        if report.error:
            detail += f" ({report.error})"
        message = await self.store.apply_report(provider.name, report.carrier_id,
                                                report.state, detail)
        if message is None:
            return
        log.info("message %d %s: %s", message.id, report.state, detail)
        await self.finished(message, report.state, detail)

    # --- SMS -> phone: attempts -------------------------------------------------------------

    async def send_sip_message(self, message: StoredMessage) -> Outcome:
        target = self.router.extension_uri(message.account, message.extension)
        domain = self.router.domain(message.account)
        if message.remote.lstrip("+").isdigit():  # E.164 or a short code
            from_uri = f'"{message.remote}" <sip:{message.remote}@{domain}>'
        else:
            from_uri = f'"SMS bridge" <sip:sms-bridge@{domain}>'
        text = message.body
        if message.media:
            text = "\n".join([text, *(m.url for m in message.media)]).strip()
        code = await self.send_sip(message.account, target, from_uri, text)
        if 200 <= code < 300:
            return Done(State.DELIVERED, detail=f"extension {message.extension} answered {code}")
        reason = f"extension {message.extension} answered {code}" if code else "no answer"
        return Retry(reason) if code in SIP_RETRYABLE else Fail(reason)

    # --- telling the sender -----------------------------------------------------------------

    async def finished(self, message: StoredMessage, state: State, detail: str) -> None:
        """A message reached a new outcome; tell its sender if the policy says so."""
        if message.direction != Direction.OUT or message.kind != Kind.TEXT:
            return
        policy = self.settings.delivery.notify_sender
        if policy == "none" or (policy == "failures" and state != State.FAILED):
            return
        if state == State.FAILED:
            text = f"SMS to {message.remote} failed: {detail}"
        else:
            text = f"SMS to {message.remote}: {state}"
        await self._notice(message.account, message.extension, message.remote, text)

    async def _notice(self, account: str, extension: str, remote: str, text: str) -> None:
        """Queue a notice to a phone, from the number it was texting (so it shows in the
        same conversation). Stored like any text, so it survives an offline phone."""
        await self.store.insert([NewMessage(
            direction=Direction.IN, kind=Kind.NOTICE, account=account, extension=extension,
            remote=remote, body=text, expires_at=time.time() + self.expiry,
            event_detail="notice from the bridge",
        )])
        self.notify.inbound()


def _remote_guess(dialled: str, region: str) -> str:
    """The remote party as E.164 when the dialled string is a number, else as dialled."""
    try:
        return to_e164(dialled, region)
    except InvalidNumber:
        return dialled[:40] or "unknown"
