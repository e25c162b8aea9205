"""Load generators and the numbers made from what they record."""

from __future__ import annotations

import asyncio
import math
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp
from twilio.request_validator import RequestValidator

from bench.procs import DID, REMOTE, TWILIO_BASIC, TWILIO_SID, TWILIO_TOKEN

FORM = "application/x-www-form-urlencoded"


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Webhook:
    seq: int
    body: bytes
    headers: dict[str, str]


def signed_webhooks(url: str, tag: str, count: int, first_seq: int = 0) -> list[Webhook]:
    """Inbound-SMS webhooks exactly as Twilio posts them, signed by Twilio's own SDK. Made
    before the timed window, so the load generator spends its time sending."""
    validator = RequestValidator(TWILIO_TOKEN)
    hooks = []
    for seq in range(first_seq, first_seq + count):
        sid = f"SM{zlib.crc32(tag.encode()):08x}{seq:024d}"
        params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": TWILIO_SID, "From": REMOTE,
                  "To": DID, "Body": f"bench {tag} {seq}", "NumMedia": "0",
                  "NumSegments": "1", "SmsStatus": "received", "ApiVersion": "2010-04-01"}
        hooks.append(Webhook(seq, urlencode(params).encode(), {
            "Content-Type": FORM,
            "X-Twilio-Signature": validator.compute_signature(url, params),
        }))
    return hooks


@dataclass(frozen=True, slots=True)
class Sent:
    seq: int
    status: int
    started: float  # wall clock
    seconds: float  # request start to response end


@dataclass
class Offered:
    sent: list[Sent]
    rate: float            # the rate actually offered
    waited: float = 0.0    # seconds spent waiting for a free connection (all were busy)


async def offer(url: str, hooks: Sequence[Webhook], rate: float, concurrency: int) -> Offered:
    """Open-loop: request i starts at t0 + i/rate, with at most ``concurrency`` in flight
    (a bridge slower to answer than that makes the offer fall short: ``waited`` says so)."""
    results: list[Sent] = []
    slots = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(hook: Webhook) -> None:
            try:
                started, t = time.time(), time.perf_counter()
                async with session.post(url, data=hook.body, headers=hook.headers) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            finally:
                slots.release()
            results.append(Sent(hook.seq, status, started, time.perf_counter() - t))

        tasks = []
        waited = 0.0
        t0 = loop.time()
        for i, hook in enumerate(hooks):
            delay = t0 + i / rate - loop.time()
            if delay > 0.001:
                await asyncio.sleep(delay)
            if slots.locked():
                t = loop.time()
                await slots.acquire()
                waited += loop.time() - t
            else:
                await slots.acquire()
            tasks.append(asyncio.create_task(one(hook)))
        offered_for = loop.time() - t0
        await asyncio.gather(*tasks)
    achieved = len(hooks) / offered_for if offered_for > 0 else math.inf
    return Offered(results, achieved, waited)


async def closed_loop_posts(url: str, count: int, concurrency: int) -> float:
    """The raw HTTP ceiling: ``count`` Twilio-shaped form POSTs, ``concurrency`` at a time,
    as fast as the server answers. Returns requests per second (successful ones)."""
    body = urlencode({"To": REMOTE, "From": DID, "Body": "ceiling"}).encode()
    headers = {"Content-Type": FORM, "Authorization": TWILIO_BASIC}
    connector = aiohttp.TCPConnector(limit=concurrency)
    ok = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        remaining = iter(range(count))

        async def worker() -> None:
            nonlocal ok
            for _ in remaining:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    ok += resp.status < 300

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return ok / (time.perf_counter() - t)
