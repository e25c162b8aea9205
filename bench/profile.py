"""Profile the bridge under load with py-spy (``pip install py-spy``; not needed by make bench).

Starts the same peers as the benchmark, attaches ``py-spy record`` to the bridge process for
one fixed-rate step each way, and prints the hottest functions by own time and by inclusive
time, per thread. Raw collapsed stacks (flamegraph input) are kept in --out.

Profile at the saturation rate (the first step ``make bench`` did not sustain) to see where a
cut pays: ``--out-rate`` for phone -> SMS, ``--in-rate`` for SMS -> phone (default ``--rate``).

Usage: python -m bench.profile [--rate 400] [--out-rate R] [--in-rate R] [--durability full]
       [--gil] [--out /tmp/bench-profile]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench import scenarios as sc
from bench.procs import Bridge, Carrier, Uas

# Frames every sample of a thread passes through: they say nothing about where to cut.
SCAFFOLD = ("threading.py", "<frozen runpy>", "asyncio/runners.py", "bridge/__main__.py",
            "bridge/cli.py")


def summarize(raw: Path, top: int = 15) -> str:
    """Own and inclusive sample counts per function, and own time per source file, from
    py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    files: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        thread, *frames = stack.split(";")
        frames = [_function(f) for f in frames]
        total += n
        threads[thread] += n
        if frames:
            own[frames[-1]] += n
            files[_file(frames[-1])] += n
        for frame in set(frames):
            if not any(s in frame for s in SCAFFOLD):
                inclusive[frame] += n
    out = [f"{total} samples; by thread: " + ", ".join(
        f"{t} {n / total:.0%}" for t, n in threads.most_common(6))]
    out.append(f"top {top} by own time:")
    out += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(top)]
    out.append(f"top {top} by inclusive time (thread and start-up frames left out):")
    out += [f"  {n / total:6.1%}  {f}" for f, n in inclusive.most_common(top)]
    out.append(f"top {top} source files by own time:")
    out += [f"  {n / total:6.1%}  {f}" for f, n in files.most_common(top)]
    return "\n".join(out)


def _file(function: str) -> str:
    """'name (path/file.py)' -> 'path/file.py'."""
    return function.rpartition(" (")[2].rstrip(")") or function


def _function(frame: str) -> str:
    """'name (path/file.py:123)' -> 'name (path/file.py)': count a function, not a line."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


async def profiled(bridge: Bridge, out: Path, name: str, seconds: int, step,  # type: ignore[no-untyped-def]
                   gil: bool) -> str:
    raw = out / f"{name}.txt"
    spy = subprocess.Popen(
        ["py-spy", "record", "--pid", str(bridge.pid), "--format", "raw", "--threads",
         "--rate", "250", "--duration", str(seconds), "--output", str(raw),
         *(["--gil"] if gil else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)  # let py-spy attach
    result = await step
    try:
        spy.wait(seconds + 30)
    except subprocess.TimeoutExpired:
        spy.terminate()
        spy.wait()
    print(f"{name}: delivered {result.delivered}/{result.sent}, throughput "
          f"{result.throughput:,.0f}/s, p50 {result.p50_ms:.1f} ms, CPU {result.cpu:.0f}%")
    if not raw.exists():
        return f"{name}: py-spy wrote nothing: {spy.stderr.read() if spy.stderr else ''}"
    return f"== {name} ==\n" + summarize(raw)


async def main_async(args: argparse.Namespace) -> None:
    if shutil.which("py-spy") is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="sip-sms-profile-"))
    carrier, uas = Carrier(), Uas()
    bridge = Bridge(root / "bridge", uas.port, carrier.url, args.durability)
    sc.STEP_SECONDS = args.seconds
    try:
        await asyncio.to_thread(bridge.start)
        reports = [
            await profiled(bridge, out, "phone-to-sms", args.seconds + 2,
                           sc.phone_to_sms_step(bridge, carrier, args.out_rate or args.rate, "p"),
                           args.gil),
            await profiled(bridge, out, "sms-to-phone", args.seconds + 2,
                           sc.sms_to_phone_step(bridge, uas, args.in_rate or args.rate, "p"),
                           args.gil),
        ]
    finally:
        await asyncio.to_thread(bridge.stop)
        uas.close()
        carrier.close()
        shutil.rmtree(root, ignore_errors=True)
    print("\n\n".join(reports))
    print(f"\nraw stacks (for flamegraph.pl or speedscope) in {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description="profile the bridge under load with py-spy")
    parser.add_argument("--rate", type=int, default=400)
    parser.add_argument("--out-rate", type=int, help="phone -> SMS rate (default --rate)")
    parser.add_argument("--in-rate", type=int, help="SMS -> phone rate (default --rate)")
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--durability", choices=["full", "normal"], default="full")
    parser.add_argument("--gil", action="store_true",
                        help="sample only the thread holding the GIL (where Python CPU goes)")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "bench-profile"))
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
