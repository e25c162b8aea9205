"""The benchmark's scenarios: one stepped-load step each way, the backlog drain, the raw
ceilings and the idle measurement. Each returns plain numbers; run.py prints them."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bench.load import closed_loop_posts, offer, percentile, signed_webhooks
from bench.procs import (
    DID,
    EXTENSION,
    REMOTE,
    Bridge,
    Carrier,
    CpuWindow,
    Uas,
    memory_kib,
    run_sipp,
)
from bridge.model import Direction
from bridge.store import NewMessage, Store

STEP_SECONDS = 4.0       # offered load per step
SUSTAINED = 0.95         # a step is sustained if throughput keeps within 5% of the offer
WEBHOOK_CONCURRENCY = 128
DRAIN_CAP = 30.0         # seconds to wait for stragglers after a step
STALL = 5.0              # ... or until nothing new arrived for this long
BACKLOG = 100_000


@dataclass
class SipTarget(Protocol):
    """What takes the phones' MESSAGEs: the bridge, or the do-it-yourself peer."""

    @property
    def sip_port(self) -> int: ...
    @property
    def pid(self) -> int: ...  # its CPU is this process's and its descendants'


class WebTarget(Protocol):
    """What takes the carrier's webhooks: the bridge, or the do-it-yourself peer."""

    @property
    def url(self) -> str: ...
    @property
    def pid(self) -> int: ...


@dataclass
class Step:
    """One offered rate, held for STEP_SECONDS."""

    offered: int
    sent: int = 0
    delivered: int = 0
    lost: int = 0            # sent (and acknowledged) but never arrived at the far end
    refused: int = 0         # sipp failures / non-2xx webhook answers
    duplicates: int = 0
    offered_actual: float = 0.0
    throughput: float = 0.0  # delivered / (last arrival - first send)
    p50_ms: float = math.nan  # end to end: SIP send -> carrier request, webhook -> SIP arrival
    p99_ms: float = math.nan
    resp_p50_ms: float = math.nan  # webhook response time (SMS -> phone only)
    resp_p99_ms: float = math.nan
    cpu: float = 0.0         # target's CPU over the step and its drain, % of one core
    cpu_seconds: float = 0.0  # ... in CPU seconds
    waited: float = 0.0      # seconds the webhook client waited with every connection busy

    @property
    def sustained(self) -> bool:
        return (self.lost == 0 and self.refused == 0 and self.delivered == self.sent
                and self.throughput >= SUSTAINED * self.offered
                and self.offered_actual >= SUSTAINED * self.offered)

    @property
    def cpu_ms_per_text(self) -> float:
        """CPU time the target spent per text delivered (ms): what sizes a machine."""
        return 1000 * self.cpu_seconds / self.delivered if self.delivered else math.nan

    @property
    def note(self) -> str:
        if self.offered_actual < SUSTAINED * self.offered:
            if self.waited > 0.1:
                return (f"answered too slowly: all {WEBHOOK_CONCURRENCY} connections "
                        f"busy for {self.waited:.1f} s")
            return "load generator could not offer the rate"
        if self.lost or self.refused:
            return f"lost {self.lost}, refused {self.refused}"
        if not self.sustained:
            return "fell behind"
        return ""


async def wait_for_count(count: Callable[[], int], expected: int, cap: float = DRAIN_CAP,
                         stall: float = STALL) -> int:
    """Poll until ``expected`` arrived, nothing new came for ``stall`` s, or ``cap`` s."""
    deadline = time.monotonic() + cap
    last, last_change = -1, time.monotonic()
    while True:
        n = await asyncio.to_thread(count)
        now = time.monotonic()
        if n >= expected or now > deadline or (n == last and now - last_change > stall):
            return n
        if n != last:
            last, last_change = n, now
        await asyncio.sleep(0.05)


def _finish(step: Step, matched: dict[int, tuple[float, float]], duplicates: int) -> Step:
    """``matched``: seq -> (sent at, arrived at), wall clock."""
    step.delivered = len(matched)
    step.lost = step.sent - step.refused - step.delivered
    step.duplicates = duplicates
    if matched:
        sends = [s for s, _ in matched.values()]
        arrivals = [a for _, a in matched.values()]
        latencies = [(a - s) * 1000 for s, a in matched.values()]
        span = max(arrivals) - min(sends)
        step.throughput = step.delivered / span if span > 0 else math.inf
        step.p50_ms, step.p99_ms = percentile(latencies, 50), percentile(latencies, 99)
    return step


async def phone_to_sms_step(target: SipTarget, carrier: Carrier, rate: int, label: str
                            ) -> Step:
    """sipp offers MESSAGEs at ``rate``; the carrier stamps each request's arrival."""
    tag = f"{label}o{rate}"
    step = Step(offered=rate, sent=int(rate * STEP_SECONDS))
    cpu = CpuWindow(target.pid).start()
    sipp = await asyncio.to_thread(run_sipp, f"127.0.0.1:{target.sip_port}", count=step.sent,
                                   rate=rate, tag=tag)
    step.refused = sipp.failed + (step.sent - sipp.calls)
    await wait_for_count(lambda: carrier.count(f"bench {tag} "), step.sent - step.refused)
    step.cpu, step.cpu_seconds = cpu.stop(), cpu.seconds
    matched: dict[int, tuple[float, float]] = {}
    duplicates = 0
    for arrival, body in await asyncio.to_thread(carrier.dump):
        parts = body.split()  # "bench TAG N SEC USEC" (sipp's gettimeofday at send)
        if len(parts) != 5 or parts[1] != tag:
            continue
        seq = int(parts[2])
        if seq in matched:
            duplicates += 1
            continue
        matched[seq] = (float(parts[3]) + float(parts[4]) / 1e6, arrival)
    if matched:
        sends = sorted(s for s, _ in matched.values())
        span = sends[-1] - sends[0]
        step.offered_actual = (len(sends) - 1) / span if span > 0 else math.inf
    return _finish(step, matched, duplicates)


async def sms_to_phone_step(target: WebTarget, uas: Uas, rate: int, label: str) -> Step:
    """Signed Twilio webhooks offered at ``rate``; the UAS stamps each MESSAGE's arrival."""
    tag = f"{label}i{rate}"
    step = Step(offered=rate, sent=int(rate * STEP_SECONDS))
    url = f"{target.url}/webhooks/twilio"
    hooks = await asyncio.to_thread(signed_webhooks, url, tag, step.sent)
    cpu = CpuWindow(target.pid).start()
    offered = await offer(url, hooks, rate, WEBHOOK_CONCURRENCY)
    step.offered_actual, step.waited = offered.rate, offered.waited
    accepted = {s.seq: s for s in offered.sent if s.status == 200}
    step.refused = step.sent - len(accepted)
    await wait_for_count(lambda: uas.count(f"bench {tag} "), len(accepted))
    step.cpu, step.cpu_seconds = cpu.stop(), cpu.seconds
    responses = [s.seconds * 1000 for s in accepted.values()]
    step.resp_p50_ms, step.resp_p99_ms = percentile(responses, 50), percentile(responses, 99)
    matched: dict[int, tuple[float, float]] = {}
    duplicates = 0
    for arrival, body in await asyncio.to_thread(uas.dump):
        parts = body.split()  # "bench TAG N"
        if len(parts) != 3 or parts[1] != tag:
            continue
        seq = int(parts[2])
        if seq in matched:
            duplicates += 1
        elif seq in accepted:
            matched[seq] = (accepted[seq].started, arrival)
    return _finish(step, matched, duplicates)


@dataclass
class MemoryRun:
    """Peak resident memory while phones text at a steady rate over one transport."""

    transport: str  # "udp" (pjsua, transaction state kept 32 s) or "tcp" (the own listener)
    rate: int
    seconds: float
    sent: int
    delivered: int
    start_rss_mib: float
    peak_rss_mib: float
    # whether the bridge kept up (delivered / (last arrival - first send)) and what a text
    # cost it over this transport: TCP to the PBX is one of the ways to a cheaper text
    throughput: float = math.nan
    cpu_ms_per_text: float = math.nan


async def memory_run(bridge: Bridge, carrier: Carrier, transport: str, rate: int,
                     seconds: float) -> MemoryRun:
    """sipp at ``rate`` for ``seconds`` over ``transport``; the bridge's peak RSS (VmHWM of a
    bridge started for this run alone), throughput and CPU per text."""
    tag = f"m{transport}{rate}"
    sent = int(rate * seconds)
    start = memory_kib(bridge.pid)["VmRSS"] / 1024
    cpu, began = CpuWindow(bridge.pid).start(), time.time()
    sipp = await asyncio.to_thread(run_sipp, f"127.0.0.1:{bridge.sip_port}", count=sent,
                                   rate=rate, tag=tag, timeout=seconds * 3 + 30,
                                   transport="t1" if transport == "tcp" else "u1")
    await wait_for_count(lambda: carrier.count(f"bench {tag} "), sipp.successful)
    cpu.stop()
    arrivals = [t for t, body in await asyncio.to_thread(carrier.dump)
                if body.startswith(f"bench {tag} ")]
    span = max(arrivals) - began if arrivals else 0.0
    return MemoryRun(transport, rate, seconds, sent, len(arrivals), start,
                     memory_kib(bridge.pid)["VmHWM"] / 1024,
                     throughput=len(arrivals) / span if span > 0 else math.nan,
                     cpu_ms_per_text=1000 * cpu.seconds / len(arrivals) if arrivals
                     else math.nan)


async def stepped(run_step: Callable[[int], Awaitable[Step]], rates: tuple[int, ...]
                  ) -> list[Step]:
    """Step the offered load up until a step is not sustained."""
    steps = []
    for rate in rates:
        step = await run_step(rate)
        steps.append(step)
        print(f"    {rate:>5}/s: delivered {step.delivered}/{step.sent}, "
              f"throughput {step.throughput:,.0f}/s, p50 {step.p50_ms:.1f} ms, "
              f"p99 {step.p99_ms:.1f} ms, CPU {step.cpu:.0f}% "
              f"({step.cpu_ms_per_text:.2f} ms/text) {step.note}", flush=True)
        if not step.sustained:
            break
        await asyncio.sleep(1)  # let the WAL checkpoint and timers settle between steps
    return steps


def best(steps: list[Step]) -> Step | None:
    sustained = [s for s in steps if s.sustained]
    return sustained[-1] if sustained else None


# --- idle, ceilings, backlog ------------------------------------------------------------------


async def idle_cpu(bridge: Bridge, seconds: float = 10.0) -> float:
    cpu = CpuWindow(bridge.pid).start()
    await asyncio.sleep(seconds)
    return cpu.stop()


@dataclass
class Ceilings:
    sip_per_s: float
    http_per_s: float
    # CPU per request at those rates (ms), each side alone: what one text's two hops cost
    # with nothing but pjsua2 and aiohttp in the way
    sip_send_ms: float = math.nan    # pjsua2 UAC (sends the MESSAGE, takes the 200)
    sip_recv_ms: float = math.nan    # pjsua2 UAS (takes the MESSAGE, answers 200)
    http_client_ms: float = math.nan  # aiohttp client (this process)
    http_server_ms: float = math.nan  # aiohttp server (the carrier stand-in)

    @property
    def phone_to_sms_ms(self) -> float:
        """A MESSAGE received and a POST sent, at the raw cost of each."""
        return self.sip_recv_ms + self.http_client_ms

    @property
    def sms_to_phone_ms(self) -> float:
        """A POST received and a MESSAGE sent, at the raw cost of each."""
        return self.http_server_ms + self.sip_send_ms


async def ceilings(carrier: Carrier) -> Ceilings:
    """pjsua2 -> pjsua2 MESSAGE (256 outstanding) and aiohttp -> aiohttp POST (64 at a time)
    on the same machine, with the same peers the bridge is measured against."""
    sender, receiver = Uas(), Uas()
    try:
        send_cpu, recv_cpu = CpuWindow(sender.proc.pid).start(), CpuWindow(receiver.proc.pid)
        recv_cpu.start()
        result = await asyncio.to_thread(
            sender.blast, f"sip:{EXTENSION}@127.0.0.1:{receiver.port}", 40_000, 256)
        send_cpu.stop()
        recv_cpu.stop()
        sip = result["ok"] / result["seconds"] if result["seconds"] else 0.0
    finally:
        sender.close()
        receiver.close()
    server_cpu = CpuWindow(carrier.proc.pid).start()
    client_cpu = time.process_time()
    posts = 20_000
    http = await closed_loop_posts(carrier.messages_url, posts, 64)
    client_cpu = time.process_time() - client_cpu
    server_cpu.stop()
    await asyncio.to_thread(carrier.dump)  # forget the ceiling's requests
    ok = max(1, result["ok"])
    return Ceilings(sip, http, 1000 * send_cpu.seconds / ok, 1000 * recv_cpu.seconds / ok,
                    1000 * client_cpu / posts, 1000 * server_cpu.seconds / posts)


@dataclass
class Backlog:
    messages: int
    prefill_seconds: float
    startup_seconds: float
    drained: int
    drain_per_s: float
    peak_rss_mib: float
    cpu: float


async def prefill(db_path: Path, count: int) -> None:
    """Queue ``count`` inbound texts through the store's own interface, as webhooks would
    have while the phones were unreachable."""
    store = Store(db_path, durability="normal")  # setup, not measured: no fsync per insert
    await store.open()
    try:
        expires = time.time() + 86_400
        batch = 500
        for first in range(0, count, batch):
            await asyncio.gather(*(store.insert([NewMessage(
                direction=Direction.IN, account="pbx", extension=EXTENSION, remote=REMOTE,
                did=DID, provider="twilio", carrier_id=f"SMbacklog{i:024d}",
                body=f"bench backlog {i}", expires_at=expires,
                event_detail="queued by the benchmark",
            )]) for i in range(first, min(count, first + batch))))
    finally:
        await store.close()


async def backlog(workdir: Path, carrier: Carrier, durability: str, count: int) -> Backlog:
    """``count`` texts queued for a phone that was down; the bridge starts with the phone
    up and drains them."""
    uas = Uas()
    bridge = Bridge(workdir, uas.port, carrier.url, durability)
    try:
        t = time.monotonic()
        await prefill(bridge.db_path, count)
        prefill_seconds = time.monotonic() - t
        startup = await asyncio.to_thread(bridge.start, 60.0)
        ready_at = time.time()
        cpu = CpuWindow(bridge.pid).start()
        await wait_for_count(lambda: uas.count("bench backlog "), count, cap=300, stall=15)
        cpu.stop()
        rss = memory_kib(bridge.pid)["VmHWM"] / 1024
        arrivals = await asyncio.to_thread(uas.dump)
        seen = {b for _, b in arrivals if b.startswith("bench backlog ")}
        last = max((a for a, _ in arrivals), default=ready_at)
        rate = len(seen) / (last - ready_at) if last > ready_at else 0.0
        return Backlog(count, prefill_seconds, startup, len(seen), rate, rss, cpu.percent)
    finally:
        await asyncio.to_thread(bridge.stop)
        uas.close()
