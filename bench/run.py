"""The benchmark (``make bench``): the bridge as a real process, real peers, loopback only,
side by side with the do-it-yourself Kamailio bridge (bench/diy.py) in the same run.

- Phone -> SMS: sipp (trunk MESSAGEs) -> bridge or peer -> a local server speaking Twilio's API.
- SMS -> phone: signed Twilio webhooks (aiohttp client) -> bridge or peer -> a pjsua2 UAS.
  Both stepped up in offered rate until a step is not sustained (some loss, or throughput
  more than 5% below the offer); loss is what the carrier or the phone never received.
- Raw ceilings of the same peers in the same run; every bridge figure as a ratio of the
  peer's and of the raw ceilings.
- Backlog: 100,000 texts queued for a phone that was down, drained at start-up.
- Memory: peak RSS with phones texting at 1,000/s for 60 s, over UDP and over TCP.
- Start-up-to-ready time and idle CPU.

Prints a Markdown table (pasteable into the README) and, with --json, writes every figure.
Usage: python -m bench.run [--quick] [--durability full [normal]] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import uvloop

from bench import scenarios as sc
from bench.diy import SHM_MIB, PhoneToSmsPeer, SmsToPhonePeer
from bench.procs import Bridge, Carrier, Uas, machine_busy, memory_kib

RATES = (250, 500, 750, 1000, 1500, 2000, 3000, 4000, 5000, 6000, 8000)
LATENCY_RATE = 1000  # latency and CPU per text are compared at this step (or the nearest)
MEMORY_RATE, MEMORY_SECONDS = 1000, 60.0  # phones texting steadily, per transport


@dataclasses.dataclass
class Run:
    durability: str
    startup_seconds: float
    idle_cpu: float
    out_steps: list[sc.Step]
    in_steps: list[sc.Step]
    peak_rss_mib: float


@dataclasses.dataclass
class PeerRun:
    """The do-it-yourself Kamailio peer: one Kamailio per direction."""

    shm_mib: int
    out_steps: list[sc.Step]
    in_steps: list[sc.Step]
    out_rss_mib: float   # peak of the summed PSS of its processes
    in_rss_mib: float
    out_shm_used_mib: float  # Kamailio's own "max_used" of its shared memory
    in_shm_used_mib: float


async def measure(root: Path, carrier: Carrier, uas: Uas, durability: str,
                  rates: tuple[int, ...], idle_seconds: float) -> Run:
    bridge = Bridge(root / durability, uas.port, carrier.url, durability)
    try:
        startup = await asyncio.to_thread(bridge.start)
        print(f"  bridge ({durability}) ready in {startup:.2f} s", flush=True)
        idle = await sc.idle_cpu(bridge, idle_seconds) if idle_seconds else math.nan
        print("  phone -> SMS (sipp -> bridge -> carrier)", flush=True)
        out_steps = await sc.stepped(
            lambda r: sc.phone_to_sms_step(bridge, carrier, r, durability[0]), rates)
        print("  SMS -> phone (webhooks -> bridge -> pjsua2)", flush=True)
        in_steps = await sc.stepped(
            lambda r: sc.sms_to_phone_step(bridge, uas, r, durability[0]), rates)
        rss = memory_kib(bridge.pid)["VmHWM"] / 1024
        return Run(durability, startup, idle, out_steps, in_steps, rss)
    finally:
        await asyncio.to_thread(bridge.stop)


async def measure_peer(root: Path, carrier: Carrier, uas: Uas, rates: tuple[int, ...],
                       shm_mib: int) -> PeerRun:
    out = PhoneToSmsPeer(root / "peer-out", carrier.url, shm_mib=shm_mib)
    try:
        await asyncio.to_thread(out.start)
        print(f"  phone -> SMS (sipp -> Kamailio http_client, {out.children} children -> "
              "carrier)", flush=True)
        out_steps = await sc.stepped(lambda r: sc.phone_to_sms_step(out, carrier, r, "k"),
                                     rates)
        out_rss, (_, out_shm) = out.peak_rss_mib, out.shm_mib_used()
    finally:
        await asyncio.to_thread(out.stop)
    inn = SmsToPhonePeer(root / "peer-in", uas.port, shm_mib=shm_mib)
    try:
        await asyncio.to_thread(inn.start)
        print(f"  SMS -> phone (webhooks -> Kamailio xhttp, {inn.children} children, "
              f"{shm_mib} MiB shared memory -> pjsua2)", flush=True)
        in_steps = await sc.stepped(lambda r: sc.sms_to_phone_step(inn, uas, r, "k"), rates)
        in_rss, (_, in_shm) = inn.peak_rss_mib, inn.shm_mib_used()
    finally:
        await asyncio.to_thread(inn.stop)
    print(f"  Kamailio shared memory most used: {out_shm:.0f} MiB (phone -> SMS), "
          f"{in_shm:.0f} MiB (SMS -> phone) of {shm_mib} MiB", flush=True)
    return PeerRun(shm_mib, out_steps, in_steps, out_rss, in_rss, out_shm, in_shm)


# --- report -----------------------------------------------------------------------------------


def _ms(a: float, b: float) -> str:
    return "-" if math.isnan(a) else f"{a:.1f} / {b:.1f}"


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.0f}%"


def _x(a: float, b: float) -> str:
    """a as a multiple of b."""
    if math.isnan(a) or math.isnan(b) or b <= 0:
        return "-"
    return f"{a / b:.2f}x"


def _near(steps: Sequence[sc.Step], rate: int = LATENCY_RATE) -> sc.Step | None:
    """The step at ``rate``, else the nearest measured one (sustained ones first)."""
    pool = [s for s in steps if s.sustained] or list(steps)
    return min(pool, key=lambda s: abs(s.offered - rate), default=None)


def _rate(steps: Sequence[sc.Step]) -> tuple[float, str]:
    """Highest sustained rate, as a number and as printed ("≥" when never overloaded)."""
    best = sc.best(list(steps))
    if best is None:
        return math.nan, f"< {steps[0].offered}" if steps else "-"
    top = "≥ " if steps and steps[-1].sustained else ""
    return float(best.offered), f"{top}{best.offered:,}"


def _peak(steps: Sequence[sc.Step]) -> tuple[float, str]:
    value = max((s.throughput for s in steps), default=math.nan)
    never = bool(steps) and steps[-1].sustained  # the top step was sustained: not overloaded
    return value, ("-" if math.isnan(value) else
                   f"{value:,.0f}" + (" (never overloaded)" if never else ""))


async def memory(root: Path, carrier: Carrier, rate: int, seconds: float) -> list[sc.MemoryRun]:
    """Peak RSS with phones texting at ``rate`` for ``seconds``, over UDP and over TCP, each
    with a bridge of its own (so each peak is that transport's alone)."""
    runs = []
    uas = Uas()
    try:
        for transport in ("udp", "tcp"):
            bridge = Bridge(root / f"memory-{transport}", uas.port, carrier.url, "full")
            try:
                await asyncio.to_thread(bridge.start)
                run = await sc.memory_run(bridge, carrier, transport, rate, seconds)
            finally:
                await asyncio.to_thread(bridge.stop)
            print(f"  {transport}: {run.delivered:,}/{run.sent:,} delivered, "
                  f"{run.throughput:,.0f}/s, {run.cpu_ms_per_text:.3f} ms CPU a text, RSS "
                  f"{run.start_rss_mib:.0f} -> peak {run.peak_rss_mib:.0f} MiB", flush=True)
            runs.append(run)
    finally:
        uas.close()
    return runs


def report(runs: list[Run], peer: PeerRun | None, ceil: sc.Ceilings, backlog: sc.Backlog | None,
           memory_runs: Sequence[sc.MemoryRun] = ()) -> str:
    """One column each for the raw ceilings, the peer and each bridge run, and after each
    bridge run its ratios to the peer and to the raw ceilings."""
    rows: list[tuple[str, str, str, list[tuple[str, str, str]]]] = []
    nan = math.nan

    def add(label: str, raw: tuple[float, str], peer_cell: tuple[float, str],
            bridge_cells: list[tuple[float, str]], ratio: bool = True,
            against: Sequence[tuple[float, str]] = ()) -> None:
        """``against``: per bridge cell, the peer value to divide by and a note, when it is
        not the peer column's own (a step at the bridge's rate rather than at 1,000/s)."""
        cells = []
        for i, (v, text) in enumerate(bridge_cells):
            base, note = against[i] if against else (peer_cell[0], "")
            cells.append((text, (_x(v, base) + note) if ratio else "",
                          _x(v, raw[0]) if ratio else ""))
        rows.append((label, raw[1], peer_cell[1], cells))

    none = (nan, "-")
    for name, hop_cost, raw_rate, key in (
            ("Phone → SMS", ceil.phone_to_sms_ms, min(ceil.sip_per_s, ceil.http_per_s), "out"),
            ("SMS → phone", ceil.sms_to_phone_ms, min(ceil.sip_per_s, ceil.http_per_s), "in")):
        peer_steps = getattr(peer, f"{key}_steps") if peer else []
        bridge_steps = [getattr(r, f"{key}_steps") for r in runs]
        raw = (raw_rate, f"{raw_rate:,.0f}")
        add(f"{name}: highest sustained rate, 0 loss (msg/s)", raw,
            _rate(peer_steps) if peer else none, [_rate(s) for s in bridge_steps])
        add("  throughput when overloaded (msg/s)", raw,
            _peak(peer_steps) if peer else none, [_peak(s) for s in bridge_steps])
        near_peer = _near(peer_steps)
        near_bridge = [_near(s) for s in bridge_steps]

        def against(value: Callable[[sc.Step | None], tuple[float, str]],
                    near_bridge: list[sc.Step | None] = near_bridge,
                    peer_steps: list[sc.Step] = peer_steps) -> list[tuple[float, str]]:
            """The peer at the same offered rate as each bridge figure, so a ratio never
            compares two different loads."""
            out = []
            for b in near_bridge:
                same = next((s for s in peer_steps if b and s.offered == b.offered), None)
                note = ("" if b is None or b.offered == LATENCY_RATE
                        else f" (both at {b.offered:,}/s)")
                out.append((value(same)[0], note))
            return out

        def at(step: sc.Step | None, value: str) -> str:
            if step is None:
                return "-"
            return value + ("" if step.offered == LATENCY_RATE else f" (at {step.offered:,}/s)")

        def lat(step: sc.Step | None, which: str) -> tuple[float, str]:
            if step is None:
                return none
            p50, p99 = getattr(step, f"{which}p50_ms"), getattr(step, f"{which}p99_ms")
            return p99, at(step, _ms(p50, p99))

        what = ("SIP receipt → carrier request" if key == "out"
                else "webhook → SIP delivery")
        add(f"  latency {what} at {LATENCY_RATE:,}/s, p50 / p99 (ms; ratio of p99)", none,
            lat(near_peer, ""), [lat(s, "") for s in near_bridge],
            against=against(lambda st: lat(st, "")))
        if key == "in":
            add(f"  webhook response time at {LATENCY_RATE:,}/s, p50 / p99 (ms; ratio of p99)",
                none, lat(near_peer, "resp_"), [lat(s, "resp_") for s in near_bridge],
                against=against(lambda st: lat(st, "resp_")))

        def cpu(step: sc.Step | None) -> tuple[float, str]:
            if step is None:
                return none
            ms = step.cpu_ms_per_text
            return ms, at(step, f"{ms:.3f} ({_pct(step.cpu)} of a core)")

        add(f"  CPU per text at {LATENCY_RATE:,}/s (ms of CPU time; CPU % of one core)",
            (hop_cost, f"{hop_cost:.3f} (one MESSAGE + one POST)"), cpu(near_peer),
            [cpu(s) for s in near_bridge], against=against(cpu))

        def per_core(step: sc.Step | None) -> tuple[float, str]:
            if step is None or not step.cpu_ms_per_text > 0:
                return none
            n = 1000 / step.cpu_ms_per_text
            return n, f"{n:,.0f}"

        add("  texts per second per core at that CPU cost (sizing)",
            (1000 / hop_cost, f"{1000 / hop_cost:,.0f}") if hop_cost > 0 else none,
            per_core(near_peer), [per_core(s) for s in near_bridge],
            against=against(per_core))

    peer_rss = (peer.out_rss_mib + peer.in_rss_mib, f"{peer.out_rss_mib + peer.in_rss_mib:.0f}"
                f" ({peer.out_rss_mib:.0f} + {peer.in_rss_mib:.0f})") if peer else none
    add("Peak memory during the stepped runs (MiB; the peer: both Kamailios' PSS)", none,
        peer_rss, [(r.peak_rss_mib, f"{r.peak_rss_mib:.0f}") for r in runs])
    blank = [(nan, "") for _ in runs]
    if peer:
        add(f"Peer: Kamailio shared memory most used, of {peer.shm_mib:,} MiB (MiB)", none,
            (nan, f"{peer.out_shm_used_mib:.0f} (phone → SMS), {peer.in_shm_used_mib:.0f} "
                  "(SMS → phone)"), blank, ratio=False)
    add("Start-up to ready, empty database (s)", none, none,
        [(r.startup_seconds, f"{r.startup_seconds:.2f}") for r in runs], ratio=False)
    add("Idle CPU over 10 s (% of one core)", none, none,
        [(r.idle_cpu, _pct(r.idle_cpu)) for r in runs], ratio=False)

    def first(text: str) -> list[tuple[float, str]]:
        return [(nan, text), *blank[1:]]

    if backlog is not None:
        add(f"Backlog: {backlog.messages:,} queued texts drained to the phone (msg/s)", none,
            none, first(f"{backlog.drain_per_s:,.0f} ({backlog.drained:,} delivered)"),
            ratio=False)
        add("  start-up to ready with the backlog (s)", none, none,
            first(f"{backlog.startup_seconds:.2f}"), ratio=False)
        add("  peak RSS while draining (MiB)", none, none,
            first(f"{backlog.peak_rss_mib:.0f}"), ratio=False)
    for m in memory_runs:
        add(f"Phones texting at {m.rate:,}/s for {m.seconds:.0f} s over {m.transport.upper()}: "
            "peak RSS (MiB)", none, none,
            first(f"{m.peak_rss_mib:.0f} (from {m.start_rss_mib:.0f}; "
                  f"{m.delivered:,}/{m.sent:,} delivered)"), ratio=False)
        add(f"  throughput over {m.transport.upper()} (msg/s; CPU ms per text)", none, none,
            first(f"{m.throughput:,.0f} ({m.cpu_ms_per_text:.3f})"), ratio=False)
    add("Ceiling: pjsua2 → pjsua2 MESSAGE (msg/s; CPU ms per MESSAGE sent / received)",
        (nan, f"{ceil.sip_per_s:,.0f} ({ceil.sip_send_ms:.3f} / {ceil.sip_recv_ms:.3f})"),
        none, blank, ratio=False)
    add("Ceiling: aiohttp client → aiohttp server POST (req/s; CPU ms per POST sent / "
        "received)", (nan, f"{ceil.http_per_s:,.0f} ({ceil.http_client_ms:.3f} / "
                           f"{ceil.http_server_ms:.3f})"), none, blank, ratio=False)

    head = ["measure", "raw ceilings", "DIY Kamailio peer"]
    for r in runs:
        head += [f"bridge, durability \"{r.durability}\"", "÷ peer", "÷ raw"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, raw_text, peer_text, cells in rows:
        values = [label, raw_text, peer_text]
        for cell in cells:
            values += list(cell)
        lines.append("| " + " | ".join(values) + " |")
    lines += ["", "Raw ceilings: the slower of the two hops (pjsua2 MESSAGE, aiohttp POST) for "
              "rates; for CPU, one MESSAGE and one POST at their raw cost. Latency and memory "
              "have no raw counterpart.", "",
              "Steps (offered msg/s: delivered/sent, throughput, p50/p99 ms, CPU % of one core, "
              "CPU ms per text):", ""]
    named = ([("DIY Kamailio peer", peer.out_steps, peer.in_steps)] if peer else [])
    named += [(f"bridge {r.durability}", r.out_steps, r.in_steps) for r in runs]
    for who, out_steps, in_steps in named:
        for name, steps in (("phone → SMS", out_steps), ("SMS → phone", in_steps)):
            cells = [f"{s.offered}: {s.delivered}/{s.sent}, {s.throughput:,.0f}/s, "
                     f"{_ms(s.p50_ms, s.p99_ms)}, {_pct(s.cpu)}, {s.cpu_ms_per_text:.3f}"
                     + ("" if s.sustained else f" ({s.note})") for s in steps]
            lines.append(f"- {who}, {name}: " + "; ".join(cells))
    return "\n".join(lines)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, Linux "
            f"{platform.release()}, Python {platform.python_version()}")


async def main_async(args: argparse.Namespace) -> int:
    rates = RATES[:3] if args.quick else RATES
    backlog_count = 10_000 if args.quick else sc.BACKLOG
    busy = machine_busy()
    load = os.getloadavg()
    print(f"benchmark on {machine()}; machine {busy:.0f}% busy before the start (load "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f})", flush=True)
    if busy > 10:
        print("  warning: something else is using the CPU; the figures will be low", flush=True)
    root = Path(tempfile.mkdtemp(prefix="sip-sms-bench-"))
    carrier = Carrier()
    uas = Uas()  # the phone: the same one for the peer and the bridge
    started = time.monotonic()
    peer = None
    try:
        print("raw ceilings", flush=True)
        ceil = await sc.ceilings(carrier)
        print(f"  pjsua2 -> pjsua2 MESSAGE {ceil.sip_per_s:,.0f}/s; aiohttp POST "
              f"{ceil.http_per_s:,.0f}/s", flush=True)
        if not args.no_peer:
            print("DIY Kamailio peer", flush=True)
            peer = await measure_peer(root, carrier, uas, rates, args.peer_shm)
        runs = []
        for i, durability in enumerate(args.durability):
            idle = 0 if args.quick or i else 10.0
            runs.append(await measure(root, carrier, uas, durability, rates, idle))
        backlog = None
        if not args.no_backlog:
            print(f"backlog: {backlog_count:,} queued texts ({args.durability[0]})", flush=True)
            backlog = await sc.backlog(root / "backlog", carrier, args.durability[0],
                                       backlog_count)
            print(f"  prefill {backlog.prefill_seconds:.1f} s; drained {backlog.drained:,} "
                  f"at {backlog.drain_per_s:,.0f}/s", flush=True)
        memory_runs: list[sc.MemoryRun] = []
        if not args.no_memory:
            rate, seconds = (500, 10.0) if args.quick else (MEMORY_RATE, MEMORY_SECONDS)
            print(f"memory: phones texting at {rate}/s for {seconds:.0f} s, UDP then TCP",
                  flush=True)
            memory_runs = await memory(root, carrier, rate, seconds)
    finally:
        uas.close()
        carrier.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    load = os.getloadavg()
    print(f"\nfinished in {time.monotonic() - started:.0f} s on {machine()}; machine "
          f"{busy:.0f}% busy before the start, {machine_busy():.0f}% after the end (load "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f})\n")
    print(report(runs, peer, ceil, backlog, memory_runs))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": machine(),
            "ceilings": dataclasses.asdict(ceil),
            "peer": dataclasses.asdict(peer) if peer else None,
            "runs": [dataclasses.asdict(r) for r in runs],
            "backlog": dataclasses.asdict(backlog) if backlog else None,
            "memory": [dataclasses.asdict(m) for m in memory_runs],
        }, indent=2))
    return 0


def from_json(path: str) -> str:
    """The report again from a run's --json file, without measuring anything."""
    d = json.loads(Path(path).read_text())

    def steps(rows: list[dict[str, float]]) -> list[sc.Step]:
        return [sc.Step(**row) for row in rows]  # type: ignore[arg-type]

    runs = [Run(**{**r, "out_steps": steps(r["out_steps"]), "in_steps": steps(r["in_steps"])})
            for r in d["runs"]]
    p = d.get("peer")
    peer = (PeerRun(**{**p, "out_steps": steps(p["out_steps"]),
                       "in_steps": steps(p["in_steps"])}) if p else None)
    backlog = sc.Backlog(**d["backlog"]) if d.get("backlog") else None
    return f"measured on {d['machine']}\n\n" + report(
        runs, peer, sc.Ceilings(**d["ceilings"]), backlog,
        [sc.MemoryRun(**m) for m in d.get("memory", [])])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="three steps, a 10,000-text backlog, short memory runs, "
                             "no idle measurement")
    parser.add_argument("--durability", nargs="+", choices=["full", "normal"],
                        default=["full"])
    parser.add_argument("--no-peer", action="store_true",
                        help="skip the do-it-yourself Kamailio peer")
    parser.add_argument("--peer-shm", type=int, default=SHM_MIB, metavar="MIB",
                        help=f"the peer's Kamailio shared memory (default {SHM_MIB})")
    parser.add_argument("--no-backlog", action="store_true")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the steady-rate memory runs over UDP and TCP")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--from-json", metavar="FILE",
                        help="print the report of an earlier run's --json file and exit")
    args = parser.parse_args()
    if args.from_json:
        print(from_json(args.from_json))
        return 0
    uvloop.install()  # as the bridge runs
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
