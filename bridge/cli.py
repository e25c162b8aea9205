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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
        return json.dumps({"time": record.created, "level": record.levelname.lower(),
                           "logger": record.name, "message": record.getMessage()})


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from bridge.app import Application

    setup_logging(settings)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # plain asyncio works too
        pass

    async def _main() -> None:
        await Application(settings).run()

    try:
        asyncio.run(_main())
    except RuntimeError as exc:  # start-up failures (SIP port in use, ...)
        logging.getLogger("bridge").error("%s", exc)
        return 1
    except OSError as exc:
        logging.getLogger("bridge").error("cannot start: %s", exc)
        return 1
    return 0


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


def _open_store(settings: Settings):  # type: ignore[no-untyped-def]
    from bridge.app import DB_FILE
    from bridge.store import Store

    path = Path(settings.bridge.state_dir) / DB_FILE
    if not path.exists():
        print(f"no database at {path} yet (the bridge has not run)", file=sys.stderr)
        return None
    store = Store(path)
    store.open_sync()
    return store


def cmd_messages(settings: Settings, args: argparse.Namespace) -> int:
    from bridge.store import list_messages

    store = _open_store(settings)
    if store is None:
        return 1
    since = time.time() - args.since * 3600 if args.since else None
    rows = store.query_sync(lambda db: list_messages(
        db, state=args.state, number=args.number, extension=args.extension, since=since,
        limit=args.limit))
    store.close_sync()
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
    from bridge.store import _get, _history

    store = _open_store(settings)
    if store is None:
        return 1
    message = store.query_sync(lambda db: _get(db, args.id))
    history = store.query_sync(lambda db: _history(db, args.id))
    store.close_sync()
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


def _as_dict(m) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {
        "id": m.id, "direction": str(m.direction), "kind": str(m.kind), "state": str(m.state),
        "account": m.account, "extension": m.extension, "remote": m.remote, "did": m.did,
        "provider": m.provider, "carrier_id": m.carrier_id, "body": m.body,
        "attempts": m.attempts, "created_at": m.created_at, "updated_at": m.updated_at,
        "last_error": m.last_error,
    }
