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
from typing import Protocol

from bridge import mms
from bridge.dispatch import Defer, Done, Fail, Outcome, Retry
from bridge.media import MediaStore
from bridge.metrics import Metrics
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
from bridge.optout import Keyword, keyword_of
from bridge.pacing import Pacer
from bridge.providers.base import MMS_UNSUPPORTED_CODES, Provider
from bridge.routing import OutboundRoute, Refusal, Router
from bridge.settings import Settings
from bridge.sip.content import BodyError, Content, host_of, parse_body, user_of
from bridge.store import NewMessage, Store, StoredMessage

log = logging.getLogger("bridge.core")


class SipSender(Protocol):
    """Sends one MESSAGE; returns the final SIP status code (``SipEngine.send``)."""

    def __call__(self, account: str, target: str, from_uri: str, body: str,
                 content_type: str = ...) -> Awaitable[int]: ...


# SIP answers that mean "not now" (phone offline, busy, overloaded) rather than "never".
SIP_RETRYABLE = frozenset({0, 404, 408, 480, 486, 500, 503, 504})


@dataclass(frozen=True, slots=True)
class Notifier:
    """Called after something was stored, so the right dispatcher looks at once."""

    outbound: Callable[[], None]
    inbound: Callable[[], None]


@dataclass(frozen=True, slots=True)
class Submission:
    """What an operator's action (admin API) came to. ``refusal`` says in plain words why
    it did not happen; ``message_id`` is None when no message was found or stored."""

    message_id: int | None
    refusal: str | None = None


class Bridge:
    def __init__(
        self,
        settings: Settings,
        router: Router,
        store: Store,
        providers: Mapping[str, Provider],
        send_sip: SipSender,
        notify: Notifier,
        metrics: Metrics | None = None,
        media: MediaStore | None = None,
    ) -> None:
        self.media = media  # None: media links are passed through as they came
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.router = router
        self.store = store
        self.providers = providers
        self.send_sip = send_sip
        self.notify = notify
        self.expiry = settings.delivery.expire_hours * 3600
        self.pacer = Pacer(store)  # slots booked in the store: the pace holds across instances

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
        account = self.router.account_for_source(sip.account, sip.source,
                                                 host_of(sip.from_uri))
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
        content: Content | None = None
        if len(sip.body) > self.settings.sip.max_body_bytes:
            refusal = f"the message is too long ({len(sip.body)} bytes)"
        else:
            try:
                content = parse_body(sip.content_type, sip.body)
                text = content.text
                refusal = await mms.refusal_of(self.media, content)
            except BodyError as exc:
                refusal = str(exc)
        await self._route_and_store(
            account, extension, dialled, text, refusal,
            f"received by SIP from {sip.source} (Call-ID {sip.call_id})", notice=True,
            content=content)

    async def submit(self, extension: str, to: str, text: str,
                     account: str | None = None) -> Submission:
        """A text an operator sends on behalf of an extension (admin API). It takes the same
        permission and routing path as a SIP MESSAGE from that extension; a refusal is
        answered to the operator instead of being sent to the phone as a notice."""
        if account is None:
            owners = {self.settings.account_of_extension(e) for e in self.settings.extensions
                      if e.extension == extension}
            if len(owners) == 1:
                (account,) = owners
            elif len(self.settings.accounts) == 1:
                account = self.settings.accounts[0].name
            elif owners:
                return Submission(None, f"extension {extension} exists in accounts "
                                        f"{', '.join(sorted(owners))}: say which one")
            else:
                return Submission(None, f"extension {extension} is in no account: say which "
                                        "account it belongs to")
        if account not in self.router.accounts:
            return Submission(None, f"there is no account named {account!r}")
        size = len(text.encode("utf-8"))
        refusal = (f"the message is too long ({size} bytes)"
                   if size > self.settings.sip.max_body_bytes else None)
        message_id, refusal = await self._route_and_store(
            account, extension, to, text, refusal, "submitted through the admin API",
            notice=False)
        return Submission(message_id, refusal)

    async def retry(self, message_id: int) -> Submission:
        """An operator's retry (admin API): a failed or queued message is attempted now."""
        previous = await self.store.requeue(message_id, time.time() + self.expiry,
                                            "queued again by the operator")
        if previous is None:
            return Submission(None, f"there is no message {message_id}")
        if previous not in (State.FAILED, State.QUEUED):
            return Submission(message_id, f"message {message_id} is {previous}: only failed "
                                          "or queued messages can be retried")
        log.info("message %d queued again by the operator (was %s)", message_id, previous,
                 extra={"message_id": message_id})
        self.notify.outbound()
        self.notify.inbound()
        return Submission(message_id)

    async def _route_and_store(
        self, account: str, extension: str, dialled: str, text: str, refusal: str | None,
        origin: str, *, notice: bool, content: Content | None = None,
    ) -> tuple[int, str | None]:
        """The one path every phone->SMS text takes (SIP MESSAGE or admin API): permission
        and routing, then stored as queued, or as rejected with the reason. Returns the
        message id and the refusal, if any."""
        route = None
        remote = _remote_guess(dialled, self.router.accounts[account].default_region)
        if refusal is None:
            sticky = await self.store.last_did_for(account, extension, remote)
            decision = self.router.outbound(account, extension, dialled, sticky)
            if isinstance(decision, Refusal):
                refusal = decision.reason
            else:
                refusal = await self._guard(decision)
                route = None if refusal else decision
        now = time.time()
        if route is None:
            (message_id,) = await self.store.insert([NewMessage(
                direction=Direction.OUT, account=account, extension=extension, remote=remote,
                body=text, expires_at=now, state=State.REJECTED, last_error=refusal,
                event_detail=f"refused: {refusal} ({origin})",
            )]) or (0,)
            self.metrics.outcome(Direction.OUT, None, State.REJECTED, "refused")
            log.info("message %d from %s/%s to %s refused: %s", message_id, account, extension,
                     dialled, refusal, extra={"message_id": message_id})
            if notice:
                await self._notice(account, extension, remote,
                                   f"SMS to {dialled} not sent: {refusal}")
            return message_id, refusal or "refused"
        # the phone's files are saved only once the text may go out
        media = await mms.keep_phone_media(self.media, content) if content else ()
        (message_id,) = await self.store.insert([NewMessage(
            direction=Direction.OUT, account=account, extension=extension, remote=route.to,
            did=route.did, provider=route.provider, body=text, expires_at=now + self.expiry,
            sender_id=route.sender_id, event_detail=origin, media=media,
        )]) or (0,)
        log.info("message %d queued: %s/%s -> %s via %s from %s", message_id, account,
                 extension, route.to, route.provider, route.did,
                 extra={"message_id": message_id})
        self.notify.outbound()
        return message_id, None

    async def _guard(self, route: OutboundRoute) -> str | None:
        """Checks that need the store: opt-outs and the extension's rate caps (toll fraud)."""
        if await self.store.is_opted_out(route.did, route.to):
            return f"{route.to} has opted out of texts from {route.did} (they sent STOP)"
        ext = self.router.extensions[(route.account, route.extension)]
        now = time.time()
        for limit, window, what in ((ext.max_per_minute, 60, "minute"),
                                    (ext.max_per_day, 86400, "day")):
            if limit is not None and await self.store.count_sent_by(
                    route.account, route.extension, now - window) >= limit:
                return f"extension {route.extension} has reached its limit of {limit} per {what}"
        return None

    # --- phone -> SMS: attempts -------------------------------------------------------------

    async def send_sms(self, message: StoredMessage) -> Outcome:
        provider = self.providers.get(message.provider or "")
        if provider is None:
            return Fail(f"provider {message.provider!r} is no longer configured", "no_provider")
        media = await mms.carrier_media(self.media, provider, message)
        if isinstance(media, Retry | Fail):
            return media
        text = message.body
        if media and not provider.supports_mms:
            text, media = mms.with_links(text, media), ()
        pacing = self.router.pacing_of(message.did or "")
        if pacing is not None:
            wait = await self.pacer.wait(message.did or "", message.id, pacing, time.time())
            if wait > 0:
                return Defer(wait, f"paced: {message.did} may send again in {wait:.1f} s")
        with self.metrics.carrier_latency.labels(provider.name).time():
            result = await provider.send(OutboundSms(
                message_id=message.id, from_number=message.did or "", to_number=message.remote,
                text=text, media=media, sender_id=message.sender_id,
            ))
            if (isinstance(result, SendFailed) and media
                    and result.code in MMS_UNSUPPORTED_CODES):
                log.info("message %d: %s cannot send MMS; sending links instead", message.id,
                         provider.name)
                result = await provider.send(OutboundSms(
                    message_id=message.id, from_number=message.did or "",
                    to_number=message.remote, text=mms.with_links(text, media),
                    sender_id=message.sender_id,
                ))
        if isinstance(result, Sent):
            return Done(State.SENT, result.carrier_id,
                        f"accepted by {provider.name} as {result.carrier_id}")
        assert isinstance(result, SendFailed)
        reason = f"{provider.name}: {result.reason}"
        if result.code is not None and result.code in provider.opt_out_codes:
            if message.did:
                await self.store.set_opt_out(message.did, message.remote, True, "carrier")
            return Fail(f"{message.remote} has opted out of texts from {message.did} "
                        "(they sent STOP)", "opted_out")
        return (Retry(reason, result.retry_after) if result.retryable
                else Fail(reason, "carrier_refused"))

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
                self.metrics.outcome(Direction.IN, provider.name, State.REJECTED, "refused")
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
        keyword = keyword_of(text)
        if keyword is not None and keyword[0] is not Keyword.HELP:
            opted_out = keyword[0] is Keyword.OPT_OUT
            await self.store.set_opt_out(route.did, event.from_number, opted_out, keyword[1])
            log.info("%s %s texts from %s (%s)", event.from_number,
                     "opted out of" if opted_out else "opted in to", route.did, keyword[1])

    async def _on_report(self, provider: Provider, report: DeliveryReport) -> None:
        detail = f"{provider.name} reports {report.carrier_status or report.state}"
        if report.error:
            detail += f" ({report.error})"
        opted_out = (report.state == State.FAILED and report.error is not None
                     and _error_code(report.error) in provider.opt_out_codes)
        if opted_out:
            detail = f"the recipient has opted out (STOP); {detail}"
        message = await self.store.apply_report(provider.name, report.carrier_id,
                                                report.state, detail)
        if message is None:
            return
        self.metrics.outcome(Direction.OUT, provider.name, report.state,
                             "carrier_report" if report.state == State.FAILED else None)
        log.info("message %d %s: %s", message.id, report.state, detail,
                 extra={"message_id": message.id})
        if opted_out and message.did:
            await self.store.set_opt_out(message.did, message.remote, True, "carrier")
        await self.finished(message, report.state, detail)

    # --- SMS -> phone: attempts -------------------------------------------------------------

    async def send_sip_message(self, message: StoredMessage) -> Outcome:
        target = self.router.extension_uri(message.account, message.extension)
        domain = self.router.domain(message.account)
        if message.remote.lstrip("+").isdigit():  # E.164 or a short code
            from_uri = f'"{message.remote}" <sip:{message.remote}@{domain}>'
        else:
            from_uri = f'"SMS bridge" <sip:sms-bridge@{domain}>'
        ext = self.router.extensions.get((message.account, message.extension))
        fmt = (ext.media_format if ext else None) or self.settings.media.phone_format
        parts = await mms.phone_parts(self.media, self.providers.get(message.provider or ""),
                                      message, fmt)
        if isinstance(parts, Retry):
            return parts
        code = 0
        for part in parts:  # a failure part-way repeats the earlier parts on the next attempt
            with self.metrics.sip_latency.time():
                if part.content_type == mms.TEXT_PLAIN:
                    code = await self.send_sip(message.account, target, from_uri, part.body)
                else:
                    code = await self.send_sip(message.account, target, from_uri, part.body,
                                               part.content_type)
            if not 200 <= code < 300:
                break
        if 200 <= code < 300:
            return Done(State.DELIVERED, detail=f"extension {message.extension} answered {code}")
        reason = f"extension {message.extension} answered {code}" if code else "no answer"
        return Retry(reason) if code in SIP_RETRYABLE else Fail(reason, "phone_refused")

    # --- telling the sender -----------------------------------------------------------------

    async def finished(self, message: StoredMessage, state: State, detail: str) -> None:
        """A message reached a new outcome: tell its sender if the policy says so, or hand an
        undeliverable inbound text to its number's fallback extension."""
        if message.direction == Direction.IN and message.kind == Kind.TEXT:
            if state == State.FAILED:
                await self._fall_back(message)
            return
        if message.kind != Kind.TEXT:
            return
        policy = self.settings.delivery.notify_sender
        if policy == "none" or (policy == "failures" and state != State.FAILED):
            return
        if state == State.FAILED:
            text = f"SMS to {message.remote} failed: {detail}"
        else:
            text = f"SMS to {message.remote}: {state}"
        await self._notice(message.account, message.extension, message.remote, text)

    async def _fall_back(self, message: StoredMessage) -> None:
        if message.provider is None or message.did is None:
            return
        route = self.router.inbound(message.provider, message.did)
        if isinstance(route, Refusal) or route.fallback in (None, message.extension):
            return
        assert route.fallback is not None
        if message.extension != route.extensions[0]:
            return  # only the first target's failure goes to the fallback, once
        ids = await self.store.insert([NewMessage(
            direction=Direction.IN, account=message.account, extension=route.fallback,
            remote=message.remote, did=message.did, provider=message.provider,
            body=message.body, media=message.media, expires_at=time.time() + self.expiry,
            event_detail=f"fallback for message {message.id} (extension {message.extension} "
                         "could not take it)",
        )])
        log.info("message %d handed to fallback extension %s as %s", message.id,
                 route.fallback, ids)
        self.notify.inbound()

    async def _notice(self, account: str, extension: str, remote: str, text: str) -> None:
        """Queue a notice to a phone, from the number it was texting (so it shows in the
        same conversation). Stored like any text, so it survives an offline phone."""
        await self.store.insert([NewMessage(
            direction=Direction.IN, kind=Kind.NOTICE, account=account, extension=extension,
            remote=remote, body=text, expires_at=time.time() + self.expiry,
            event_detail="notice from the bridge",
        )])
        self.notify.inbound()


def _error_code(error: str) -> str:
    """The carrier's code at the start of a report's error text ("4775: ...", "9 opted out")."""
    return error.replace(":", " ").split(" ", 1)[0]


def _remote_guess(dialled: str, region: str) -> str:
    """The remote party as E.164 when the dialled string is a number, else as dialled."""
    number = dialled.rpartition("*")[2]  # without a DID / sender ID selector
    try:
        return to_e164(number, region)
    except InvalidNumber:
        return dialled[:40] or "unknown"
