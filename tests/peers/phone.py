"""A SIP phone for tests: a real pjsua2 user agent in its own process.

Speaks JSON lines. Commands on stdin:
    {"cmd": "send", "id": "x", "to": "sip:+1555...@host:port", "body": "...",
     "content_type": "text/plain"}
    {"cmd": "register", "on": true|false}
    {"cmd": "quit"}
Events on stdout:
    {"event": "ready", "port": N}
    {"event": "registered", "code": 200, "active": true}
    {"event": "message", "from": "...", "to": "...", "content_type": "...", "body": "..."}
    {"event": "status", "id": "x", "code": 200}

Usage: python -m tests.peers.phone --ext 1001 [--password pw --registrar sip:127.0.0.1:5070]
       [--answer 200]   (the status the phone answers MESSAGEs with; pjsua answers 200 itself,
                         so any other value makes the phone simply not run: see --offline)
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading

import pjsua2 as pj

# pjlib prints to stdout before its log settings apply: keep our own copy of stdout for
# the JSON events and send fd 1 to stderr.
EVENTS = os.fdopen(os.dup(1), "w", encoding="utf-8")
os.dup2(2, 1)


def emit(**event: object) -> None:
    EVENTS.write(json.dumps(event) + "\n")
    EVENTS.flush()


class PhoneAccount(pj.Account):
    def __init__(self) -> None:
        super().__init__()
        self.tokens: dict[int, tuple[object, str]] = {}

    def onRegState(self, prm):
        info = self.getInfo()
        emit(event="registered", code=int(prm.code), active=bool(info.regIsActive))

    def onInstantMessage(self, prm):
        emit(event="message", **{"from": prm.fromUri}, to=prm.toUri,
             content_type=prm.contentType, body=prm.msgBody)

    def onInstantMessageStatus(self, prm):
        entry = self.tokens.pop(int(prm.userData), None) if prm.userData is not None else None
        emit(event="status", id=entry[1] if entry else None, code=int(prm.code))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ext", required=True)
    parser.add_argument("--domain", default="127.0.0.1")
    parser.add_argument("--password")
    parser.add_argument("--registrar")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--expires", type=int, default=120)
    parser.add_argument("--tls", action="store_true", help="also a TLS client transport")
    args = parser.parse_args()

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = False
    cfg.logConfig.level = 0
    cfg.logConfig.consoleLevel = 0
    ep.libInit(cfg)
    tc = pj.TransportConfig()
    tc.port = args.port
    tc.boundAddress = args.bind
    tid = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
    port = int(ep.transportGetInfo(tid).localName.rsplit(":", 1)[1])
    if args.tls:
        tls = pj.TransportConfig()
        tls.boundAddress = args.bind
        ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tls)
    ep.libStart()

    acc = PhoneAccount()
    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:{args.ext}@{args.domain}"
    if args.registrar:
        acfg.regConfig.registrarUri = args.registrar
        acfg.regConfig.timeoutSec = args.expires
        acfg.regConfig.retryIntervalSec = 2
        acfg.regConfig.firstRetryIntervalSec = 1
        acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", args.ext, 0,
                                                        args.password or ""))
    acc.create(acfg, True)
    emit(event="ready", port=port)

    commands: queue.SimpleQueue = queue.SimpleQueue()

    def reader() -> None:
        for line in sys.stdin:
            if line.strip():
                commands.put(json.loads(line))
        commands.put({"cmd": "quit"})

    threading.Thread(target=reader, daemon=True).start()
    buddies: dict[str, pj.Buddy] = {}
    running = True
    while running:
        ep.libHandleEvents(10)
        while True:
            try:
                cmd = commands.get_nowait()
            except queue.Empty:
                break
            if cmd["cmd"] == "quit":
                running = False
                break
            if cmd["cmd"] == "register":
                acc.setRegistration(bool(cmd["on"]))
            elif cmd["cmd"] == "send":
                buddy = buddies.get(cmd["to"])
                if buddy is None:
                    buddy = pj.Buddy()
                    bcfg = pj.BuddyConfig()
                    bcfg.uri = cmd["to"]
                    bcfg.subscribe = False
                    buddy.create(acc, bcfg)
                    buddies[cmd["to"]] = buddy
                prm = pj.SendInstantMessageParam()
                prm.content = cmd["body"]
                prm.contentType = cmd.get("content_type", "text/plain")
                token = pj.SipHeader()
                prm.userData = token
                acc.tokens[int(token.this)] = (token, cmd.get("id", ""))
                buddy.sendInstantMessage(prm)
    ep.libDestroy()


if __name__ == "__main__":
    main()
