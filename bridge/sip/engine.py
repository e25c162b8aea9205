"""The SIP engine: the only module that imports pjsua2.

One thread owns the pjsua2 Endpoint and every pjsua2 object (pjsua2 is not thread-safe from
Python). The asyncio side talks to it in two ways only:

- received MESSAGEs are handed to the loop with ``loop.call_soon_threadsafe``;
- sends are commands on a thread-safe queue, each answered through an asyncio future with the
  final SIP status code (matched by the ``userData`` token pjsua2 carries through).

``start()`` blocks until the stack really listens, and re-raises its start-up error in the
caller (aiosmtpd's controller pattern).

pjsua answers an out-of-dialog MESSAGE with 200 OK *before* our callback runs, so the bridge
cannot refuse with a SIP status: the core stores the message at once and tells the sender
about any refusal with a MESSAGE back.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import queue
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pjsua2 as pj

from bridge.model import SipResult, SipText
from bridge.settings import AccountSettings, SipSection
from bridge.sip import wire
from bridge.sip.journal import Journal
from bridge.sip.status import classify, local_failure, too_large

log = logging.getLogger("bridge.sip")

TRUNK_ACCOUNT = "*trunk*"
# pjsip's status for a message that does not fit its buffer (PJSIP_EMSGTOOLONG)
PJSIP_EMSGTOOLONG = 171023
MAX_BUDDIES = 200  # pjsua's default limit is 256
BUSY_POLL_MS = 5
IDLE_POLL_MS = 100
IDLE_AFTER_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Registration:
    account: str
    registered: bool
    code: int
    reason: str
    since: float


class _LogWriter(pj.LogWriter):
    def write(self, entry: Any) -> None:  # pjsua2 callback, SIP thread
        level = logging.WARNING if entry.level <= 2 else logging.DEBUG
        log.log(level, "pjsip: %s", entry.msg.rstrip())


class _Account(pj.Account):
    def __init__(self, engine: SipEngine, name: str) -> None:
        super().__init__()
        self.engine = engine
        self.name = name

    def onRegState(self, prm: Any) -> None:
        self.engine._on_reg_state(self, prm)

    def onInstantMessage(self, prm: Any) -> None:
        self.engine._on_message(self, prm)

    def onInstantMessageStatus(self, prm: Any) -> None:
        self.engine._on_status(prm)


@dataclass
class _Send:
    account: str
    target: str
    from_uri: str
    body: str
    content_type: str
    future: asyncio.Future[SipResult]


@dataclass(frozen=True, slots=True)
class _Register:
    account: str
    active: bool


class SipEngine:
    def __init__(
        self,
        sip: SipSection,
        accounts: list[AccountSettings],
        on_message: Callable[[SipText], None],
        on_registration: Callable[[Registration], None] | None = None,
        journal: Journal | None = None,
        public_port: int | None = None,
    ) -> None:
        self.settings = sip
        self.journal = journal
        # Set: the bridge's own listeners (bridge.sip.udp, .tcp) take every request on the
        # SIP ports (this one, and tls_port), registrations name them as the contact, and
        # pjsua's transports, on free ports, carry what the bridge sends. None: pjsua
        # listens on the configured ports itself.
        self.public_port = public_port
        self.public_tls_port: int | None = None  # the own TLS listener's, once it listens
        self.account_settings = accounts
        self._on_message_cb = on_message
        self._on_registration_cb = on_registration
        self._loop: asyncio.AbstractEventLoop | None = None
        self._commands: queue.SimpleQueue[_Send | _Register | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._running = False
        self._pending: dict[int, tuple[Any, asyncio.Future[SipResult]]] = {}
        self._buddies: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._accounts: dict[str, _Account] = {}
        self.registrations: dict[str, Registration] = {}
        self._registration_wanted: dict[str, bool] = {}  # set_registration's last word
        self.port = 0
        self.tls_port = 0

    # --- asyncio side -----------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._running = True
        self._thread = threading.Thread(target=self._main, name="sip", daemon=True)
        self._thread.start()
        await self._loop.run_in_executor(None, self._ready.wait)
        if self._startup_error is not None:
            self._thread.join()
            raise self._startup_error

    async def stop(self) -> None:
        if self._thread is None:
            return
        self._running = False
        self._commands.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._thread = None
        for _, future in self._pending.values():
            if not future.done():
                future.set_result(local_failure("the SIP stack stopped"))

    async def send(
        self,
        account: str,
        target: str,
        from_uri: str,
        body: str,
        content_type: str = "text/plain;charset=UTF-8",
    ) -> SipResult:
        """Send a MESSAGE; the final answer, classified (a timeout is 408)."""
        if self._loop is None or not self._running:
            return local_failure("the SIP stack is not running")
        future: asyncio.Future[SipResult] = self._loop.create_future()
        self._commands.put(_Send(account, target, from_uri, body, content_type, future))
        return await future

    def set_registration(self, account: str, active: bool) -> None:
        """Register one account (``active``) or unregister it: several instances share a
        PostgreSQL store and one of them, the lease holder, registers each account. Called
        before ``start``, it decides whether the account registers when it is created."""
        self._registration_wanted[account] = active
        if self._thread is not None and self._running:
            self._commands.put(_Register(account, active))

    def is_registered(self, account: str) -> bool:
        reg = self.registrations.get(account)
        return reg is not None and reg.registered

    # --- SIP thread -------------------------------------------------------------------------

    def _main(self) -> None:
        ep = pj.Endpoint()
        writer = _LogWriter()
        try:
            self._init_endpoint(ep, writer)
            self._create_accounts()
        except BaseException as exc:  # re-raised in start()
            reason = exc.info() if hasattr(exc, "info") else str(exc)  # pjsua2.Error: info()
            self._startup_error = RuntimeError(f"SIP stack failed to start: {reason}")
            self._ready.set()
            with contextlib.suppress(Exception):
                ep.libDestroy()
            return
        self._ready.set()
        try:
            quiet_since = time.monotonic()
            while self._running:
                # Commands from asyncio wait for the poll to end, so poll briefly while
                # there is traffic; when idle for a while, poll slowly to save CPU (the
                # first send after a quiet spell waits at most IDLE_POLL_MS).
                idle = time.monotonic() - quiet_since > IDLE_AFTER_SECONDS
                handled = ep.libHandleEvents(IDLE_POLL_MS if idle else BUSY_POLL_MS)
                if self._drain_commands() or handled:
                    quiet_since = time.monotonic()
            self._shutdown(ep)
        except BaseException:
            log.exception("SIP thread crashed")
            raise
        finally:
            # libDestroy first: transactions still in flight end during it and report to
            # their account, which must still exist. pjsua2 objects freed afterwards see
            # the library closed and do nothing.
            with contextlib.suppress(Exception):
                ep.libDestroy()
            self._buddies.clear()
            self._accounts.clear()

    def _init_endpoint(self, ep: Any, writer: Any) -> None:
        with _quiet_stdout():  # pjlib prints a banner before its log settings exist
            ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = False
        cfg.uaConfig.userAgent = self.settings.user_agent
        cfg.logConfig.level = 3
        cfg.logConfig.consoleLevel = 0
        cfg.logConfig.writer = writer
        cfg.logConfig.decor = 0
        cfg.medConfig.noVad = True
        ep.libInit(cfg)
        v6 = ":" in self.settings.listen
        kinds = {"udp": pj.PJSIP_TRANSPORT_UDP6 if v6 else pj.PJSIP_TRANSPORT_UDP,
                 "tcp": pj.PJSIP_TRANSPORT_TCP6 if v6 else pj.PJSIP_TRANSPORT_TCP,
                 "tls": pj.PJSIP_TRANSPORT_TLS6 if v6 else pj.PJSIP_TRANSPORT_TLS}
        if self.public_port is not None:
            for name in self.settings.transports:  # free ports: for what the bridge sends
                ep.transportCreate(kinds[name], self._transport_config(0, tls=name == "tls"))
            self.port = self.public_port
            self.tls_port = self.public_tls_port or self.settings.tls_port
        else:
            port = self.settings.port
            plain = [t for t in self.settings.transports if t != "tls"]
            for i, name in enumerate(plain):
                tid = ep.transportCreate(kinds[name], self._transport_config(port))
                if i == 0:
                    # With port 0 the first transport picks a free port; the others share it.
                    port = _port_of(ep.transportGetInfo(tid).localName)
            self.port = port
            if "tls" in self.settings.transports:
                tid = ep.transportCreate(kinds["tls"], self._transport_config(
                    self.settings.tls_port, tls=True))
                self.tls_port = _port_of(ep.transportGetInfo(tid).localName)
        ep.libStart()
        if self.public_port is None:
            log.info("SIP listening on %s port %d (%s)", self.settings.listen, self.port,
                     "+".join(self.settings.transports))

    def _transport_config(self, port: int, *, tls: bool = False) -> Any:
        tc = pj.TransportConfig()
        tc.boundAddress = self.settings.listen
        tc.publicAddress = self.settings.listen
        tc.port = port
        if tls:
            tc.tlsConfig.certFile = str(self.settings.tls_cert_file)
            tc.tlsConfig.privKeyFile = str(self.settings.tls_key_file)
        return tc

    def _create_accounts(self) -> None:
        listen = self.settings.listen
        host = f"[{listen}]" if ":" in listen else listen
        trunk = _Account(self, TRUNK_ACCOUNT)
        cfg = pj.AccountConfig()
        cfg.idUri = f"sip:sms-bridge@{host}:{self.port}"
        cfg.mwiConfig.enabled = False
        cfg.presConfig.publishEnabled = False
        trunk.create(cfg, True)  # the default account: takes whatever no registration claims
        self._accounts[TRUNK_ACCOUNT] = trunk
        for settings in self.account_settings:
            if settings.mode != "register":
                continue
            acc = _Account(self, settings.name)
            cfg = pj.AccountConfig()
            registrar = settings.registrar or ""
            cfg.idUri = f"sip:{settings.username}@{settings.domain}"
            cfg.regConfig.registrarUri = _sip_uri(registrar)
            cfg.regConfig.timeoutSec = settings.register_expires
            # after a failed registration (PBX down or restarting) try again soon: until then
            # the PBX cannot route texts to the bridge
            cfg.regConfig.retryIntervalSec = 10
            cfg.regConfig.firstRetryIntervalSec = 2
            cfg.regConfig.dropCallsOnFail = False
            cfg.regConfig.registerOnAdd = self._registration_wanted.get(settings.name, True)
            transport = _transport_of(settings.proxy or registrar)
            if self.public_port is not None and transport in self.settings.transports:
                # the contact is the bridge's own listener: the PBX's texts go there, whole,
                # and are answered once stored (pjsua's own transports are on free ports)
                port = self.tls_port if transport == "tls" else self.port
                param = "" if transport == "udp" else f";transport={transport}"
                cfg.sipConfig.contactForced = f"<sip:{settings.username}@{host}:{port}{param}>"
            if settings.proxy:
                proxy = _sip_uri(settings.proxy)
                cfg.sipConfig.proxies.append(proxy if ";lr" in proxy else proxy + ";lr")
            password = settings.password.get_secret_value() if settings.password else ""
            cfg.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", "*", settings.auth_username or settings.username or "",
                                0, password)
            )
            cfg.mwiConfig.enabled = False
            acc.create(cfg)
            self._accounts[settings.name] = acc
            self.registrations[settings.name] = Registration(settings.name, False, 0, "starting",
                                                             time.time())

    def _shutdown(self, ep: Any) -> None:
        registered = [a for n, a in self._accounts.items() if self.is_registered(n)]
        for acc in registered:
            with contextlib.suppress(Exception):
                acc.setRegistration(False)
        deadline = time.monotonic() + 2.0
        while registered and time.monotonic() < deadline:
            ep.libHandleEvents(20)
            if not any(self.is_registered(a.name) for a in registered):
                break
        log.info("SIP stack stopped")

    def _drain_commands(self) -> int:
        done = 0
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return done
            if cmd is None:
                return done
            if isinstance(cmd, _Register):
                self._register_now(cmd)
            else:
                self._send_now(cmd)
            done += 1

    def _register_now(self, cmd: _Register) -> None:
        acc = self._accounts.get(cmd.account)
        if acc is None:
            return
        try:
            acc.setRegistration(cmd.active)
        except pj.Error as exc:  # e.g. unregistering an account that is not registered
            log.debug("account %s: setRegistration(%s): %s", cmd.account, cmd.active,
                      exc.info())

    def _send_now(self, cmd: _Send) -> None:
        acc = self._accounts.get(cmd.account) or self._accounts[TRUNK_ACCOUNT]
        token = pj.SipHeader()  # any SWIG object: its address travels as userData
        key = int(token.this)
        try:
            buddy = self._buddy(acc, cmd.target)
            prm = pj.SendInstantMessageParam()
            prm.content = cmd.body
            prm.contentType = cmd.content_type
            prm.txOption.localUri = cmd.from_uri
            prm.userData = token
            self._pending[key] = (token, cmd.future)
            buddy.sendInstantMessage(prm)
        except pj.Error as exc:
            self._pending.pop(key, None)
            if exc.status == PJSIP_EMSGTOOLONG:
                self._resolve(cmd.future, too_large(len(cmd.body.encode())))
                return
            log.warning("cannot send MESSAGE to %s: %s", cmd.target, exc.reason)
            self._resolve(cmd.future, local_failure(exc.reason))

    def _buddy(self, acc: _Account, target: str) -> Any:
        key = (acc.name, target)
        buddy = self._buddies.get(key)
        if buddy is not None:
            self._buddies.move_to_end(key)
            return buddy
        buddy = pj.Buddy()
        cfg = pj.BuddyConfig()
        cfg.uri = target
        cfg.subscribe = False
        buddy.create(acc, cfg)
        self._buddies[key] = buddy
        if len(self._buddies) > MAX_BUDDIES:
            self._buddies.popitem(last=False)
        return buddy

    def _resolve(self, future: asyncio.Future[SipResult], result: SipResult) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(_set_result, future, result)

    # callbacks (SIP thread)

    def _on_status(self, prm: Any) -> None:
        if prm.userData is None:
            return
        entry = self._pending.pop(int(prm.userData), None)
        if entry is not None:
            self._resolve(entry[1], classify(int(prm.code), str(prm.reason)))

    def _on_reg_state(self, acc: _Account, prm: Any) -> None:
        info = acc.getInfo()
        reg = Registration(acc.name, bool(info.regIsActive), int(prm.code), str(prm.reason),
                           time.time())
        previous = self.registrations.get(acc.name)
        self.registrations[acc.name] = reg
        if previous is None or previous.registered != reg.registered:
            log.info("account %s %s (%d %s)", acc.name,
                     "registered" if reg.registered else "not registered", reg.code, reg.reason)
        if self._on_registration_cb is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_registration_cb, reg)

    def _on_message(self, acc: _Account, prm: Any) -> None:
        """pjsua has answered 200: journal the raw MESSAGE, decode it at this edge, and hand
        the checked text to the loop. Never raises (it would kill the SIP thread)."""
        key: str | None = None
        try:
            source = str(prm.rdata.srcAddress)
            # SWIG decodes the raw message with surrogateescape: this gives back its bytes
            raw = str(prm.rdata.wholeMsg).encode("utf-8", "surrogateescape")
            if self.journal is not None:
                key = self.journal.append(acc.name, source, raw)
            text = wire.decode(raw, account=acc.name, source=source,
                               max_body_bytes=self.settings.max_body_bytes, intake_key=key)
        except Exception:  # a defect here must not lose the text silently: say so
            log.exception("MESSAGE on account %s could not be decoded", acc.name)
            text = wire.undecodable(acc.name, str(getattr(prm, "fromUri", "")), key)
        if text is None:  # a notification or typing indicator: consumed quietly
            if self.journal is not None:
                self.journal.done(key)
            return
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._on_message_cb, text)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send file descriptor 1 to /dev/null for a moment (C code's printf included), so
    stdout stays clean for the journal and for JSON logs."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        libc.fflush(None)
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _port_of(local_name: str) -> int:
    return int(local_name.rsplit(":", 1)[1])


def _transport_of(uri: str) -> str:
    """udp, tcp or tls: what a registrar or proxy URI asks for (udp when it says nothing)."""
    lowered = uri.lower()
    if lowered.startswith("sips:") or ";transport=tls" in lowered:
        return "tls"
    return "tcp" if ";transport=tcp" in lowered else "udp"


def _sip_uri(value: str) -> str:
    return value if value.startswith(("sip:", "sips:")) else f"sip:{value}"


def _set_result(future: asyncio.Future[SipResult], result: SipResult) -> None:
    if not future.done():
        future.set_result(result)
