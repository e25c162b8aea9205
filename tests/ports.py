"""Listening ports for the processes tests and benchmarks start, picked so nothing takes them
between the pick and the bind.

A port the kernel hands out for ``bind(0)`` comes from its ephemeral range, and so does the
source port of every outgoing connection (aiohttp, urllib, PostgreSQL clients): a port picked
that way and closed again can be taken by any connect() before the bridge binds it, which is how
a test once failed with "port ... is in use by another program". Ports below the ephemeral range
are never assigned implicitly, so here they are handed out from there, in turn (no port twice
before all were tried), and only after a bind on both TCP and UDP shows nobody else holds it.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
from pathlib import Path

LOWEST = 10_000  # above well-known and registered defaults the tests start (5060, 5432, ...)


def _below_ephemeral() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32_768  # Linux's default
    return max(low, LOWEST + 1_000)


_END = _below_ephemeral()
# Start where this process's id points, so two runs side by side rarely walk the same ports.
_START = LOWEST + (os.getpid() * 7919) % (_END - LOWEST)
_candidates = itertools.cycle(itertools.chain(range(_START, _END), range(LOWEST, _START)))
_lock = threading.Lock()


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(family, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP on ``host`` (SIP listens on both), not handed out
    before by this process and outside the range the kernel assigns on its own."""
    with _lock:
        for _ in range(_END - LOWEST):
            port = next(_candidates)
            if _bindable(host, port):
                return port
    raise RuntimeError(f"no free port in {LOWEST}-{_END - 1}")
