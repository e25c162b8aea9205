"""The benchmark (``make bench``): the bridge as a real process, real peers, loopback only.

- Phone -> SMS: sipp (trunk MESSAGEs) -> bridge -> a local server speaking Twilio's API.
- SMS -> phone: signed Twilio webhooks (aiohttp client) -> bridge -> a pjsua2 UAS.
  Both stepped up in offered rate until a step is not sustained (some loss, or throughput
  more than 5% below the offer).
- Backlog: 100,000 texts queued for a phone that was down, drained at start-up.
- Raw ceilings of the same peers in the same run, and the bridge as a ratio of them.
- Start-up-to-ready time and idle CPU.

Prints a Markdown table (pasteable into the README) and, with --json, writes every figure.
Usage: python -m bench.run [--quick] [--durability full normal] [--json FILE]
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
from collections.abc import Sequence
from pathlib import Path

import uvloop

from bench import scenarios as sc
from bench.procs import Bridge, Carrier, Uas, machine_busy, memory_kib

RATES = (250, 500, 750, 1000, 1500, 2000, 3000, 4000)
MEMORY_RATE, MEMORY_SECONDS = 1000, 60.0  # phones texting steadily, per transport


@dataclasses.dataclass
class Run:
    durability: str
    startup_seconds: float
    idle_cpu: float
    out_steps: list[sc.Step]
    in_steps: list[sc.Step]
    peak_rss_mib: float


async def measure(root: Path, carrier: Carrier, durability: str, rates: tuple[int, ...],
                  idle_seconds: float) -> Run:
    uas = Uas()
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
        uas.close()


# --- report -----------------------------------------------------------------------------------


def _ms(a: float, b: float) -> str:
    return "-" if math.isnan(a) else f"{a:.1f} / {b:.1f}"


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.0f}%"


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
            print(f"  {transport}: {run.delivered:,}/{run.sent:,} delivered, RSS "
                  f"{run.start_rss_mib:.0f} -> peak {run.peak_rss_mib:.0f} MiB", flush=True)
            runs.append(run)
    finally:
        uas.close()
    return runs


def report(runs: list[Run], ceil: sc.Ceilings, backlog: sc.Backlog | None,
           memory_runs: Sequence[sc.MemoryRun] = ()) -> str:
    cols = [r.durability for r in runs]
    rows: list[tuple[str, list[str]]] = []

    def add(label: str, values: list[str]) -> None:
        rows.append((label, values))

    outs = [sc.best(r.out_steps) for r in runs]
    ins = [sc.best(r.in_steps) for r in runs]

    def share(s: sc.Step | None) -> str:
        if s is None:
            return "-"
        return (f"{s.offered / ceil.http_per_s:.0%} / "
                f"{s.offered / ceil.sip_per_s:.0%}")

    def peak(steps: list[sc.Step]) -> str:
        return f"{max((s.throughput for s in steps), default=0):,.0f}"

    add("Phone → SMS: highest sustained rate, 0 loss (msg/s)",
        [str(s.offered) if s else "< 250" for s in outs])
    add("  share of the raw ceilings (HTTP POST / SIP MESSAGE)", [share(s) for s in outs])
    add("  throughput when overloaded (msg/s)", [peak(r.out_steps) for r in runs])
    add("  latency SIP receipt → carrier request, p50 / p99 (ms)",
        [_ms(s.p50_ms, s.p99_ms) if s else "-" for s in outs])
    add("  bridge CPU at that rate (% of one core)", [_pct(s.cpu) if s else "-" for s in outs])
    add("SMS → phone: highest sustained rate, 0 loss (msg/s)",
        [str(s.offered) if s else "< 250" for s in ins])
    add("  share of the raw ceilings (HTTP POST / SIP MESSAGE)", [share(s) for s in ins])
    add("  throughput when overloaded (msg/s)", [peak(r.in_steps) for r in runs])
    add("  webhook response time, p50 / p99 (ms)",
        [_ms(s.resp_p50_ms, s.resp_p99_ms) if s else "-" for s in ins])
    add("  webhook → SIP delivery, p50 / p99 (ms)",
        [_ms(s.p50_ms, s.p99_ms) if s else "-" for s in ins])
    add("  bridge CPU at that rate (% of one core)", [_pct(s.cpu) if s else "-" for s in ins])
    add("Peak RSS during the stepped runs (MiB)", [f"{r.peak_rss_mib:.0f}" for r in runs])
    add("Start-up to ready, empty database (s)", [f"{r.startup_seconds:.2f}" for r in runs])
    add("Idle CPU over 10 s (% of one core)", [_pct(r.idle_cpu) for r in runs])
    if backlog is not None:
        blank = [""] * (len(cols) - 1)
        add(f"Backlog: {backlog.messages:,} queued texts drained to the phone (msg/s)",
            [f"{backlog.drain_per_s:,.0f} ({backlog.drained:,} delivered)", *blank])
        add("  start-up to ready with the backlog (s)",
            [f"{backlog.startup_seconds:.2f}", *blank])
        add("  peak RSS while draining (MiB)", [f"{backlog.peak_rss_mib:.0f}", *blank])
    for m in memory_runs:
        blank = [""] * (len(cols) - 1)
        add(f"Phones texting at {m.rate:,}/s for {m.seconds:.0f} s over {m.transport.upper()}: "
            "peak RSS (MiB)", [f"{m.peak_rss_mib:.0f} (from {m.start_rss_mib:.0f}; "
                               f"{m.delivered:,}/{m.sent:,} delivered)", *blank])
    add("Ceiling: pjsua2 → pjsua2 MESSAGE (msg/s)", [f"{ceil.sip_per_s:,.0f}"] * len(cols))
    add("Ceiling: aiohttp client → aiohttp server POST (req/s)",
        [f"{ceil.http_per_s:,.0f}"] * len(cols))

    header = "| measure | " + " | ".join(f"durability = \"{c}\"" for c in cols) + " |"
    lines = [header, "|---|" + "---|" * len(cols)]
    lines += [f"| {label} | " + " | ".join(values) + " |" for label, values in rows]
    lines += ["", "Steps (offered msg/s: delivered/sent, throughput, p50/p99 ms, bridge CPU):", ""]
    for r in runs:
        for name, steps in (("phone → SMS", r.out_steps), ("SMS → phone", r.in_steps)):
            cells = [f"{s.offered}: {s.delivered}/{s.sent}, {s.throughput:,.0f}/s, "
                     f"{_ms(s.p50_ms, s.p99_ms)}, {_pct(s.cpu)}"
                     + ("" if s.sustained else f" ({s.note})") for s in steps]
            lines.append(f"- {r.durability}, {name}: " + "; ".join(cells))
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
    print(f"benchmark on {machine()}; machine {busy:.0f}% busy before the start", flush=True)
    if busy > 10:
        print("  warning: something else is using the CPU; the figures will be low", flush=True)
    root = Path(tempfile.mkdtemp(prefix="sip-sms-bench-"))
    carrier = Carrier()
    started = time.monotonic()
    try:
        print("raw ceilings", flush=True)
        ceil = await sc.ceilings(carrier)
        print(f"  pjsua2 -> pjsua2 MESSAGE {ceil.sip_per_s:,.0f}/s; aiohttp POST "
              f"{ceil.http_per_s:,.0f}/s", flush=True)
        runs = []
        for i, durability in enumerate(args.durability):
            idle = 0 if args.quick or i else 10.0
            runs.append(await measure(root, carrier, durability, rates, idle))
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
        carrier.close()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\nfinished in {time.monotonic() - started:.0f} s on {machine()}; machine "
          f"{busy:.0f}% busy before the start, {machine_busy():.0f}% after the end\n")
    print(report(runs, ceil, backlog, memory_runs))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": machine(),
            "ceilings": dataclasses.asdict(ceil),
            "runs": [dataclasses.asdict(r) for r in runs],
            "backlog": dataclasses.asdict(backlog) if backlog else None,
            "memory": [dataclasses.asdict(m) for m in memory_runs],
        }, indent=2))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="three steps, a 10,000-text backlog, no idle measurement")
    parser.add_argument("--durability", nargs="+", choices=["full", "normal"],
                        default=["full", "normal"])
    parser.add_argument("--no-backlog", action="store_true")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the steady-rate memory runs over UDP and TCP")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    uvloop.install()  # as the bridge runs
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
