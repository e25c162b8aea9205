"""Command line: ``sip-sms-bridge COMMAND --config FILE``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bridge import __version__
from bridge.settings import ConfigError, Settings, load_settings

CONFIG_ENV = "SIP_SMS_BRIDGE_CONFIG"


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
    if not args.config:
        print(f"error: give --config FILE or set ${CONFIG_ENV}", file=sys.stderr)
        return 2
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"{args.config}: configuration has {len(exc.problems)} problem(s):",
              file=sys.stderr)
        for line in exc.problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    handler = {
        "run": cmd_run,
        "check-config": cmd_check_config,
        "webhook-urls": cmd_webhook_urls,
        "messages": cmd_messages,
        "show": cmd_show,
        "retry": cmd_retry,
        "send": cmd_send,
        "migrate-db": cmd_migrate_db,
    }[args.command]
    return handler(settings, args)


def setup_logging(settings: Settings) -> None:
    level = getattr(logging, settings.bridge.log_level.upper())
    under_journald = bool(os.environ.get("JOURNAL_STREAM"))
    fmt = "%(levelname)s %(name)s: %(message)s" if under_journald else (
        "%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.bridge.log_format == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(_JsonFormatter())
        logging.basicConfig(level=level, handlers=[handler], force=True)
    else:
        logging.basicConfig(level=level, format=fmt, force=True)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {"time": record.created, "level": record.levelname.lower(),
                                    "logger": record.name, "message": record.getMessage()}
        message_id = getattr(record, "message_id", None)  # set via extra= where known
        if message_id is not None:
            entry["message_id"] = message_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


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

    try:
        return asyncio.run(_main())
    except RuntimeError as exc:  # start-up failures (SIP port in use, ...)
        logging.getLogger("bridge").error("%s", exc)
        return 1
    except OSError as exc:
        logging.getLogger("bridge").error("cannot start: %s", exc)
        return 1


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


def _read_store(settings: Settings, read):  # type: ignore[no-untyped-def]
    """Open the store the daemon uses, run ``read(store)`` (a coroutine of store reads),
    close it. None (with the reason on stderr) when there is no database yet."""
    from bridge.store import Store, StoreError, database_target

    target = database_target(settings)
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
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def cmd_messages(settings: Settings, args: argparse.Namespace) -> int:
    since = time.time() - args.since * 3600 if args.since else None
    rows = _read_store(settings, lambda store: store.list_messages(
        state=args.state, number=args.number, extension=args.extension, since=since,
        limit=args.limit))
    if rows is None:
        return 1
    if args.json:
        print(json.dumps([_as_dict(m) for m in rows], indent=2))
        return 0
    for m in rows:
        arrow = "->" if m.direction == "out" else "<-"
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.created_at))
        print(f"{m.id:>7} {when} {m.extension or '-':>6} {arrow} {m.remote:<16} "
              f"{m.state:<9} {m.body[:40]!r}")
    return 0


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    async def _both(store):  # type: ignore[no-untyped-def]
        return await store.get(args.id), await store.history(args.id)

    found = _read_store(settings, _both)
    if found is None:
        return 1
    message, history = found
    if message is None:
        print(f"no message {args.id}", file=sys.stderr)
        return 1
    way = ("from extension {0.extension} to {0.remote}" if message.direction == "out"
           else "from {0.remote} to extension {0.extension}").format(message)
    print(f"message {message.id}: {message.kind} {way}")
    print(f"  state {message.state}; our number {message.did or '-'}; "
          f"provider {message.provider or '-'}; carrier id {message.carrier_id or '-'}")
    print(f"  attempts {message.attempts}; last error: {message.last_error or 'none'}")
    print(f"  text: {message.body!r}")
    for event in history:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.at))
        print(f"  {when}  {event.state:<9} {event.detail}")
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
