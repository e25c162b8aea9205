"""MMS media we hold: the bytes (files under state_dir/media with SQLite; in the database with
PostgreSQL, so that whichever instance a link reaches serves it), their records in the store,
the policy on what we accept (types, size), the public URLs they are served at, and their
retention.

Each file is named by a random 128-bit token, which is also the secret part of its URL
(``public_url/media/<token>/<filename>``): whoever has the link may fetch the file until it
expires, nobody can guess one. Inbound media is copied from the carrier at the first delivery
attempt (carrier links expire, some need credentials, and a phone must never be handed a
carrier's credentials); outbound media is what a phone sent us, served to the carrier.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import mimetypes
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from bridge.model import MediaRef
from bridge.providers.base import MediaTooLarge, Provider
from bridge.settings import MediaSection
from bridge.store import Store, StoredMedia

log = logging.getLogger("bridge.media")

TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")  # secrets.token_urlsafe(16)
_OWN_PATH_RE = re.compile(r"/media/([A-Za-z0-9_-]{22})/[^/]+$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_FILENAME = 48
ORPHAN_GRACE_SECONDS = 3600.0  # a file being saved has no record yet: leave young ones alone
GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})


@dataclass(frozen=True, slots=True)
class Refused:
    """A media item we will not pass on, and why (shown on the phone instead of it)."""

    reason: str

    @property
    def note(self) -> str:
        return f"[attachment not shown: {self.reason}]"


def describe_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 10 * 1024:
        return f"{round(size / 1024)} KB"
    return f"{size / 1024:.1f} KB"


def safe_filename(name: str, content_type: str) -> str:
    """A file name safe in a URL path and a Content-Disposition header, with an extension
    that matches the content type when the original had none."""
    base = _UNSAFE.sub("_", unquote(name).rsplit("/", 1)[-1]).strip("._") or "media"
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, (mimetypes.guess_extension(content_type) or "").lstrip(".")
    stem = stem[: MAX_FILENAME - len(ext) - 1] or "media"
    return f"{stem}.{ext}" if ext else stem


def source_key(provider: str, url: str) -> str:
    return hashlib.sha256(f"{provider}\0{url}".encode()).hexdigest()


class MediaStore:
    def __init__(self, store: Store, directory: Path, settings: MediaSection,
                 public_url: str) -> None:
        self.store = store
        self.directory = directory
        self.settings = settings
        self.public_url = public_url.rstrip("/")
        self.retention = settings.retention_days * 86400

    # --- policy -----------------------------------------------------------------------------

    def check(self, content_type: str | None, size: int | None) -> Refused | None:
        """Why an item may not be passed on, or None if it may."""
        if size is not None and size > self.settings.max_bytes:
            return Refused(f"too large ({describe_size(size)}, at most "
                           f"{describe_size(self.settings.max_bytes)})")
        if content_type and content_type not in GENERIC_TYPES \
                and not self.settings.allows(content_type):
            return Refused(f"files of type {content_type} are not accepted")
        return None

    # --- files and records ------------------------------------------------------------------

    @property
    def in_database(self) -> bool:
        """The bytes live in the store (PostgreSQL), not in files: serve them with ``read``."""
        return self.store.keeps_media

    def path(self, media: StoredMedia) -> Path:
        return self.directory / media.token

    async def read(self, media: StoredMedia) -> bytes | None:
        """A live item's bytes, wherever they are kept (None if they are gone)."""
        if self.in_database:
            return await self.store.media_data(media.token)
        try:
            return await asyncio.to_thread(self.path(media).read_bytes)
        except OSError:
            return None

    def url(self, media: StoredMedia) -> str:
        return f"{self.public_url}/media/{media.token}/{media.filename}"

    def ref(self, media: StoredMedia) -> MediaRef:
        return MediaRef(self.url(media), media.content_type, media.size)

    async def save(
        self, data: bytes, content_type: str, name: str, *, origin: str,
        source: str | None = None, ttl: float | None = None,
    ) -> StoredMedia:
        """Write a file and record it. Returns the record to use: an existing one when the
        same carrier item was saved meanwhile (this file is then discarded)."""
        now = time.time()
        media = StoredMedia(
            token=secrets.token_urlsafe(16),
            filename=safe_filename(name, content_type),
            content_type=content_type,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            origin=origin,
            source_key=source,
            created_at=now,
            expires_at=now + (self.retention if ttl is None else ttl),
        )
        if self.in_database:  # the record and the bytes in one transaction
            return await self.store.add_media(media, data)
        await asyncio.to_thread(self._write, media.token, data)
        kept = await self.store.add_media(media)
        if kept.token != media.token:
            await asyncio.to_thread(self._unlink, media.token)
        return kept

    def _write(self, token: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / token
        partial = self.directory / f"{token}.part"
        with partial.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # a phone's picture exists nowhere else
        partial.replace(final)

    def _unlink(self, token: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / token).unlink()

    async def get(self, token: str, now: float | None = None) -> StoredMedia | None:
        """A live media item by token, or None (unknown, malformed or expired)."""
        if not TOKEN_RE.match(token):
            return None
        media = await self.store.get_media(token)
        if media is None or media.expires_at <= (time.time() if now is None else now):
            return None
        return media

    async def own(self, url: str) -> StoredMedia | None:
        """The live item a URL of ours points at (whatever host it was built with)."""
        match = _OWN_PATH_RE.search(urlsplit(url).path)
        return await self.get(match.group(1)) if match else None

    # --- copying from carriers and file servers ---------------------------------------------

    async def fetch(self, provider: Provider, ref: MediaRef, *,
                    credentials: bool = True) -> StoredMedia | Refused:
        """Our copy of a carrier's media item (downloaded now unless we already have it).
        ``credentials``: let the carrier adapter add its own (inbound MMS). Raises
        ``MediaFetchError`` when the download fails."""
        key = source_key(provider.name, ref.url)
        existing = await self.store.media_from_source(key, time.time())
        if existing is not None:
            return existing
        refused = self.check(ref.content_type, ref.size)
        if refused is not None:
            return refused
        limit = self.settings.max_bytes
        try:
            if credentials:
                data, ctype = await provider.fetch_media(ref.url, max_bytes=limit)
            else:
                data, ctype = await provider.download(ref.url, max_bytes=limit)
        except MediaTooLarge as exc:
            return Refused(f"too large (over {describe_size(max(exc.size, limit))}, at most "
                           f"{describe_size(limit)})")
        if ctype in GENERIC_TYPES:
            ctype = (ref.content_type or mimetypes.guess_type(urlsplit(ref.url).path)[0]
                     or "application/octet-stream")
        refused = self.check(ctype, len(data))
        if refused is None and not self.settings.allows(ctype):
            refused = Refused(f"files of type {ctype} are not accepted")
        if refused is not None:
            return refused
        name = urlsplit(ref.url).path
        return await self.save(data, ctype, name, origin="carrier", source=key)

    # --- retention --------------------------------------------------------------------------

    async def cleanup(self, now: float | None = None) -> int:
        """Delete expired media, then the oldest past the disk cap, then stray files (a
        crash between writing a file and recording it). Returns how many files went."""
        now = time.time() if now is None else now
        gone = await self.store.evict_media(now, self.settings.max_disk_bytes)
        if self.in_database:  # the bytes went with their records
            if gone:
                log.info("media retention: deleted %d items", len(gone))
            return len(gone)
        for media in gone:
            await asyncio.to_thread(self._unlink, media.token)
        known = await self.store.media_tokens()
        strays = await asyncio.to_thread(self._strays, known, now)
        if gone or strays:
            log.info("media retention: deleted %d files (%d without a record)",
                     len(gone) + strays, strays)
        return len(gone) + strays

    def _strays(self, known: set[str], now: float) -> int:
        if not self.directory.is_dir():
            return 0
        count = 0
        for path in self.directory.iterdir():
            if path.name in known or not path.is_file():
                continue
            with contextlib.suppress(FileNotFoundError):
                if now - path.stat().st_mtime > ORPHAN_GRACE_SECONDS:
                    path.unlink()
                    count += 1
        return count

    async def run_retention(self, interval: float) -> None:
        """The periodic clean-up task (started by the app)."""
        while True:
            try:
                await self.cleanup()
            except Exception:
                log.exception("media retention failed; trying again later")
            await asyncio.sleep(interval)
