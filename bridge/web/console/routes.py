"""The console's pages and its two JSON endpoints, on the bridge's own web server.

Every handler goes through ``_guard``: it finds the session, sends the signed-out to the
sign-in page (or answers 401 JSON), checks the CSRF token on every POST, and puts the
security headers on the answer. A tenant's reads are scoped in SQL (``accounts=``); a text
outside its accounts is answered exactly like one that does not exist (404), so a URL
reveals nothing either.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import re
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from aiohttp import web

from bridge.media import source_key
from bridge.metrics import Metrics
from bridge.model import FINAL_STATES, Direction, State
from bridge.providers.base import Provider
from bridge.settings import ConfigError, Settings, load_settings
from bridge.store import Store, StoredMessage
from bridge.web.admin import AdminActions, is_local_client
from bridge.web.console import views
from bridge.web.console.auth import (
    LOCAL_ADMIN,
    MAX_FAILURES,
    MAX_FAILURES_PER_ADDRESS,
    LoginLimiter,
    OneTimeLink,
    Session,
    Sessions,
    Users,
    Viewer,
    csrf_ok,
)

log = logging.getLogger("bridge.web.console")

PACKAGE = Path(__file__).parent
COOKIE = "sip_sms_console"
SESSION = "console.session"  # request key: the session a handler switched to
PAGE_SIZE = 50
OVERVIEW_CACHE = 3.0  # seconds
MAX_FIELD = 64 * 1024
STATIC = {"console.css": "text/css", "console.js": "text/javascript"}
_NUMBER = re.compile(r"^\+?[0-9]{2,15}$")
_FILTER_NUMBER = re.compile(r"^[0-9+ ()-]{1,20}$")
_EXTENSION = re.compile(r"^[A-Za-z0-9_.+-]{1,32}$")

Handler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]
Registrations = Callable[[], Mapping[str, Any]]


class Console:
    def __init__(self, settings: Settings, store: Store, actions: AdminActions,
                 metrics: Metrics, providers: Mapping[str, Provider],
                 registrations: Registrations) -> None:
        self.settings = settings
        self.store = store
        self.actions = actions
        self.metrics = metrics
        self.providers = providers
        self.registrations = registrations
        public = urlsplit(settings.bridge.public_url)
        self.prefix = public.path.rstrip("/")  # a reverse proxy's path, if any
        self.root = self.prefix + "/console"
        self.secure = public.scheme == "https"
        self.users = Users(settings.console.users)
        self.sessions = Sessions(settings.console.session_hours * 3600)
        self.by_name = LoginLimiter(MAX_FAILURES)
        self.by_address = LoginLimiter(MAX_FAILURES_PER_ADDRESS)
        self.link = None if self.users else OneTimeLink()
        self._link_file: Path | None = None
        self._overview_cache: dict[tuple[str, ...] | None, tuple[float, float, Any]] = {}
        self.secrets = views.secret_values(settings)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(PACKAGE / "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
            lstrip_blocks=True)
        self.env.filters.update(ago=views.ago, utc=views.utc, duration=views.duration)

    def __repr__(self) -> str:
        return "<Console>"

    # --- wiring ---------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        r, g = self.root, self._guard
        app.router.add_get(r, self._slash)
        app.router.add_get(r + "/", g(self._overview))
        app.router.add_get(r + "/login", g(self._login_form, signed_in=False))
        app.router.add_post(r + "/login", g(self._login, signed_in=False))
        app.router.add_get(r + "/login/once/{token}", g(self._once, signed_in=False))
        app.router.add_post(r + "/logout", g(self._logout))
        app.router.add_get(r + "/messages", g(self._messages))
        app.router.add_get(r + "/messages/{id}", g(self._message))
        app.router.add_post(r + "/messages/{id}/retry", g(self._retry))
        app.router.add_get(r + "/conversation", g(self._conversation))
        app.router.add_get(r + "/send", g(self._send_form))
        app.router.add_post(r + "/send", g(self._send))
        app.router.add_get(r + "/config", g(self._config))
        app.router.add_get(r + "/api/messages", g(self._api_messages, api=True))
        app.router.add_get(r + "/api/messages/{id}", g(self._api_message, api=True))
        app.router.add_get(r + "/static/{name}", self._static)

    def login_link(self, port: int) -> str | None:
        """The one-time link for this machine, when no users are configured (else None)."""
        if self.link is None or self.link.token is None:
            return None
        web_cfg = self.settings.web
        scheme = "https" if web_cfg.tls_cert_file else "http"
        host = "[::1]" if ":" in web_cfg.listen and web_cfg.listen != "::" else "127.0.0.1"
        return f"{scheme}://{host}:{port}{self.root}/login/once/{self.link.token}"

    def announce(self, port: int, state_dir: Path) -> None:
        """At start, with no users: print the one-time login link where only the person
        running the bridge sees it (the terminal, and a file only its user can read), never
        in the log."""
        link = self.login_link(port)
        if link is None:
            return
        path = self._link_file = state_dir / "console-login-link"
        path.unlink(missing_ok=True)
        path.touch(mode=0o600)
        path.write_text(link + "\n", encoding="ascii")
        log.info("console: no [[console.users]] configured; a one-time login link for this "
                 "machine is in %s", path)
        if sys.stdout.isatty():
            print(f"\n  Web console (one-time link, this machine only):\n    {link}\n",
                  flush=True)

    # --- plumbing -------------------------------------------------------------------------

    def _guard(self, handler: Handler, *, signed_in: bool = True,
               api: bool = False) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def guarded(request: web.Request) -> web.StreamResponse:
            session = self.sessions.get(request.cookies.get(COOKIE))
            if signed_in and (session is None or session.viewer is None):
                if api:
                    response: web.StreamResponse = web.json_response(
                        {"error": "sign in first"}, status=401)
                elif request.method == "GET":
                    response = self._redirect(f"{self.root}/login?" + urlencode(
                        {"next": request.path_qs}))
                else:
                    response = self._error(request, None, 403, "Sign in first.")
                return self._secured(response)
            if request.method == "POST":
                form = await request.post()
                if not csrf_ok(session, form.get("csrf")):
                    who = session.viewer.name if session and session.viewer else "anonymous"
                    log.warning("console: %s %s refused: missing or wrong CSRF token (%s, %s)",
                                request.method, request.path, who, request.remote)
                    return self._secured(self._error(
                        request, session, 403, "This form has expired or came from another "
                        "site. Reload the page and try again."))
            if session is None:
                session = self.sessions.new()
            response = await handler(request, session)
            session = request.get(SESSION, session)  # a handler may have replaced it
            # Secure when public_url is https; not for a browser on this machine talking
            # plain HTTP to loopback (the one-time link), which nobody can intercept
            secure = self.secure and (request.secure or not is_local_client(request))
            response.set_cookie(COOKIE, session.id, path=self.root + "/", httponly=True,
                                samesite="Strict", secure=secure)
            return self._secured(response)

        return guarded

    def _secured(self, response: web.StreamResponse) -> web.StreamResponse:
        h = response.headers
        h["Content-Security-Policy"] = (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        h["X-Frame-Options"] = "DENY"
        h["X-Content-Type-Options"] = "nosniff"
        h["Referrer-Policy"] = "no-referrer"
        h.setdefault("Cache-Control", "no-store")
        if self.secure:
            h["Strict-Transport-Security"] = "max-age=31536000"
        return response

    def _render(self, request: web.Request, session: Session | None, template: str,
                status: int = 200, **context: Any) -> web.Response:
        flash, messages = (session.flash, list(session.flash)) if session else ([], [])
        flash.clear()
        html = self.env.get_template(template).render(
            root=self.root, viewer=session.viewer if session else None,
            csrf=session.csrf if session else "", flash=messages, path=request.path,
            now=time.time(), **context)
        return web.Response(text=views.scrub(html, self.secrets), status=status,
                            content_type="text/html", charset="utf-8")

    def _error(self, request: web.Request, session: Session | None, status: int,
               text: str) -> web.Response:
        return self._render(request, session, "error.html", status=status, status_code=status,
                            text=text)

    def _not_found(self, request: web.Request, session: Session) -> web.Response:
        return self._error(request, session, 404, "There is no such text (or it belongs to a "
                                                  "tenant you do not manage).")

    def _redirect(self, location: str) -> web.Response:
        return web.Response(status=303, headers={"Location": location})

    def _scope(self, session: Session) -> tuple[str, ...] | None:
        assert session.viewer is not None
        return session.viewer.accounts

    async def _slash(self, request: web.Request) -> web.StreamResponse:
        return self._redirect(self.root + "/")

    async def _static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC:
            return web.Response(status=404, text="404 Not Found")
        return self._secured(web.Response(
            body=(PACKAGE / "static" / name).read_bytes(), content_type=STATIC[name],
            headers={"Cache-Control": "private, max-age=300"}))

    # --- signing in and out ---------------------------------------------------------------

    def _safe_next(self, target: object) -> str:
        text = target if isinstance(target, str) else ""
        return text if text.startswith(self.root + "/") and "//" not in text else self.root + "/"

    async def _login_form(self, request: web.Request, session: Session) -> web.StreamResponse:
        if session.viewer is not None:
            return self._redirect(self._safe_next(request.query.get("next")))
        return self._login_page(request, session)

    def _login_page(self, request: web.Request, session: Session, error: str = "",
                    status: int = 200, name: str = "") -> web.Response:
        return self._render(request, session, "login.html", status=status, error=error,
                            next=self._safe_next(request.query.get("next")),
                            no_users=not self.users, name=name)

    async def _login(self, request: web.Request, session: Session) -> web.StreamResponse:
        form = await request.post()
        name = str(form.get("name") or "")[:64]
        password = str(form.get("password") or "")[:1024]
        address, user = [str(request.remote)], [name.lower()]
        wait = max(self.by_address.wait_seconds(address), self.by_name.wait_seconds(user))
        if wait > 0:
            log.warning("console: sign-in as %r from %s refused: too many failed attempts",
                        name, request.remote)
            return self._login_page(
                request, session, f"Too many failed sign-ins. Try again in "
                f"{views.duration(wait + 1)}.", status=429, name=name)
        viewer = await self.users.check(name, password) if name and password else None
        if viewer is None:
            self.by_address.failed(address)
            self.by_name.failed(user)
            log.warning("console: sign-in as %r from %s failed", name, request.remote)
            return self._login_page(request, session, "Wrong user name or password.",
                                    status=401, name=name)
        self.by_name.succeeded(user)
        return self._signed_in(session, viewer, request, str(form.get("next") or ""))

    def _signed_in(self, old: Session, viewer: Viewer, request: web.Request,
                   target: str) -> web.Response:
        self.sessions.end(old)  # a fresh id at sign-in: no session fixation
        request[SESSION] = self.sessions.new(viewer)
        log.info("console: %s signed in (%s) from %s", viewer.name, viewer.role, request.remote)
        return self._redirect(self._safe_next(target))

    async def _once(self, request: web.Request, session: Session) -> web.StreamResponse:
        if self.link is None or not is_local_client(request):
            return self._error(request, session, 404, "There is no such page.")
        address = [str(request.remote)]
        if (self.by_address.wait_seconds(address) > 0
                or not self.link.redeem(request.match_info["token"])):
            self.by_address.failed(address)
            log.warning("console: one-time link refused for %s (used, or wrong)",
                        request.remote)
            return self._error(request, session, 403, "This login link has been used or is "
                               "wrong. Restart the bridge for a new one, or configure "
                               "[[console.users]].")
        if self._link_file is not None:
            self._link_file.unlink(missing_ok=True)
        return self._signed_in(session, Viewer(LOCAL_ADMIN, "admin", None), request,
                               self.root + "/")

    async def _logout(self, request: web.Request, session: Session) -> web.StreamResponse:
        assert session.viewer is not None
        log.info("console: %s signed out", session.viewer.name)
        self.sessions.end(session)
        request[SESSION] = self.sessions.new()
        return self._redirect(self.root + "/login")

    # --- pages ----------------------------------------------------------------------------

    async def _overview(self, request: web.Request, session: Session) -> web.StreamResponse:
        viewer = session.viewer
        assert viewer is not None
        scope = viewer.accounts
        now = time.time()
        start = (int(now // 3600) - 23) * 3600.0  # 24 hourly bars, the last one this hour
        counts, failures, queue = await self._overview_reads(scope, start, now)
        charts = []
        for direction, title in ((Direction.OUT, "Phone → SMS"), (Direction.IN, "SMS → phone")):
            bars, top = views.bars(counts[direction], start)
            charts.append({"id": f"chart-{direction}", "title": title, "bars": bars,
                           "top": top, "total": sum(counts[direction]),
                           "w": views.CHART_W, "h": views.CHART_H})
        regs = self.registrations()
        accounts = []
        for account in self.settings.accounts:
            if not viewer.may_see(account.name):
                continue
            reg = regs.get(account.name)
            if account.mode == "trunk":
                accounts.append({"name": account.name, "mode": "trunk", "ok": True,
                                 "state": f"trunk from {', '.join(account.allowed_sources)}",
                                 "since": None})
            else:
                accounts.append({
                    "name": account.name, "mode": "register",
                    "ok": bool(reg and reg.registered),
                    "state": f"{reg.code} {reg.reason}" if reg else "not started",
                    "since": reg.since if reg else None})
        carriers = []
        if viewer.is_admin:
            for provider in self.providers.values():
                seen = self.metrics.webhooks.get(provider.name)
                carriers.append(views.webhook_row(
                    provider.name, provider.config.type, provider.webhook_url(masked=True),
                    provider.config.webhook_token is not None, provider.webhook_auth,
                    None if seen is None else {
                        "last_valid_at": seen.last_valid_at,
                        "auth_failures": seen.auth_failures,
                        "last_failure_at": seen.last_failure_at}))
        queues = [{"direction": d, "title": t, "depth": queue.get(d, (0, None))[0],
                   "oldest": queue.get(d, (0, None))[1]}
                  for d, t in ((Direction.OUT, "Phone → SMS"), (Direction.IN, "SMS → phone"))]
        return self._render(request, session, "overview.html", charts=charts,
                            failures=failures, queues=queues, accounts=accounts,
                            carriers=carriers)

    async def _overview_reads(self, scope: tuple[str, ...] | None, start: float, now: float
                              ) -> tuple[Any, Any, Any]:
        """The overview's reads, shared for OVERVIEW_CACHE seconds by everyone with the same
        scope: open overview tabs poll it, and the store's one thread also carries texts."""
        cached = self._overview_cache.get(scope)
        if cached is not None and cached[0] > now and cached[1] == start:
            return cached[2]
        reads = await asyncio.gather(
            self.store.hourly_counts(start, accounts=scope),
            self.store.failure_counts(now - 86400, accounts=scope),
            self.store.queue_stats_for(scope))
        if len(self._overview_cache) > 256:
            self._overview_cache.clear()
        self._overview_cache[scope] = (now + OVERVIEW_CACHE, start, reads)
        return reads

    def _filters(self, query: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
        """The search form's fields, checked; a bad one is dropped with a note."""
        f: dict[str, Any] = {}
        problems: list[str] = []
        checks: tuple[tuple[str, Callable[[str], bool], str], ...] = (
            ("number", lambda v: bool(_FILTER_NUMBER.match(v)), "digits, + and spaces only"),
            ("extension", lambda v: bool(_EXTENSION.match(v)),
             "letters, digits and _.+- only"),
            ("state", lambda v: v in set(State), "not one of the states"),
            ("provider", lambda v: v in self.providers, "not one of the configured carriers"),
        )
        for key, valid, problem in checks:
            value = query.get(key, "").strip()
            if value and valid(value):
                f[key] = value
            elif value:
                problems.append(f"{'carrier' if key == 'provider' else key}: {problem}")
        for key in ("since", "until"):
            value = query.get(key, "").strip()
            if value:
                when = _parse_utc(value)
                if when is None:
                    problems.append(f"{key}: use YYYY-MM-DDTHH:MM (UTC)")
                else:
                    f[key] = when
        before = query.get("before", "")
        if before.isdigit() and len(before) < 16:
            f["before_id"] = int(before)
        return f, problems

    async def _search(self, request: web.Request, session: Session
                      ) -> tuple[list[StoredMessage], dict[str, Any], list[str]]:
        filters, problems = self._filters(request.query)
        rows = await self.store.search_messages(accounts=self._scope(session), **filters,
                                                limit=PAGE_SIZE)
        return rows, filters, problems

    async def _messages(self, request: web.Request, session: Session) -> web.StreamResponse:
        rows, filters, problems = await self._search(request, session)
        query = {k: v for k, v in request.query.items() if k != "before" and v}
        older = (f"{self.root}/messages?" + urlencode({**query, "before": rows[-1].id})
                 if len(rows) == PAGE_SIZE else None)
        return self._render(request, session, "messages.html", rows=rows, problems=problems,
                            q=dict(request.query), states=[str(s) for s in State],
                            providers=sorted(self.providers), older=older,
                            live="before_id" not in filters,
                            newest=f"{self.root}/messages?" + urlencode(query))

    async def _find(self, request: web.Request, session: Session
                    ) -> tuple[StoredMessage, list[Any]] | None:
        raw = request.match_info["id"]
        if not raw.isdigit() or len(raw) > 15:
            return None
        found = await self.store.message_with_history(int(raw))
        if found is None or session.viewer is None or not session.viewer.may_see(
                found[0].account):
            return None
        return found

    async def _message(self, request: web.Request, session: Session) -> web.StreamResponse:
        found = await self._find(request, session)
        if found is None:
            return self._not_found(request, session)
        message, history = found
        return self._render(request, session, "message.html", m=message, history=history,
                            media=await self._media(message),
                            retryable=message.state in (State.FAILED, State.QUEUED),
                            final=message.state in FINAL_STATES)

    async def _retry(self, request: web.Request, session: Session) -> web.StreamResponse:
        viewer = session.viewer
        assert viewer is not None
        found = await self._find(request, session)
        if found is None:
            log.warning("console: %s tried to retry message %s: not found or not theirs",
                        viewer.name, request.match_info["id"][:20])
            return self._not_found(request, session)
        message = found[0]
        outcome = await self.actions.retry(message.id)
        if outcome.refusal:
            session.flash.append(f"Not retried: {outcome.refusal}")
            log.info("console: %s asked to retry message %d: %s", viewer.name, message.id,
                     outcome.refusal, extra={"message_id": message.id})
        else:
            session.flash.append(f"Message {message.id} is queued again.")
            log.info("console: %s retried message %d", viewer.name, message.id,
                     extra={"message_id": message.id})
        return self._redirect(f"{self.root}/messages/{message.id}")

    async def _conversation(self, request: web.Request, session: Session
                            ) -> web.StreamResponse:
        did = request.query.get("did", "").strip()
        remote = request.query.get("remote", "").strip()
        if not (_NUMBER.match(did) and _NUMBER.match(remote)):
            return self._error(request, session, 400, "A conversation needs two numbers: "
                               "?did=+1...&remote=+1...")
        rows = await self.store.conversation(did, remote, accounts=self._scope(session))
        return self._render(request, session, "conversation.html", did=did, remote=remote,
                            rows=rows, media={m.id: await self._media(m) for m in rows})

    async def _media(self, message: StoredMessage) -> list[dict[str, Any]]:
        """A text's media as shown: our own copy when we hold one (a carrier's file is
        copied at the first delivery attempt), else its type only."""
        out = []
        for ref in message.media:
            view = views.media_view(ref)
            if view["path"] is None and message.provider:
                copy = await self.store.media_from_source(
                    source_key(message.provider, ref.url), time.time())
                if copy is not None:
                    view = {"path": f"/media/{copy.token}/{copy.filename}",
                            "image": copy.content_type.startswith("image/"),
                            "type": copy.content_type}
            if view["path"] is not None:
                view["path"] = self.prefix + view["path"]
            out.append(view)
        return out

    def _extensions(self, viewer: Viewer) -> list[dict[str, str]]:
        out = []
        for ext in self.settings.extensions:
            account = self.settings.account_of_extension(ext)
            if viewer.may_see(account):
                out.append({"extension": ext.extension, "account": account,
                            "send": ext.send})
        return out

    def _send_page(self, request: web.Request, session: Session, status: int = 200,
                   error: str = "", form: Mapping[str, Any] | None = None) -> web.Response:
        assert session.viewer is not None
        accounts = [a.name for a in self.settings.accounts if session.viewer.may_see(a.name)]
        return self._render(request, session, "send.html", status=status, error=error,
                            form=dict(form or {}), extensions=self._extensions(session.viewer),
                            accounts=accounts)

    async def _send_form(self, request: web.Request, session: Session) -> web.StreamResponse:
        return self._send_page(request, session)

    async def _send(self, request: web.Request, session: Session) -> web.StreamResponse:
        viewer = session.viewer
        assert viewer is not None
        form = await request.post()
        fields = {k: str(form.get(k) or "").strip() for k in ("extension", "to", "account")}
        fields["text"] = str(form.get("text") or "")
        missing = [k for k in ("extension", "to", "text") if not fields[k]]
        if missing:
            return self._send_page(request, session, 400, f"Missing: {', '.join(missing)}.",
                                   fields)
        if any(len(v) > MAX_FIELD for v in fields.values()):
            return self._send_page(request, session, 400, "That is too long.", fields)
        account = fields["account"] or None
        if account is not None and not viewer.may_see(account):
            # another tenant's account is answered as the core answers an unknown one
            log.info("console: %s's test text as %s refused: account %r is not theirs",
                     viewer.name, fields["extension"], account)
            return self._send_page(request, session, 422, "Not sent: there is no account "
                                   f"named {account!r}", fields)
        if account is None and not viewer.is_admin:
            owners = sorted({e["account"] for e in self._extensions(viewer)
                             if e["extension"] == fields["extension"]})
            mine = viewer.accounts or ()
            account = owners[0] if len(owners) == 1 else (mine[0] if len(mine) == 1 else None)
            if account is None:
                return self._send_page(request, session, 400, "Say which account the "
                                       "extension belongs to.", fields)
        outcome = await self.actions.submit(fields["extension"], fields["to"], fields["text"],
                                            account)
        if outcome.message_id is None:
            refusal = outcome.refusal or "not accepted"
            log.info("console: %s's test text as %s to %s not accepted: %s", viewer.name,
                     fields["extension"], fields["to"], refusal)
            return self._send_page(request, session, 422, f"Not sent: {refusal}", fields)
        if outcome.refusal:
            session.flash.append(f"Not sent: {outcome.refusal} (stored as rejected).")
        else:
            session.flash.append(f"Queued as message {outcome.message_id}.")
        log.info("console: %s sent a test text as extension %s to %s: message %d%s",
                 viewer.name, fields["extension"], fields["to"], outcome.message_id,
                 f" refused ({outcome.refusal})" if outcome.refusal else " queued",
                 extra={"message_id": outcome.message_id})
        return self._redirect(f"{self.root}/messages/{outcome.message_id}")

    async def _config(self, request: web.Request, session: Session) -> web.StreamResponse:
        viewer = session.viewer
        assert viewer is not None
        path = type(self.settings).toml_path
        problems: list[str] | None = None
        if viewer.is_admin and path is not None:
            try:
                await asyncio.to_thread(load_settings, path)
                problems = []
            except ConfigError as exc:
                problems = exc.problems
        carriers = [(p.name, p.webhook_url(masked=True), p.webhook_auth)
                    for p in self.providers.values()] if viewer.is_admin else []
        return self._render(request, session, "config.html", file=str(path or ""),
                            problems=problems, text=views.config_text(self.settings, viewer),
                            carriers=carriers)

    # --- JSON -----------------------------------------------------------------------------

    async def _api_messages(self, request: web.Request, session: Session
                            ) -> web.StreamResponse:
        rows, _, problems = await self._search(request, session)
        if problems:
            return web.json_response({"error": "; ".join(problems)}, status=400)
        return web.json_response({"messages": [_as_json(m) for m in rows]})

    async def _api_message(self, request: web.Request, session: Session
                           ) -> web.StreamResponse:
        found = await self._find(request, session)
        if found is None:
            return web.json_response({"error": "no such message"}, status=404)
        message, history = found
        return web.json_response({**_as_json(message), "history": [
            {"at": e.at, "state": e.state, "detail": e.detail} for e in history]})


def _as_json(m: StoredMessage) -> dict[str, Any]:
    return {"id": m.id, "direction": str(m.direction), "kind": str(m.kind),
            "state": str(m.state), "account": m.account, "extension": m.extension,
            "remote": m.remote, "did": m.did, "provider": m.provider, "body": m.body,
            "attempts": m.attempts, "next_attempt_at": m.next_attempt_at,
            "created_at": m.created_at, "updated_at": m.updated_at,
            "last_error": m.last_error}


def _parse_utc(value: str) -> float | None:
    for fmt in ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return float(calendar.timegm(time.strptime(value, fmt)))
        except ValueError:
            continue
    return None

