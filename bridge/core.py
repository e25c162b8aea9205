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
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from bridge import mms
from bridge.dispatch import Defer, Done, Fail, Outcome, Retry
from bridge.media import MediaStore
from bridge.metrics import Metrics
from bridge.model import (
    Content,
    DeliveryReport,
    Direction,
    ImdnRequest,
    InboundEvent,
    InboundMessage,
    Kind,
    MediaRef,
    OutboundSms,
    SendFailed,
    Sent,
    SipOutcome,
    SipResult,
    SipText,
    State,
)
from bridge.numbers import InvalidNumber, to_e164
from bridge.optout import Keyword, keyword_of
from bridge.pacing import Pacer
from bridge.providers.base import MMS_UNSUPPORTED_CODES, Provider
from bridge.routing import OutboundRoute, Refusal, Router
from bridge.settings import Settings
from bridge.store import NewMessage, Store, StoredMessage, Transaction
from bridge.textparts import split_marked, utf8_len

log = logging.getLogger("bridge.core")


class SipSender(Protocol):
    """Sends one MESSAGE; returns its classified final answer (``SipEngine.send``)."""

    def __call__(self, account: str, target: str, from_uri: str, body: str,
                 content_type: str = ...) -> Awaitable[SipResult]: ...


class ImdnFormatter(Protocol):
    """Renders a delivery notification for a phone (``bridge.sip.imdn.render``): the body
    and its content type."""

    def __call__(self, request: ImdnRequest, delivered: bool, from_uri: str,
                 to_uri: str) -> tuple[str, str]: ...


# The SIP side's limit for one MESSAGE to a phone, unless the app says otherwise.
DEFAULT_SIP_PART_BYTES = 2600
# At most this many notices to one extension a minute: nothing a phone sends can start a
# loop of notices (and a phone that answers everything is not flooded).
NOTICES_PER_MINUTE = 12
STORE_TROUBLE = "the bridge cannot store texts right now; send it again in a few minutes"


def _no_slot() -> bool:
    return False


def _nothing(message: StoredMessage | None) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Notifier:
    """Called after something was stored, so the right dispatcher looks at once. A
    dispatcher with a free slot and no backlog takes a new text as it is stored instead
    (``Dispatcher.reserve`` / ``take``): stored already claimed, attempted at once."""

    outbound: Callable[[], None]
    inbound: Callable[[], None]
    reserve_outbound: Callable[[], bool] = _no_slot
    take_outbound: Callable[[StoredMessage | None], None] = _nothing
    reserve_inbound: Callable[[], bool] = _no_slot
    take_inbound: Callable[[StoredMessage | None], None] = _nothing


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
        *,
        imdn_formatter: ImdnFormatter | None = None,
        sip_part_bytes: int = DEFAULT_SIP_PART_BYTES,
    ) -> None:
        self.media = media  # None: media links are passed through as they came
        self.imdn_formatter = imdn_formatter  # None: phones' IMDN requests are not answered
        self.sip_part_bytes = sip_part_bytes
        self._notices: defaultdict[tuple[str, str], deque[float]] = defaultdict(deque)
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

    async def on_sip_text(self, sip: SipText) -> bool:
        """A MESSAGE arrived, decoded and checked by the SIP edge. Store it, or refuse it
        with a notice; if the store cannot take it, tell the sender at once and return False
        (the TCP edge then answers 503 instead of 200). Never raises."""
        try:
            await self._on_sip_text(sip)
            return True
        except Exception as exc:
            log.error("MESSAGE from %s (Call-ID %s) could not be stored: %s", sip.source,
                      sip.call_id, exc or type(exc).__name__)
            try:
                await self._tell_now(sip, f"SMS to {sip.to_user or 'that number'} not sent: "
                                          f"{STORE_TROUBLE}")
            except Exception as notice_exc:
                log.error("could not tell %s either: %s", sip.from_user or sip.source,
                          notice_exc or type(notice_exc).__name__)
            return False

    async def _on_sip_text(self, sip: SipText) -> None:
        account = self.router.account_for_source(sip.account, sip.source, sip.from_host)
        if account is None:
            log.warning("MESSAGE from %s refused: source not allowed (Call-ID %s)",
                        sip.source, sip.call_id)
            return
        refusal, content = sip.refusal, sip.content
        if refusal is None and content is not None:
            refusal = await mms.refusal_of(self.media, content)
        if not sip.from_user:  # nobody to tell: kept as refused, so `show` explains it
            refusal = refusal or "the sender's address (From) has no usable user part"
        await self._route_and_store(
            account, sip.from_user or "unknown", sip.to_user, content.text if content else "",
            refusal, f"received by SIP from {sip.source} (Call-ID {sip.call_id})",
            notice=bool(sip.from_user), content=content if refusal is None else None,
            intake_key=sip.intake_key, imdn=sip.imdn)

    async def _tell_now(self, sip: SipText, text: str) -> None:
        """A notice sent straight to the phone, without the store (which is failing)."""
        account = self.router.account_for_source(sip.account, sip.source, sip.from_host)
        if account is None or not sip.from_user or not self._may_notify(account, sip.from_user):
            return
        remote = _remote_guess(sip.to_user, self.router.accounts[account].default_region)
        await self.send_sip(account, self.router.extension_uri(account, sip.from_user),
                            self._from_uri(account, remote), text)

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
        return Submission(message_id or None, refusal)

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
        intake_key: str | None = None, imdn: ImdnRequest | None = None,
    ) -> tuple[int, str | None]:
        """The one path every phone->SMS text takes (SIP MESSAGE or admin API): permission
        and routing, then stored as queued, or as rejected with the reason. Returns the
        message id (0 for a SIP journal replay of a text already stored) and the refusal.

        The checks that read the store and the insert are one store transaction (one round
        trip per text); a text with media has its files saved between the two, and only
        once it may go out."""
        remote = _remote_guess(dialled, self.router.accounts[account].default_region)
        now = time.time()

        def rejected(reason: str | None) -> NewMessage:
            return NewMessage(
                direction=Direction.OUT, account=account, extension=extension, remote=remote,
                body=text, expires_at=now, state=State.REJECTED, last_error=reason,
                event_detail=f"refused: {reason} ({origin})", intake_key=intake_key)

        def queued(route: OutboundRoute, media: tuple[MediaRef, ...] = ()) -> NewMessage:
            return NewMessage(
                direction=Direction.OUT, account=account, extension=extension,
                remote=route.to, did=route.did, provider=route.provider, body=text,
                expires_at=now + self.expiry, sender_id=route.sender_id, event_detail=origin,
                media=media, intake_key=intake_key, imdn=imdn)

        def decide(tx: Transaction) -> tuple[OutboundRoute | None, str | None]:
            if refusal is not None:
                return None, refusal
            decision = self.router.outbound(account, extension, dialled,
                                            tx.last_did_for(account, extension, remote))
            if isinstance(decision, Refusal):
                return None, decision.reason
            reason = self._guard(tx, decision)
            return (None, reason) if reason else (decision, None)

        def decide_and_store(tx: Transaction) -> tuple[OutboundRoute | None, str | None,
                                                       list[int] | None, StoredMessage | None]:
            route, reason = decide(tx)
            if route is None:
                return route, reason, tx.insert([rejected(reason)]), None
            return route, reason, tx.insert([queued(route)], claim=slot), tx.claimed

        claimed: StoredMessage | None = None
        slot = self.notify.reserve_outbound()
        try:
            if content is not None and (content.media or content.attachments):
                route, refusal = await self.store.atomically(decide)
                media = await mms.keep_phone_media(self.media, content) if route else ()
                if route is None:
                    ids = await self.store.insert([rejected(refusal)])
                elif slot:
                    ids, claimed = await self.store.insert_claimed([queued(route, media)])
                else:
                    ids = await self.store.insert([queued(route, media)])
            else:
                route, refusal, ids, claimed = await self.store.atomically(decide_and_store)
        finally:
            if slot:
                self.notify.take_outbound(claimed)
        message_id = ids[0] if ids else 0
        if route is None:
            if not message_id:
                return 0, refusal  # a replayed MESSAGE, refused (and told) the first time
            self.metrics.outcome(Direction.OUT, None, State.REJECTED, "refused")
            log.info("message %d from %s/%s to %s refused: %s", message_id, account, extension,
                     dialled, refusal, extra={"message_id": message_id})
            if notice:
                await self._notice(account, extension, remote,
                                   f"SMS to {dialled} not sent: {refusal}")
            return message_id, refusal or "refused"
        if not message_id:
            return 0, None  # a replayed MESSAGE, stored the first time
        log.info("message %d queued: %s/%s -> %s via %s from %s", message_id, account,
                 extension, route.to, route.provider, route.did,
                 extra={"message_id": message_id})
        if claimed is None:
            self.notify.outbound()
        return message_id, None

    def _guard(self, tx: Transaction, route: OutboundRoute) -> str | None:
        """Checks that need the store: opt-outs and the extension's rate caps (toll fraud)."""
        if tx.is_opted_out(route.did, route.to):
            return f"{route.to} has opted out of texts from {route.did} (they sent STOP)"
        ext = self.router.extensions[(route.account, route.extension)]
        now = time.time()
        for limit, window, what in ((ext.max_per_minute, 60, "minute"),
                                    (ext.max_per_day, 86400, "day")):
            if limit is not None and tx.count_sent_by(
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
        with self.metrics.carrier_timer(provider.name).time():
            result = await provider.send(OutboundSms(
                message_id=message.id, from_number=message.did or "", to_number=message.remote,
                text=text, media=media, sender_id=message.sender_id,
                accepted_parts=message.carrier_parts,
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
            ids = ", ".join(result.parts or (result.carrier_id,))
            return Done(State.SENT, result.carrier_id, f"accepted by {provider.name} as {ids}",
                        carrier_parts=result.parts or None)
        assert isinstance(result, SendFailed)
        reason = f"{provider.name}: {result.reason}"
        parts = result.accepted_parts or None  # a partial failure: keep what went out
        if result.code is not None and result.code in provider.opt_out_codes:
            if message.did:
                await self.store.set_opt_out(message.did, message.remote, True, "carrier")
            return Fail(f"{message.remote} has opted out of texts from {message.did} "
                        "(they sent STOP)", "opted_out", parts)
        return (Retry(reason, result.retry_after, parts) if result.retryable
                else Fail(reason, "carrier_refused", parts))

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
        claimed: StoredMessage | None = None
        if self.notify.reserve_inbound():
            try:
                ids, claimed = await self.store.insert_claimed(copies)
            finally:
                self.notify.take_inbound(claimed)
        else:
            ids = await self.store.insert(copies)
        if ids is None:
            log.info("inbound %s %s is a repeat; already stored", provider.name, carrier_id)
            return
        log.info("inbound %s %s stored as %s for %s", provider.name, carrier_id,
                 ",".join(map(str, ids)), ",".join(route.extensions))
        if claimed is None or len(ids) > 1:  # the copies for other extensions wait queued
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
        from_uri = self._from_uri(message.account, message.remote)
        if message.kind == Kind.IMDN:
            return await self._send_imdn(message, target, from_uri)
        ext = self.router.extensions.get((message.account, message.extension))
        fmt = (ext.media_format if ext else None) or self.settings.media.phone_format
        parts = await mms.phone_parts(self.media, self.providers.get(message.provider or ""),
                                      message, fmt)
        if isinstance(parts, Retry):
            return parts
        result = SipResult(0, SipOutcome.RETRY, "nothing sent")
        # a failure part-way repeats the earlier parts on the next attempt (at least once)
        for body, content_type in self._fitted(parts):
            with self.metrics.sip_latency.time():
                result = await self.send_sip(message.account, target, from_uri, body,
                                             content_type)
            if result.outcome is not SipOutcome.DELIVERED:
                break
        return self._sip_outcome(message, result)

    def _fitted(self, parts: list[mms.SipPart]) -> list[tuple[str, str]]:
        """The MESSAGEs to send: a text too long for one SIP packet goes as several, in
        order and marked (1/n), (2/n), ..."""
        out: list[tuple[str, str]] = []
        for part in parts:
            if part.content_type == mms.TEXT_PLAIN and utf8_len(part.body) > self.sip_part_bytes:
                out.extend((piece, part.content_type)
                           for piece in split_marked(part.body, self.sip_part_bytes))
            else:
                out.append((part.body, part.content_type))
        return out

    def _sip_outcome(self, message: StoredMessage, result: SipResult) -> Outcome:
        who = f"extension {message.extension}"
        if result.outcome is SipOutcome.DELIVERED:
            return Done(State.DELIVERED, detail=f"{who} answered {result.code}")
        if result.outcome is SipOutcome.TOO_LARGE:  # never heals: not worth days of retries
            return Fail(f"{who} cannot be sent it: {result.reason or 'too large'}",
                        "phone_refused")
        reason = f"{who} answered {result.code}" if result.code else (result.reason
                                                                       or "no answer")
        return Retry(reason) if result.outcome is SipOutcome.RETRY else Fail(reason,
                                                                             "phone_refused")

    async def _send_imdn(self, message: StoredMessage, target: str, from_uri: str) -> Outcome:
        if message.imdn is None or self.imdn_formatter is None:
            return Fail("no delivery notification to send", "other")
        body, content_type = self.imdn_formatter(message.imdn, message.body == "delivered",
                                                 from_uri, target)
        result = await self.send_sip(message.account, target, from_uri, body, content_type)
        return self._sip_outcome(message, result)

    def _from_uri(self, account: str, remote: str) -> str:
        """Who a MESSAGE to a phone is from: the texter's number, so a reply goes to them."""
        domain = self.router.domain(account)
        if remote.lstrip("+").isascii() and remote.lstrip("+").isdigit():  # E.164, short code
            return f'"{remote}" <sip:{remote}@{domain}>'
        return f'"SMS bridge" <sip:sms-bridge@{domain}>'

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
        if message.imdn is not None and state in (State.DELIVERED, State.FAILED):
            await self._queue_imdn(message, state)
        policy = self.settings.delivery.notify_sender
        if policy == "none" or (policy == "failures" and state != State.FAILED):
            return
        if state == State.FAILED:
            text = f"SMS to {message.remote} failed: {detail}"
        else:
            text = f"SMS to {message.remote}: {state}"
        await self._notice(message.account, message.extension, message.remote, text)

    async def _queue_imdn(self, message: StoredMessage, state: State) -> None:
        """The phone asked (RFC 5438) to hear of delivery: queue the notification that shows
        its text as delivered or failed. Stored like a notice, so an offline phone gets it."""
        assert message.imdn is not None
        delivered = state == State.DELIVERED
        if not (message.imdn.positive if delivered else message.imdn.negative):
            return
        await self.store.insert([NewMessage(
            direction=Direction.IN, kind=Kind.IMDN, account=message.account,
            extension=message.extension, remote=message.remote, did=message.did,
            body="delivered" if delivered else "failed", imdn=message.imdn,
            expires_at=time.time() + self.expiry,
            event_detail=f"delivery notification for message {message.id} ({state})",
        )])
        self.notify.inbound()

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

    def _may_notify(self, account: str, extension: str) -> bool:
        """At most NOTICES_PER_MINUTE notices to one extension: past that they are logged and
        dropped, so no peer, however it answers, can start a loop."""
        now = time.monotonic()
        sent = self._notices[(account, extension)]
        while sent and now - sent[0] > 60:
            sent.popleft()
        if len(sent) >= NOTICES_PER_MINUTE:
            log.warning("notice to %s/%s not sent: more than %d notices a minute", account,
                        extension, NOTICES_PER_MINUTE)
            return False
        sent.append(now)
        return True

    async def _notice(self, account: str, extension: str, remote: str, text: str) -> None:
        """Queue a notice to a phone, from the number it was texting (so it shows in the
        same conversation). Stored like any text, so it survives an offline phone."""
        if not self._may_notify(account, extension):
            return
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
