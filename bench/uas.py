"""A pjsua2 user agent for the benchmark, in its own process (one Endpoint per process).

As a UAS it answers every MESSAGE (pjsua itself sends the 200) and records the wall-clock
arrival time and body of each. As a UAC it blasts MESSAGEs at another UAS with a fixed window
of outstanding requests, which measures the raw pjsua2 -> pjsua2 ceiling.

JSON lines. Commands on stdin:
    {"cmd": "dump", "path": "/tmp/x.json"}   write [[arrival, body], ...] there and forget them
    {"cmd": "count", "prefix": "bench x "}    -> {"event": "count", "n": N} (bodies so
                                                  starting, received since the last dump)
    {"cmd": "blast", "to": "sip:x@127.0.0.1:P", "n": 40000, "window": 256}
        -> {"event": "blast", "ok": K, "failed": F, "seconds": S}
    {"cmd": "quit"}
Events on stdout: {"event": "ready", "port": N} first.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
from typing import Any

import pjsua2 as pj

# pjlib may print to stdout before its log settings apply: keep stdout for the JSON events.
EVENTS = os.fdopen(os.dup(1), "w", encoding="utf-8")
os.dup2(2, 1)


def emit(**event: object) -> None:
    EVENTS.write(json.dumps(event) + "\n")
    EVENTS.flush()


class BenchAccount(pj.Account):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[tuple[float, str]] = []
        self.outstanding = 0
        self.ok = 0
        self.failed = 0

    def onInstantMessage(self, prm: Any) -> None:
        self.received.append((time.time(), prm.msgBody))

    def onInstantMessageStatus(self, prm: Any) -> None:
        self.outstanding -= 1
        if 200 <= prm.code < 300:
            self.ok += 1
        else:
            self.failed += 1


def blast(ep: Any, acc: BenchAccount, to: str, n: int, window: int) -> None:
    buddy = pj.Buddy()
    cfg = pj.BuddyConfig()
    cfg.uri = to
    cfg.subscribe = False
    buddy.create(acc, cfg)
    acc.ok = acc.failed = acc.outstanding = 0
    sent = 0
    start = time.perf_counter()
    deadline = start + 60  # bounded: a stuck peer ends the blast, it does not hang the bench
    while (sent < n or acc.outstanding > 0) and time.perf_counter() < deadline:
        while sent < n and acc.outstanding < window:
            prm = pj.SendInstantMessageParam()
            prm.content = f"ceiling {sent}"
            prm.contentType = "text/plain"
            buddy.sendInstantMessage(prm)
            acc.outstanding += 1
            sent += 1
        # poll without sleeping while there is work; block briefly only when idle
        if ep.libHandleEvents(0) <= 0:
            ep.libHandleEvents(1)
    emit(event="blast", ok=acc.ok, failed=acc.failed, seconds=time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ext", default="1001")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = False
    cfg.logConfig.level = 0
    cfg.logConfig.consoleLevel = 0
    cfg.medConfig.noVad = True
    ep.libInit(cfg)
    tc = pj.TransportConfig()
    tc.port = args.port
    tc.boundAddress = "127.0.0.1"
    tid = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
    port = int(ep.transportGetInfo(tid).localName.rsplit(":", 1)[1])
    ep.libStart()
    acc = BenchAccount()
    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:{args.ext}@127.0.0.1:{port}"
    acfg.mwiConfig.enabled = False
    acc.create(acfg, True)  # default account: takes MESSAGEs to any user
    emit(event="ready", port=port)

    commands: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()

    def reader() -> None:
        for line in sys.stdin:
            if line.strip():
                commands.put(json.loads(line))
        commands.put({"cmd": "quit"})

    threading.Thread(target=reader, daemon=True).start()
    running = True
    while running:
        ep.libHandleEvents(5)
        while running:
            try:
                cmd = commands.get_nowait()
            except queue.Empty:
                break
            if cmd["cmd"] == "quit":
                running = False
            elif cmd["cmd"] == "count":
                prefix = cmd.get("prefix", "")
                emit(event="count", n=sum(b.startswith(prefix) for _, b in acc.received))
            elif cmd["cmd"] == "dump":
                with open(cmd["path"], "w", encoding="utf-8") as out:
                    json.dump(acc.received, out)
                acc.received = []
                emit(event="dumped")
            elif cmd["cmd"] == "blast":
                blast(ep, acc, cmd["to"], int(cmd["n"]), int(cmd.get("window", 256)))
    ep.libDestroy()


if __name__ == "__main__":
    main()
