"""Wiring and lifecycle: the one place that builds the parts from settings and runs them.

Start order: store (migrate, resume work that was in flight) -> providers -> SIP engine ->
web server -> dispatchers -> READY. Stop order is the reverse; anything unfinished stays in
the store and resumes at the next start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
from collections.abc import Mapping
from pathlib import Path

from bridge.core import Bridge, Notifier
from bridge.dispatch import Dispatcher, RetryPolicy
from bridge.media import MediaStore
from bridge.metrics import Metrics
from bridge.model import Direction, SipText
from bridge.providers.base import Provider
from bridge.providers.registry import provider_class
from bridge.routing import Router
from bridge.secrets import reveal
from bridge.settings import Settings
from bridge.sip import imdn, wire
from bridge.sip.engine import TRUNK_ACCOUNT, SipEngine
from bridge.sip.intake import Intake
from bridge.sip.journal import Journal
from bridge.sip.status import MAX_PART_BYTES
from bridge.sip.tcp import SipTcpListener
from bridge.sip.udp import SipUdpListener
from bridge.store import StoredMessage, store_for
from bridge.uris import user_of
from bridge.web.admin import AdminApi
from bridge.web.console import Console
from bridge.web.media import MediaRoutes
from bridge.web.server import HttpLimits, WebhookServer

log = logging.getLogger("bridge.app")

MEDIA_DIR = "media"
JOURNAL_DIR = "sip-journal"
MEDIA_CLEANUP_SECONDS = 600.0  # how often expired media and the disk cap are enforced
REGISTRATION_WAIT = 10.0  # seconds start-up waits for registrations before READY=1
EXIT_RESTART = 75  # EX_TEMPFAIL: stopped cleanly to be started again (Restart=on-failure)


def build_providers(settings: Settings) -> dict[str, Provider]:
    return {
        cfg.name: provider_class(cfg.type)(cfg, public_url=settings.bridge.public_url)
        for cfg in settings.providers
    }


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    """A server's TLS context: TLS 1.2 at least, the full-chain certificate and its key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


def resident_mib() -> int | None:
    """This process's resident memory in MiB (Linux), or None where /proc cannot tell."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        return None
    return None


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about our state; a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc)


class Application:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = store_for(settings)
        self.router = Router(settings)
        self.providers: Mapping[str, Provider] = build_providers(settings)
        delivery = settings.delivery
        policy = RetryPolicy(first=delivery.first_retry_seconds,
                             maximum=delivery.max_retry_seconds)
        self.journal = Journal(settings.bridge.state_dir / JOURNAL_DIR)
        # The SIP ports are the bridge's own listeners (they answer a MESSAGE once it is
        # stored); pjsua registers and sends from free ports, and keeps its journaled path
        # for anything sent to those.
        self.sip = SipEngine(settings.sip, list(settings.accounts), self._on_sip_message,
                             journal=self.journal, public_port=settings.sip.port)
        intake = Intake(self._on_listener_text, self._account_reached,
                        max_body_bytes=settings.sip.max_body_bytes,
                        user_agent=settings.sip.user_agent)
        self.sip_udp = SipUdpListener(intake)
        self.sip_tcp = SipTcpListener(intake)
        self.metrics = Metrics()
        self.metrics.observe_state(self.store.queue_stats, self._registered)
        # several instances on PostgreSQL: one registers each account (advisory lock)
        self.leases = None
        if self.store.shared:
            from bridge.store.leases import registration_leases  # noqa: PLC0415 (libpq only if used)

            self.leases = registration_leases(settings, self.store, self.sip,
                                              self._wake_inbound)
        if self.leases is not None:
            self.metrics.observe_holders(lambda: self.leases.holders if self.leases else {})
        self.media = MediaStore(self.store, settings.bridge.state_dir / MEDIA_DIR,
                                settings.media, settings.bridge.public_url)
        self.bridge = Bridge(settings, self.router, self.store, self.providers, self.sip.send,
                             Notifier(self._wake_outbound, self._wake_inbound,
                                      self._reserve_outbound, self._take_outbound,
                                      self._reserve_inbound, self._take_inbound), self.metrics,
                             media=self.media, imdn_formatter=imdn.render,
                             sip_part_bytes=MAX_PART_BYTES)
        self.outbound = Dispatcher(Direction.OUT, self.store, self.bridge.send_sms,
                                   self.bridge.finished, policy, delivery.carrier_concurrency,
                                   self.metrics)
        self.inbound = Dispatcher(Direction.IN, self.store, self.bridge.send_sip_message,
                                  self.bridge.finished, policy, delivery.sip_concurrency,
                                  self.metrics)
        admin = (AdminApi(settings.admin.token, self.bridge)
                 if settings.admin.token is not None else None)
        self.console = (Console(settings, self.store, self.bridge, self.metrics, self.providers,
                                lambda: self.sip.registrations)
                        if settings.console.enabled else None)
        self.web = WebhookServer(self.providers, self.bridge.on_carrier_events,
                                 settings.bridge.public_url, settings.web.max_body_bytes,
                                 self.readiness, self.metrics, admin,
                                 media=MediaRoutes(self.media,
                                                   reveal(settings.media.upload_token)),
                                 trusted_proxies=settings.web.trusted_proxies,
                                 console=self.console,
                                 limits=HttpLimits.of(settings.web))
        # another instance stored work (PostgreSQL NOTIFY): look now, not at the next poll
        self.store.on_stored(lambda d: (self.outbound if d == Direction.OUT
                                        else self.inbound).wake())
        self._intake: set[asyncio.Task[None]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._memory_guard: asyncio.Task[None] | None = None
        self.exit_code = 0
        self._media_retention: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def _wake_outbound(self) -> None:
        self.outbound.wake()

    def _wake_inbound(self) -> None:
        self.inbound.wake()

    # the dispatchers are made after the core they call: reached through these
    def _reserve_outbound(self) -> bool:
        return self.outbound.reserve()

    def _take_outbound(self, message: StoredMessage | None) -> None:
        self.outbound.take(message)

    def _reserve_inbound(self) -> bool:
        return self.inbound.reserve()

    def _take_inbound(self, message: StoredMessage | None) -> None:
        self.inbound.take(message)

    def _on_sip_message(self, text: SipText) -> None:
        task = asyncio.create_task(self.bridge.on_sip_text(text))
        self._intake.add(task)
        task.add_done_callback(self._intake.discard)
        task.add_done_callback(lambda _: self.journal.done(text.intake_key))

    async def _on_listener_text(self, text: SipText) -> bool:
        task = asyncio.create_task(self.bridge.on_sip_text(text))
        self._intake.add(task)  # so that a stop waits for it
        task.add_done_callback(self._intake.discard)
        return await asyncio.shield(task)

    def _account_reached(self, message: wire.RawMessage) -> str:
        """The account a MESSAGE to our listeners is for: a registration whose user it
        names in its Request-URI, else the trunk listener."""
        uri = message.start_line.split(" ")[1] if message.start_line.count(" ") >= 2 else ""
        user = user_of(uri)
        for account in self.settings.accounts:
            if account.mode == "register" and user and user == account.username:
                return account.name
        return TRUNK_ACCOUNT

    async def _replay_journal(self) -> None:
        """MESSAGEs that pjsua answered before a crash and that the store may not have:
        through the normal intake again (the store recognises those it already has)."""
        segments = self.journal.left_over()
        replayed = 0
        for segment in segments:
            for record in Journal.read(segment):
                text = wire.decode(record.raw, account=record.account, source=record.source,
                                   max_body_bytes=self.settings.sip.max_body_bytes,
                                   intake_key=record.key)
                if text is not None:
                    await self.bridge.on_sip_text(text)
                    replayed += 1
        for segment in segments:
            segment.unlink(missing_ok=True)
        if segments:
            log.info("SIP journal: %d MESSAGEs from the last run checked against the store",
                     replayed)

    def _web_tls(self) -> ssl.SSLContext | None:
        web = self.settings.web
        if web.tls_cert_file is None or web.tls_key_file is None:
            return None
        return server_tls(web.tls_cert_file, web.tls_key_file)

    async def _listen_sip(self) -> None:
        """Bind the SIP ports: UDP first (port 0 picks one), TCP on the same number."""
        sip = self.settings.sip
        port = sip.port
        if "udp" in sip.transports:
            port = await self.sip_udp.start(sip.listen, port)
        if "tcp" in sip.transports:
            port = await self.sip_tcp.start(sip.listen, port)
        if "tls" in sip.transports:
            self.sip.public_tls_port = await self.sip_tcp.start(sip.listen, sip.tls_port,
                                                                self._sip_tls())
        self.sip.public_port = port
        log.info("SIP listening on %s port %d (%s%s), texts up to %d bytes", sip.listen, port,
                 "+".join(t for t in sip.transports if t != "tls"),
                 f"; TLS on port {sip.tls_port}" if "tls" in sip.transports else "",
                 sip.max_body_bytes)

    def _sip_tls(self) -> ssl.SSLContext:
        sip = self.settings.sip
        assert sip.tls_cert_file is not None and sip.tls_key_file is not None
        return server_tls(sip.tls_cert_file, sip.tls_key_file)

    def _registered(self) -> dict[str, bool]:
        return {a.name: self.sip.is_registered(a.name) for a in self.settings.accounts
                if a.mode == "register" and self._registers(a.name)}

    def _registers(self, account: str) -> bool:
        """Whether this instance is the one to register ``account`` (always, on SQLite)."""
        return self.leases is None or account in self.leases.held

    def _settled(self, account: str) -> bool:
        """Registered here, or (several instances) held and registered by another one."""
        if self._registers(account):
            return self.sip.is_registered(account)
        return self.leases is not None and self.leases.holders.get(account) is not None

    async def readiness(self) -> dict[str, object]:
        accounts = {}
        for account in self.settings.accounts:
            if account.mode == "register" and not self._registers(account.name):
                holder = self.leases.holders.get(account.name) if self.leases else None
                accounts[account.name] = {"ok": holder is not None, "holder": holder,
                                          "registration": "standby"}
            elif account.mode == "register":
                reg = self.sip.registrations.get(account.name)
                accounts[account.name] = {
                    "ok": bool(reg and reg.registered),
                    "registration": f"{reg.code} {reg.reason}" if reg else "not started",
                }
                if self.leases is not None:
                    accounts[account.name]["holder"] = self.store.instance
            else:
                accounts[account.name] = {"ok": True, "registration": "trunk"}
        try:
            await self.store.next_due_at(Direction.OUT)
            store_ok = True
        except Exception:
            store_ok = False
        return {"store": {"ok": store_ok}, "accounts": {
            "ok": all(a["ok"] for a in accounts.values()), **accounts}}

    async def start(self) -> None:
        await self.store.open()
        resumed = await self.store.recover()
        if resumed:
            log.info("resumed %d messages that were in flight at the last stop", resumed)
        await self._replay_journal()
        self._media_retention = asyncio.create_task(
            self.media.run_retention(MEDIA_CLEANUP_SECONDS), name="media-retention")
        for provider in self.providers.values():
            await provider.start()
        await self._listen_sip()
        await self.sip.start()
        if self.leases is not None:
            self.leases.start()
        await self.web.start(self.settings.web.listen, self.settings.web.port,
                             self._web_tls())
        if self.console is not None:
            self.console.announce(self.web.port, self.settings.bridge.state_dir)
        self.outbound.start()
        self.inbound.start()
        await self._wait_registered(REGISTRATION_WAIT)
        sd_notify("READY=1")
        self._watchdog = asyncio.create_task(self._keepalive())
        if self.settings.bridge.restart_above_rss_mib is not None:
            self._memory_guard = asyncio.create_task(self._guard_memory(
                self.settings.bridge.restart_above_rss_mib,
                self.settings.bridge.memory_check_seconds))
        log.info("sip-sms-bridge ready")

    async def _wait_registered(self, timeout: float) -> None:
        """Readiness means every registration is up; a PBX that is down must not keep the
        service from starting, so after ``timeout`` we carry on (and /readyz says why)."""
        names = [a.name for a in self.settings.accounts if a.mode == "register"]
        deadline = asyncio.get_running_loop().time() + timeout
        while not all(self._settled(n) for n in names):
            if asyncio.get_running_loop().time() > deadline:
                missing = [n for n in names if not self._settled(n)]
                log.warning("not registered yet: %s (retrying in the background)",
                            ", ".join(missing))
                sd_notify(f"STATUS=waiting for registration of {', '.join(missing)}")
                return
            await asyncio.sleep(0.05)

    async def _guard_memory(self, limit_mib: int, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            rss = resident_mib()
            if rss is not None and rss > limit_mib:
                log.warning("resident memory %d MiB is above restart_above_rss_mib = %d: "
                            "stopping cleanly to be restarted (queued texts are on disk)",
                            rss, limit_mib)
                self.exit_code = EXIT_RESTART
                self.request_stop()
                return

    async def _keepalive(self) -> None:
        """systemd watchdog pings, sent from the event loop itself: if the loop stalls, the
        pings stop and systemd restarts the service."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return
        interval = max(0.05, int(usec) / 1e6 / 3)
        while True:
            sd_notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    async def stop(self) -> None:
        sd_notify("STOPPING=1")
        log.info("stopping")
        for task in (self._watchdog, self._memory_guard):
            if task is not None:
                task.cancel()
        await self.web.stop()  # no new webhooks
        await self.sip_udp.stop()  # no new texts; those being stored are answered
        await self.sip_tcp.stop()
        if self._intake:
            await asyncio.wait(self._intake, timeout=5)
        await self.outbound.stop()
        await self.inbound.stop()
        if self.leases is not None:
            await self.leases.stop()
        await self.sip.stop()
        self.journal.close()
        for provider in self.providers.values():
            await provider.close()
        if self._media_retention is not None:
            self._media_retention.cancel()
            await asyncio.gather(self._media_retention, return_exceptions=True)
        await self.store.close()
        log.info("stopped")

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT (exit status 0) or the memory guard (EXIT_RESTART)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        await self.start()
        try:
            await self._stop.wait()
        finally:
            await self.stop()
        return self.exit_code
