"""Media over HTTP: the files behind MMS links, and the upload endpoint softphones use as
their file-transfer server.

    GET  /media/{token}/{filename}   the file, while it lives; 404 for anything else
    POST /upload/{upload_token}      Linphone's file-transfer server protocol: an empty POST
                                     (answered 204), then multipart/form-data with the file
                                     (answered 200 with the RCS file-transfer XML for it)

A media URL's token is its only secret, so nothing else about a file is revealed: unknown,
expired and mismatched names all look alike (404). Files are served with ``nosniff`` and a
sandboxing CSP, so a picture (or an SVG with script in it) cannot act as a web page here.
"""

from __future__ import annotations

import logging
import mimetypes

from aiohttp import BodyPartReader, web

from bridge import fthttp
from bridge.media import MediaStore, describe_size
from bridge.providers.base import constant_time_equal

log = logging.getLogger("bridge.web.media")

CHUNK = 64 * 1024


class MediaRoutes:
    def __init__(self, media: MediaStore, upload_token: str | None) -> None:
        self.media = media
        self.upload_token = upload_token or None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/media/{token}/{filename}", self._get)
        app.router.add_post("/upload/{key}", self._upload)

    async def _get(self, request: web.Request) -> web.StreamResponse:
        item = await self.media.get(request.match_info["token"])
        if item is None or item.filename != request.match_info["filename"]:
            raise web.HTTPNotFound()
        headers = {
            "Content-Type": item.content_type,
            "Content-Disposition": f'inline; filename="{item.filename}"',
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'",
            "Cache-Control": "private, max-age=86400",
        }
        if self.media.in_database:  # PostgreSQL: any instance serves any link
            data = await self.media.read(item)
            if data is None:
                raise web.HTTPNotFound()
            return web.Response(body=data, headers=headers)
        path = self.media.path(item)
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers=headers)

    async def _upload(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if self.upload_token is None or not constant_time_equal(key, self.upload_token):
            raise web.HTTPNotFound()  # no hint that an upload endpoint exists
        if not request.body_exists:
            return web.Response(status=204)  # Linphone's first, empty POST
        if not request.content_type.startswith("multipart/"):
            raise web.HTTPUnsupportedMediaType()
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.filename:
                continue  # form fields, nested multiparts: not the file
            ctype = part.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if ctype in ("", "application/octet-stream"):
                ctype = mimetypes.guess_type(part.filename)[0] or "application/octet-stream"
            if not self.media.settings.allows(ctype):
                log.info("upload refused: type %s", ctype)
                raise web.HTTPUnsupportedMediaType()
            data = await self._read_capped(part)
            saved = await self.media.save(data, ctype, part.filename, origin="phone")
            log.info("upload stored as %s (%s, %s)", saved.filename, ctype,
                     describe_size(saved.size))
            body = fthttp.build(self.media.url(saved), saved.filename, saved.content_type,
                                saved.size, saved.expires_at)
            return web.Response(text=body, content_type=fthttp.CONTENT_TYPE, charset="utf-8")
        raise web.HTTPBadRequest()

    async def _read_capped(self, part: BodyPartReader) -> bytes:
        limit = self.media.settings.max_bytes
        chunks, size = [], 0
        while chunk := await part.read_chunk(CHUNK):
            size += len(chunk)
            if size > limit:
                log.info("upload refused: over %s", describe_size(limit))
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size)
            chunks.append(chunk)
        return b"".join(chunks)
