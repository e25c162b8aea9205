"""Command line: ``sip-sms-bridge COMMAND --config FILE``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bridge import __version__
from bridge.settings import ConfigError, ConfigUnreadable, Settings, load_settings, load_state_dir

CONFIG_ENV = "SIP_SMS_BRIDGE_CONFIG"
# Exit status for a config, database or start-up failure the operator must fix (stderr says
# what and where, one line per problem); 1 is "the command did not do what was asked".
EXIT_CONFIG = 2
# Commands that only read the database: they need the state folder, not the secrets.
READ_ONLY = ("messages", "show")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sip-sms-bridge",
        description="Bridge SIP MESSAGE (desk phones, softphones, PBXs) and carrier SMS/MMS.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", "-c", default=os.environ.get(CONFIG_ENV),
                       help=f"config file (default: ${CONFIG_ENV})")
        return p

    command("run", "run the bridge")
    command("check-config", "validate the config; print a summary and the webhook URLs")
    command("webhook-urls", "print each provider's webhook URL, to paste into its portal")
    p = command("messages", "list stored messages, newest first")
    p.add_argument("--state")
    p.add_argument("--number", help="remote number or DID, E.164")
    p.add_argument("--extension")
    p.add_argument("--since", type=float, help="only the last N hours")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p = command("show", "one message with its whole history")
    p.add_argument("id", type=int)
    p = command("retry", "attempt a failed or queued message again now (running daemon)")
    p.add_argument("id", type=int)
    p = command("send", "send a text as an extension would, with the same permission checks "
                        "(running daemon)")
    p.add_argument("--from", dest="sender", required=True, metavar="EXT")
    p.add_argument("--to", required=True, metavar="NUMBER")
    p.add_argument("--account", help="the account (PBX) of the extension, if several")
    p.add_argument("text", nargs="+")
    p = sub.add_parser("hash-password", help="make a password hash for [[console.users]]",
                       description="make a password hash for [[console.users]] (argon2id); "
                                   "asks for the password twice, or reads one line from stdin")
    p.add_argument("--stdin", action="store_true", help="read the password from stdin")
    p = command("migrate-db", "copy the SQLite state (history, queue, opt-outs, media) into "
                              "PostgreSQL, to run several instances on it")
    p.add_argument("--to", metavar="URL", default=os.environ.get("SIP_SMS_BRIDGE_DATABASE"),
                   help="postgresql://user:password@host/db (default: "
                        "$SIP_SMS_BRIDGE_DATABASE, which keeps the password out of ps)")
    p.add_argument("--force", action="store_true",
                   help="replace whatever state the target database holds")
    p = sub.add_parser("segments", help="how a text will be split into SMS, and why",
                       description="how a text will be split into SMS, and why")
    p.add_argument("text", nargs="+")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "segments":  # needs no config
        return cmd_segments(args)
    if args.command == "hash-password":
        return cmd_hash_password(args)
    if not args.config:
        print(f"error: give --config FILE or set ${CONFIG_ENV}", file=sys.stderr)
        return 2
    if args.command in READ_ONLY:
        return _read_only(args)
    try:
        settings = load_settings(args.config)
    except ConfigUnreadable as exc:
        print(exc.problems[0], file=sys.stderr)
        return EXIT_CONFIG
    except ConfigError as exc:
        print(f"{args.config}: configuration has {len(exc.problems)} problem(s):",
              file=sys.stderr)
        for line in exc.problems:
            print(f"  {line}", file=sys.stderr)
        return EXIT_CONFIG
    handler = {
        "run": cmd_run,
        "check-config": cmd_check_config,
        "webhook-urls": cmd_webhook_urls,
        "retry": cmd_retry,
        "send": cmd_send,
        "migrate-db": cmd_migrate_db,
    }[args.command]
    return handler(settings, args)


def _read_only(args: argparse.Namespace) -> int:
    """``messages`` and ``show``: the database is found from [bridge] state_dir alone, so
    they work while a secret cannot be resolved (or another part of the config is wrong).
    Whatever secrets do resolve are also masked in what is printed."""
    from bridge.store import DB_FILE, database_target

    try:
        state_dir = load_state_dir(args.config)
    except ConfigError as exc:
        print(exc.problems[0] if len(exc.problems) == 1 else
              f"{args.config}: {'; '.join(exc.problems)}", file=sys.stderr)
        return EXIT_CONFIG
    target: Path | str = Path(state_dir) / DB_FILE
    try:  # a PostgreSQL store is named by a secret: needs the config whole
        settings = load_settings(args.config)
        secrets, target = _secrets_of(settings), database_target(settings)
    except ConfigError:
        secrets = []
    command = cmd_messages if args.command == "messages" else cmd_show
    lines: list[str] = []
    try:
        status = command(target, args, lines.append)
    except DatabaseUnusable as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    if lines:
        from bridge.redact import redact

        print(redact("\n".join(lines), secrets))
    return status


def _secrets_of(settings: Settings) -> list[str]:
    from bridge.secrets import secret_values

    return secret_values(settings)


def setup_logging(settings: Settings) -> None:
    level = getattr(logging, settings.bridge.log_level.upper())
    under_journald = bool(os.environ.get("JOURNAL_STREAM"))
    fmt = "%(levelname)s %(name)s: %(message)s" if under_journald else (
        "%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = logging.StreamHandler()
    handler.setFormatter(_JsonFormatter() if settings.bridge.log_format == "json"
                         else _TextFormatter(fmt))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # Neither format names a thread, a process or the calling source line: skip looking
    # them up for every record (the stack walk for the caller was an eighth of a line).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None  # the logging HOWTO's "Optimization": no findCaller()
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    from bridge import logsafe

    logsafe.install(logging.getLogger().handlers, _secrets_of(settings))


class _TextFormatter(logging.Formatter):
    """The standard formatter, with the date and time of a second formatted once: several
    lines a second share it, and ``strftime`` is a good part of a line's cost."""

    _second: int | None = None
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:  # as the standard one: local time, then milliseconds
            self._stamp = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        return self.default_msec_format % (self._stamp, record.msecs)


# Built once: json.dumps(..., ensure_ascii=False) builds an encoder on every call.
_JSON = json.JSONEncoder(ensure_ascii=False)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {"time": record.created, "level": record.levelname.lower(),
                                    "logger": record.name, "message": record.getMessage()}
        message_id = getattr(record, "message_id", None)  # set via extra= where known
        if message_id is not None:
            entry["message_id"] = message_id
        if record.exc_info:  # exc_text: the traceback as the safe-log filter redacted it
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return _JSON.encode(entry)


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from bridge.app import Application

    setup_logging(settings)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # plain asyncio works too
        pass

    async def _main() -> int:
        return await Application(settings).run()

    log = logging.getLogger("bridge")
    try:
        return asyncio.run(_main())
    except DatabaseUnusable as exc:
        log.error("cannot start: %s", exc)
        return EXIT_CONFIG
    except RuntimeError as exc:  # start-up failures (SIP port in use, ...)
        if str(exc).startswith("SIP stack failed to start"):
            log.error("cannot start: %s", _sip_failure(settings, args.config, str(exc)))
            return EXIT_CONFIG
        log.error("cannot start: %s", exc)
        return 1
    except OSError as exc:
        log.error("cannot start: %s", _os_failure(settings, args.config, exc))
        return EXIT_CONFIG
    except Exception as exc:  # a database that is corrupt or from a newer version
        unusable = _database_problem(_target_of(settings), exc)
        if unusable is None:
            raise
        log.error("cannot start: %s", unusable)
        return EXIT_CONFIG


def _sip_failure(settings: Settings, config: str, message: str) -> str:
    """Why the SIP stack (pjsua2) did not start: a port in use, named, or its own words."""
    sip = settings.sip
    reason = message.removeprefix("SIP stack failed to start").lstrip(": ") or "no reason given"
    return _port_in_use(settings, config, message) or (
        f"{config}: sip: the SIP stack could not start on {sip.listen} port {sip.port} "
        f"({', '.join(t.upper() for t in sip.transports)}): {reason}")


def _os_failure(settings: Settings, config: str, exc: OSError) -> str:
    import errno

    in_use = _port_in_use(settings, config, str(exc))
    if in_use is not None:
        return in_use
    if exc.errno == errno.EACCES and settings.web.port < 1024:
        return (f"{config}: web.port: port {settings.web.port} needs privileges; use a port "
                "above 1023 (or CAP_NET_BIND_SERVICE)")
    return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")


def _port_in_use(settings: Settings, config: str, message: str) -> str | None:
    """The listening port that another program holds, as one line, or None. The error names
    the address when asyncio or uvloop raised it ("... ('127.0.0.1', 5060) ..."; uvloop's
    datagram error says "local_addr"); otherwise each configured port is tried."""
    import errno
    import re
    import socket

    sip, web = settings.sip, settings.web
    ports = [("sip.tls_port" if t == "tls" else "sip.port", sip.listen,
              sip.tls_port if t == "tls" else sip.port, t) for t in sip.transports]
    ports.append(("web.port", web.listen, web.port, "http"))
    named = re.search(r"\('[^']*', (\d+)\)", message)
    if named:
        ports = [p for p in ports if p[2] == int(named.group(1))]
    if "local_addr" in message:
        ports = [p for p in ports if p[3] == "udp"]
    elif "bind on address" in message:
        ports = [p for p in ports if p[3] != "udp"]
    if len(ports) != 1:
        held = []
        for port in ports:
            kind = socket.SOCK_DGRAM if port[3] == "udp" else socket.SOCK_STREAM
            family = socket.AF_INET6 if ":" in port[1] else socket.AF_INET
            try:
                with socket.socket(family, kind) as probe:
                    probe.bind((port[1], port[2]))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    held.append(port)
        ports = held[:1]
    if not ports:
        return None
    key, listen, number, transport = ports[0]
    return (f"{config}: {key}: {listen} port {number} ({transport.upper()}) is in use by "
            "another program; stop it or choose another port")


class DatabaseUnusable(Exception):
    """The database cannot be opened: one line naming the file and how to recover."""


def _database_problem(target: Path | str, exc: BaseException) -> str | None:
    import sqlite3

    from bridge.redact import redact
    from bridge.store import StoreError

    path = target if isinstance(target, Path) else redact(target, _url_password(target))
    if isinstance(exc, StoreError):
        return f"{path}: {exc}"
    if isinstance(exc, sqlite3.DatabaseError):
        return (f"{path}: not a usable bridge database ({exc}); stop the bridge, move it "
                f"aside with its -wal and -shm files and restore it from a backup (without "
                "one, the bridge starts an empty database)")
    return None


def _target_of(settings: Settings) -> Path | str:
    from bridge.store import database_target

    return database_target(settings)


def _url_password(url: str) -> list[str]:
    from urllib.parse import urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [password] if password else []


def _provider_lines(settings: Settings, *, masked: bool) -> list[tuple[str, str, str]]:
    from bridge.app import build_providers

    return [(p.name, p.webhook_url(masked=masked), p.webhook_auth)
            for p in build_providers(settings).values()]


def cmd_check_config(settings: Settings, args: argparse.Namespace) -> int:
    print(f"{args.config}: OK")
    print(f"  state:     {settings.bridge.state_dir}")
    print(f"  SIP:       {settings.sip.listen}:{settings.sip.port} "
          f"({'+'.join(settings.sip.transports)})")
    print(f"  web:       {settings.web.listen}:{settings.web.port}, "
          f"public URL {settings.bridge.public_url}")
    for a in settings.accounts:
        how = (f"registers as {a.username} at {a.registrar}" if a.mode == "register"
               else f"trunk from {', '.join(a.allowed_sources)}")
        print(f"  account {a.name}: {how}; extensions at {a.domain}")
    print(f"  numbers:   {len(settings.numbers)}; extensions: {len(settings.extensions)}")
    print("  webhook URLs (paste into each carrier's portal):")
    for name, url, auth in _provider_lines(settings, masked=True):
        print(f"    {name}: {url}")
        print(f"      authenticated by {auth}")
    return 0


def cmd_webhook_urls(settings: Settings, args: argparse.Namespace) -> int:
    for name, url, _ in _provider_lines(settings, masked=False):
        print(f"{name}\t{url}")
    return 0


def _query(target: Path | str, read):  # type: ignore[no-untyped-def]
    """Open the store at ``target`` (the SQLite file or the PostgreSQL URL), run
    ``read(store)`` (a coroutine of store reads), close it. None (with the reason on stderr)
    when there is no database yet; a corrupt database, or one from a newer version, is
    ``DatabaseUnusable``."""
    from bridge.store import Store

    if isinstance(target, Path) and not target.exists():
        print(f"no database at {target} yet (the bridge has not run)", file=sys.stderr)
        return None

    async def _read():  # type: ignore[no-untyped-def]
        store = Store(target, instance="cli")
        await store.open()
        try:
            return await read(store)
        finally:
            await store.close()

    try:
        return asyncio.run(_read())
    except Exception as exc:
        problem = _database_problem(target, exc)
        if problem is None:
            raise
        raise DatabaseUnusable(problem) from None


Out = Callable[[str], None]


def cmd_messages(target: Path | str, args: argparse.Namespace, out: Out = print) -> int:
    since = time.time() - args.since * 3600 if args.since else None
    rows = _query(target, lambda store: store.list_messages(
        state=args.state, number=args.number, extension=args.extension, since=since,
        limit=args.limit))
    if rows is None:
        return 1
    if args.json:
        out(json.dumps([_as_dict(m) for m in rows], indent=2))
        return 0
    for m in rows:
        arrow = "->" if m.direction == "out" else "<-"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.created_at))
        out(f"{m.id:>7} {when} {m.extension or '-':>6} {arrow} {m.remote:<16} "
            f"{m.state:<9} {m.body[:40]!r}")
    return 0


def cmd_show(target: Path | str, args: argparse.Namespace, out: Out = print) -> int:
    async def _both(store):  # type: ignore[no-untyped-def]
        return await store.get(args.id), await store.history(args.id)

    found = _query(target, _both)
    if found is None:
        return 1
    message, history = found
    if message is None:
        print(f"no message {args.id}", file=sys.stderr)
        return 1
    way = ("from extension {0.extension} to {0.remote}" if message.direction == "out"
           else "from {0.remote} to extension {0.extension}").format(message)
    out(f"message {message.id}: {message.kind} {way}")
    out(f"  state {message.state}; our number {message.did or '-'}; "
        f"provider {message.provider or '-'}; carrier id {message.carrier_id or '-'}")
    out(f"  attempts {message.attempts}; last error: {message.last_error or 'none'}")
    out(f"  text: {message.body!r}")
    for event in history:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.at))
        out(f"  {when}  {event.state:<9} {event.detail}")
    return 0


def cmd_migrate_db(settings: Settings, args: argparse.Namespace) -> int:
    from bridge.app import MEDIA_DIR
    from bridge.store import DB_FILE, StoreError, is_database_url
    from bridge.store.migrate import migrate

    if not args.to or not is_database_url(args.to):
        print("error: give --to postgresql://... (or set $SIP_SMS_BRIDGE_DATABASE)",
              file=sys.stderr)
        return 2
    state = Path(settings.bridge.state_dir)
    try:
        counts = migrate(state / DB_FILE, state / MEDIA_DIR, args.to, force=args.force)
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"copied {state / DB_FILE} into PostgreSQL; verified:")
    for c in counts:
        print(f"  {c.table:<14} {c.source:>8} -> {c.target}")
    print("now set [bridge] database to that URL (as a secret) on every instance")
    return 0


def _as_dict(m) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {
        "id": m.id, "direction": str(m.direction), "kind": str(m.kind), "state": str(m.state),
        "account": m.account, "extension": m.extension, "remote": m.remote, "did": m.did,
        "provider": m.provider, "carrier_id": m.carrier_id, "body": m.body,
        "attempts": m.attempts, "created_at": m.created_at, "updated_at": m.updated_at,
        "last_error": m.last_error,
    }


# --- commands that talk to the running daemon (admin API) ---------------------------------


class AdminError(Exception):
    """Why an admin call did not happen, in words for the person at the terminal."""


def _admin_url(settings: Settings) -> str:
    # The admin API answers loopback clients only: reach it over loopback, whatever the
    # web server listens on ("0.0.0.0", "::" and loopback addresses all include it).
    host = "[::1]" if ":" in settings.web.listen else "127.0.0.1"
    return f"http://{host}:{settings.web.port}"


def _admin_call(settings: Settings, config: str, path: str,
                payload: dict[str, object] | None = None) -> tuple[int, dict[str, object]]:
    import urllib.error
    import urllib.request

    from bridge.secrets import reveal

    if settings.admin.token is None:
        raise AdminError(f"the admin API is off: set [admin] token in {config} "
                         "(e.g. token = { credential = \"admin-token\" }) and restart the daemon")
    url = _admin_url(settings) + path
    request = urllib.request.Request(  # noqa: S310 (our own loopback URL)
        url, method="POST", data=json.dumps(payload or {}).encode(),
        headers={"Authorization": f"Bearer {reveal(settings.admin.token)}",
                 "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read() or b"{}")
        except ValueError:
            answer = {}
        if exc.code == 401:
            raise AdminError("the daemon refused the admin token: the token in "
                             f"{config} differs from the one the daemon started with "
                             "(restart it after changing the token)") from None
        if exc.code == 404 and "error" not in answer:
            raise AdminError(f"the daemon at {_admin_url(settings)} has no admin API: it "
                             "was started without [admin] token (restart it)") from None
        if not isinstance(answer, dict) or "error" not in answer:
            raise AdminError(f"the daemon answered HTTP {exc.code}") from None
        return exc.code, answer
    except urllib.error.URLError as exc:
        raise AdminError(f"the bridge is not running (nothing answers at "
                         f"{_admin_url(settings)}: {exc.reason})") from None
    except (TimeoutError, ConnectionError) as exc:
        raise AdminError(f"the bridge at {_admin_url(settings)} did not answer: "
                         f"{exc}") from None


def cmd_retry(settings: Settings, args: argparse.Namespace) -> int:
    try:
        status, answer = _admin_call(settings, args.config, f"/admin/messages/{args.id}/retry")
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if status >= 400:
        print(f"message {args.id} not retried: {answer['error']}", file=sys.stderr)
        return 1
    print(f"message {args.id} queued again; follow it with: sip-sms-bridge show {args.id}")
    return 0


def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    payload: dict[str, object] = {"from": args.sender, "to": args.to,
                                  "text": " ".join(args.text)}
    if args.account:
        payload["account"] = args.account
    try:
        status, answer = _admin_call(settings, args.config, "/admin/send", payload)
    except AdminError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if status >= 400:
        stored = f" (stored as message {answer['id']})" if answer.get("id") else ""
        print(f"not sent: {answer['error']}{stored}", file=sys.stderr)
        return 1
    print(f"message {answer['id']} queued; follow it with: sip-sms-bridge show {answer['id']}")
    return 0


def cmd_segments(args: argparse.Namespace) -> int:
    from bridge.numbers import segments

    text = " ".join(args.text)
    seg = segments(text)
    unit = "septets" if seg.encoding == "GSM-7" else "UTF-16 code units"
    print(f"{seg.encoding}, {seg.count} segment{'' if seg.count == 1 else 's'} "
          f"({seg.units} {unit}; {seg.per_segment} per segment)")
    print(f"why: {seg.reason}")
    if seg.count > 1:
        single = 160 if seg.encoding == "GSM-7" else 70
        print(f"  a text over {single} {unit} is split into parts of {seg.per_segment}, "
              "each carrying a header that joins them again on the phone")
    return 0


def cmd_hash_password(args: argparse.Namespace) -> int:
    import getpass

    from bridge.web.console.auth import hash_password

    if args.stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("console password: ")
        if getpass.getpass("again: ") != password:
            print("error: the two passwords differ", file=sys.stderr)
            return 1
    if len(password) < 10:
        print("error: use at least 10 characters", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0
