"""MMS in the core: what a delivery attempt does with media, in both directions.

- Carrier -> phone: each media item is copied from the carrier (``MediaStore.fetch``) before
  the SIP MESSAGE goes out, then shown per the extension's ``media_format``: ``link`` (the
  text plus one short link per item, for any phone that shows text) or ``rcs-ft`` (one RCS
  file-transfer MESSAGE per item, then the text). An item we refuse (type, size) becomes a
  short note in the text; a failed download is retried like an offline phone.
- Phone -> carrier: files a phone put in its MESSAGE are saved at intake; files it offered by
  URL (RCS file transfer) are ours already (uploaded to /upload) or copied at the attempt.
  The carrier is handed our public URLs; a carrier that cannot send MMS gets the links as
  text instead.

No SIP or HTTP objects here: providers and the media store are handed in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bridge import fthttp
from bridge.dispatch import Fail, Retry
from bridge.media import MediaStore, Refused
from bridge.model import Content, MediaRef
from bridge.providers.base import MediaFetchError, Provider
from bridge.store import StoredMedia, StoredMessage

log = logging.getLogger("bridge.mms")

TEXT_PLAIN = "text/plain;charset=UTF-8"
# A carrier's 403/404 on a media URL will not heal; after this many attempts the text goes
# out with a note rather than waiting for the message to expire.
GIVE_UP_AFTER_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class SipPart:
    """One MESSAGE of a delivery to a phone."""

    body: str
    content_type: str = TEXT_PLAIN


def with_links(text: str, media: tuple[MediaRef, ...] | list[str]) -> str:
    urls = [m.url if isinstance(m, MediaRef) else m for m in media]
    return "\n".join([text, *urls]).strip()


async def phone_parts(
    media: MediaStore | None, provider: Provider | None, message: StoredMessage, fmt: str,
) -> list[SipPart] | Retry:
    """The MESSAGEs that deliver an inbound (possibly MMS) text to a phone, or a Retry when
    a media download failed and is worth another go."""
    if not message.media:
        return [SipPart(message.body)]
    if media is None:  # no media store (unit wiring): pass the carrier links on
        return [SipPart(with_links(message.body, message.media))]
    items: list[StoredMedia] = []
    notes: list[str] = []
    for ref in message.media:
        if provider is None:
            notes.append(Refused("its carrier is no longer configured").note)
            continue
        try:
            got = await media.fetch(provider, ref)
        except MediaFetchError as exc:
            if exc.retryable or message.attempts < GIVE_UP_AFTER_ATTEMPTS:
                return Retry(f"media download failed: {exc}")
            log.warning("message %d: media item dropped after %d attempts: %s", message.id,
                        message.attempts, exc)
            notes.append(Refused(f"it could not be downloaded ({exc})").note)
            continue
        if isinstance(got, Refused):
            notes.append(got.note)
        else:
            items.append(got)
    text = "\n".join(t for t in (message.body, *notes) if t)
    if fmt == "rcs-ft" and items:
        parts = [SipPart(fthttp.build(media.url(i), i.filename, i.content_type, i.size,
                                      i.expires_at), fthttp.CONTENT_TYPE) for i in items]
        return [*parts, SipPart(text)] if text else parts
    return [SipPart(with_links(text, [media.url(i) for i in items]) or "(empty message)")]


async def refusal_of(media: MediaStore | None, content: Content) -> str | None:
    """Why the media a phone sent cannot go out (told to the sender), or None."""
    if not (content.media or content.attachments):
        return None
    if media is None:
        return "this bridge does not send MMS"
    for attachment in content.attachments:
        refused = media.check(attachment.content_type, len(attachment.data))
        if refused is None and not media.settings.allows(attachment.content_type):
            refused = Refused(f"files of type {attachment.content_type} are not accepted")
        if refused is not None:
            return f"the attachment is {refused.reason}" if refused.reason.startswith(
                "too large") else refused.reason
    for ref in content.media:
        own = await media.own(ref.url)
        if own is None and ref.url.startswith(media.public_url + "/media/"):
            return "the attachment has expired; send it again"
        refused = media.check(*(own.content_type, own.size) if own else
                              (ref.content_type, ref.size))
        if refused is not None:
            return f"the attachment is {refused.reason}" if refused.reason.startswith(
                "too large") else refused.reason
    return None


async def keep_phone_media(media: MediaStore | None, content: Content) -> tuple[MediaRef, ...]:
    """Save the files a phone sent in its MESSAGE; return every item as the URL the carrier
    will fetch (files offered by URL keep theirs, ours pointing at the current public URL)."""
    if media is None:
        return ()
    refs: list[MediaRef] = []
    for attachment in content.attachments:
        saved = await media.save(attachment.data, attachment.content_type,
                                 attachment.filename or "attachment", origin="phone")
        refs.append(media.ref(saved))
    for ref in content.media:
        own = await media.own(ref.url)
        refs.append(media.ref(own) if own is not None else ref)
    return tuple(refs)


async def carrier_media(
    media: MediaStore | None, provider: Provider, message: StoredMessage,
) -> tuple[MediaRef, ...] | Retry | Fail:
    """The media of an outbound text as URLs the carrier can fetch: ours. A file a phone
    offered on another file server is copied here first."""
    if media is None or not message.media:
        return message.media
    refs: list[MediaRef] = []
    for ref in message.media:
        own = await media.own(ref.url)
        if own is not None:
            refs.append(media.ref(own))
            continue
        try:
            got = await media.fetch(provider, ref, credentials=False)
        except MediaFetchError as exc:
            reason = f"the attachment could not be downloaded: {exc}"
            return Retry(reason) if exc.retryable else Fail(reason, "media")
        if isinstance(got, Refused):
            return Fail(f"the attachment was not sent: {got.reason}", "media")
        refs.append(media.ref(got))
    return tuple(refs)
