"""Raw-SIP fuzz against the running bridge in trunk mode, over UDP and over TCP.

Hypothesis builds MESSAGEs with random and invalid bytes in each header (From display name
and user, To, Call-ID, CSeq, Content-Type and its charset), in the body (invalid UTF-8, NUL,
empty, whitespace only, CPIM and multipart shapes), with a Content-Length too short or too
long, and bodies around 1,300, 4,000 and 16,384 bytes (``sip.max_body_bytes``). Each is sent
once with a plain socket (no retransmission) and its answer read within a bounded wait.

The oracle, after a settle wait: the daemon still answers /healthz; every MESSAGE answered 2xx
that is not a notification (see ``NOTIFICATION_TYPES``) left exactly one ``direction = 'out'``
row in the bridge's SQLite database (any state: queued to rejected, a rejection being
explained to the sender by a notice); nothing the carrier got is blank or holds NUL; a clean
plain-text MESSAGE that was not rejected is stored intact; every clean MESSAGE (valid headers,
true Content-Length, body within ``max_body_bytes``) is answered 2xx; no traceback in the log.

Matching rows to MESSAGEs: most MESSAGEs carry a unique, valid From user (extension
``7NNNNN``; all configured, allowed to send) while the other headers (and the From display
name) are fuzzed: each of those must have exactly one row with that extension. MESSAGEs whose
From user itself is fuzzed (or empty, or missing) cannot be told apart, so they are counted
together: the rows whose extension is none of the unique ones must number at least the
2xx-answered fuzzed-From non-notification MESSAGEs, and at most that plus the fuzzed-From
MESSAGEs whose answer did not come in time or that were notifications (either may have a
row). A MESSAGE refused with a SIP status (3xx-6xx) must have no row. Together: no
acknowledged text without its row, none with two, no row for a refused MESSAGE.
"""

from __future__ import annotations

import asyncio
import re
import urllib.request
import uuid
import zlib
from dataclasses import dataclass, field

import pytest
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from tests.carrier_server import CarrierServer
from tests.peers import configs
from tests.peers.harness import BridgeProcess, free_port
from tests.peers.rawsip import RawMessage, send_raw, settled_rows
from tests.peers.twilio import DID, twilio_ok

MAX_BODY_BYTES = 16 * 1024  # the default sip.max_body_bytes
EXTENSIONS = 200  # 7NNNNN extensions configured; more than the examples one run makes
FIRST_EXTENSION = 700000
# Consumed quietly by design (no SMS, no notice, so no row): delivery/display notifications
# and is-composing, bare or inside CPIM.
NOTIFICATION_TYPES = ("message/imdn+xml", "application/im-iscomposing+xml")

# A Content-Type in SIP syntax (RFC 3261 25.1: type/subtype, token or quoted parameters); pjsip
# drops a MESSAGE with anything else in it before the bridge sees it.
WELL_FORMED_TYPE = re.compile(
    rb'[a-z]+/[a-z0-9.+-]+(;[a-z]+=([A-Za-z0-9._-]+|"[A-Za-z0-9._-]*"))*')

NOISE = st.binary(min_size=0, max_size=40)
# bytes that stay inside one header: no CR, LF or NUL
HEADER_NOISE = NOISE.map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")
                         .replace(b"\x00", b""))
# a display name pjsip parses (RFC 3261 qdtext; bytes >= 0x80 are taken as they come)
QUOTED_NOISE = NOISE.map(lambda b: bytes(c for c in b if c >= 0x20 and c not in b'"\\\x7f'))
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)


@dataclass(frozen=True)
class Case:
    """One fuzzed MESSAGE before its unique From user is filled in. ``from_mode``: clean,
    display (fuzzed display name, user kept), user (fuzzed user), header (random bytes)."""

    from_mode: str = "clean"
    from_noise: bytes = b""
    to_header: bytes = b"<sip:+15557654321@127.0.0.1>"
    call_id: bytes | None = None  # None: a fresh valid one
    cseq: bytes = b"1 MESSAGE"
    content_type: bytes | None = b"text/plain;charset=UTF-8"
    body: bytes = b"hello"
    length_delta: int = 0
    notification: bool = False  # a notification type (or CPIM around one)
    clean: bool = False  # every header valid, Content-Length true

    def message(self, user: str) -> RawMessage:
        tag = uuid.uuid4().hex[:8]
        if self.from_mode == "display":
            from_header = b'"' + self.from_noise + b'" <sip:' + user.encode() + b"@127.0.0.1>"
        elif self.from_mode == "user":
            from_header = b"<sip:" + self.from_noise + b"@127.0.0.1>"
        elif self.from_mode == "header":
            from_header = self.from_noise
        else:
            from_header = b"<sip:" + user.encode() + b"@127.0.0.1>"
        if self.from_mode != "header":
            from_header += b";tag=" + tag.encode()
        call_id = self.call_id if self.call_id is not None else uuid.uuid4().hex.encode()
        return RawMessage(from_header, self.to_header, call_id, self.cseq, self.content_type,
                          self.body, self.length_delta)

    @property
    def matchable(self) -> bool:
        return self.from_mode in ("clean", "display")


def cpim(inner_type: str, inner: bytes) -> bytes:
    return (b"From: <sip:anonymous@anonymous.invalid>\r\nTo: <sip:anonymous@anonymous.invalid>"
            b"\r\nDateTime: 2026-01-01T00:00:00Z\r\nNS: imdn <urn:ietf:params:imdn>\r\n"
            b"imdn.Message-ID: abc\r\n\r\nContent-Type: " + inner_type.encode()
            + b"\r\nContent-Length: " + str(len(inner)).encode() + b"\r\n\r\n" + inner)


def multipart(parts: list[tuple[str, bytes]], boundary: str = "b0undary") -> bytes:
    out = b""
    for ctype, data in parts:
        out += (f"--{boundary}\r\nContent-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n")
    return out + f"--{boundary}--\r\n".encode()


IMDN = (b'<?xml version="1.0" encoding="UTF-8"?><imdn xmlns="urn:ietf:params:xml:ns:imdn">'
        b"<message-id>abc</message-id><datetime>2026-01-01T00:00:00Z</datetime>"
        b"<delivery-notification><status><delivered/></status></delivery-notification></imdn>")
ISCOMPOSING = (b'<?xml version="1.0" encoding="UTF-8"?><isComposing xmlns='
               b'"urn:ietf:params:xml:ns:im-iscomposing"><state>active</state></isComposing>')


def sized(size: int, unit: str = "é") -> bytes:
    """A valid UTF-8 text of exactly ``size`` bytes (``unit`` repeated, ASCII to fill up)."""
    encoded = unit.encode()
    body = encoded * (size // len(encoded))
    return body + b"x" * (size - len(body))


@st.composite
def bodies(draw) -> tuple[bytes | None, bytes, bool]:
    """(content type, body, is a notification). Some charset values are not even SIP
    syntax (not a token): see ``WELL_FORMED_TYPE``."""
    kind = draw(st.sampled_from(["text", "text", "binary", "nul", "blank", "sized", "cpim",
                                 "cpim-imdn", "imdn", "imdn-deflated", "iscomposing",
                                 "multipart", "odd-type"]))
    charset = draw(st.sampled_from([b"", b";charset=UTF-8", b";charset=utf-8",
                                    b";charset=iso-8859-1", b";charset=utf-16",
                                    b';charset="UTF-8"', b";charset=bogus", b";charset=\xff",
                                    b";charset="]))
    if kind == "text":
        return b"text/plain" + charset, draw(TEXT).encode(), False
    if kind == "binary":
        return b"text/plain" + charset, draw(st.binary(max_size=80)), False
    if kind == "nul":
        text = draw(TEXT).encode()
        cut = draw(st.integers(0, len(text)))
        return b"text/plain" + charset, text[:cut] + b"\x00" + text[cut:], False
    if kind == "blank":
        return b"text/plain" + charset, draw(st.sampled_from([b"", b" ", b"\r\n", b" \t\r\n "])), \
            False
    if kind == "sized":
        size = draw(st.sampled_from([1300, 3700, 4000, 5000, MAX_BODY_BYTES, MAX_BODY_BYTES + 1]))
        unit = draw(st.sampled_from(["x", "é", "你", "👋"]))
        return b"text/plain" + charset, sized(size, unit), False
    if kind == "cpim":
        return b"message/cpim", cpim("text/plain;charset=UTF-8", draw(TEXT).encode()), False
    if kind == "cpim-imdn":
        return b"message/cpim", cpim("message/imdn+xml", IMDN), True
    if kind == "imdn":
        return b"message/imdn+xml", IMDN, True
    if kind == "imdn-deflated":
        return b"message/imdn+xml", zlib.compress(IMDN), True
    if kind == "iscomposing":
        return b"application/im-iscomposing+xml", ISCOMPOSING, True
    if kind == "multipart":
        parts = [("text/plain;charset=UTF-8", draw(TEXT).encode())]
        if draw(st.booleans()):
            parts.append(("application/octet-stream", draw(st.binary(max_size=40))))
        return b"multipart/mixed;boundary=b0undary", multipart(parts), False
    # a content type made of noise (or none at all)
    ctype = draw(st.one_of(st.none(), HEADER_NOISE))
    return ctype, draw(st.binary(max_size=60)), False


@st.composite
def cases(draw) -> Case:
    """A body of any shape, and noise in up to two of the headers (more would make nearly
    every MESSAGE unparsable, and the interesting ones are those that get a 200)."""
    ctype, body, notification = draw(bodies())
    fuzz = draw(st.sets(st.sampled_from(["from", "to", "call-id", "cseq", "length"]),
                        max_size=2))
    from_mode, from_noise = "clean", b""
    if "from" in fuzz:
        from_mode = draw(st.sampled_from(["display", "display", "user", "header"]))
        from_noise = draw(QUOTED_NOISE if from_mode == "display" else HEADER_NOISE)
        if from_mode == "user" and from_noise.isdigit() and from_noise.startswith(b"7"):
            from_noise = b"u" + from_noise  # never pose as one of the unique extensions
    to_header = b"<sip:+15557654321@127.0.0.1>"
    if "to" in fuzz:
        to_header = draw(st.sampled_from([b"<sip:", b"", b"<sip:+1555@", b"sip:",
                                          b'"\xff" <sip:'])) + draw(HEADER_NOISE)
    call_id = None
    if "call-id" in fuzz:
        call_id = draw(st.one_of(st.just(b"a\xff@x"), HEADER_NOISE))
    cseq = b"1 MESSAGE"
    if "cseq" in fuzz:
        cseq = draw(st.sampled_from([b"4294967295 MESSAGE", b"1 INVITE", b"x MESSAGE", b"",
                                     b"1 MESSAGE \xff"]))
    length_delta = draw(st.sampled_from([-1, -7, 1, 25])) if "length" in fuzz else 0
    clean = (not fuzz or (fuzz == {"from"} and from_mode == "display")) and (
        WELL_FORMED_TYPE.fullmatch(ctype or b"") is not None and len(body) <= MAX_BODY_BYTES)
    return Case(from_mode, from_noise, to_header, call_id, cseq, ctype, body, length_delta,
                notification=notification, clean=clean)


# The shapes the issue names, always tried (hypothesis adds the random ones).
NAMED = [
    Case(call_id=b"a\xff@x", body=b"a text whose Call-ID is not UTF-8"),
    Case(body=sized(1300, "é"), clean=True),
    Case(body=sized(4000, "x"), clean=True),
    Case(body=sized(5000, "你"), clean=True),
    Case(body=sized(MAX_BODY_BYTES, "x"), clean=True),
    Case(body=sized(MAX_BODY_BYTES + 1, "x")),
    Case(body=b"cut me short please", length_delta=-6),
    Case(body=b"i claim more than i have", length_delta=25),
    Case(body=b""),
    Case(body=b" \t\r\n "),
    Case(body=b"nul\x00inside"),
    Case(body=b"caf\xe9 \xff\xfe"),
    Case(from_mode="display", from_noise=b"\xff\xfe caf\xe9", body=b"display name not UTF-8",
         clean=True),
    Case(content_type=b"text/plain;charset=\xff", body=b"odd charset"),
    Case(from_mode="user", from_noise=b"", body=b"From has an empty user"),
    Case(from_mode="header", from_noise=b"<sip:127.0.0.1>;tag=nouser", body=b"From has no user"),
    Case(content_type=b"message/cpim", body=cpim("text/plain;charset=UTF-8",
                                                 "in CPIM ✓".encode())),
    Case(content_type=b"message/cpim", body=cpim("message/imdn+xml", IMDN), notification=True),
    Case(content_type=b"message/imdn+xml", body=zlib.compress(IMDN), notification=True),
    Case(content_type=b"multipart/mixed;boundary=b0undary",
         body=multipart([("text/plain;charset=UTF-8", "multi ✓".encode())])),
]


@dataclass
class Outcome:
    case: Case
    user: str
    code: int | None


@dataclass
class Run:
    transport: str
    port: int
    outcomes: list[Outcome] = field(default_factory=list)

    def send(self, case: Case) -> None:
        index = len(self.outcomes)
        assert index < EXTENSIONS, "more MESSAGEs than configured extensions"
        user = str(FIRST_EXTENSION + index)
        # answers come within milliseconds; a clean MESSAGE may take longer on a loaded
        # machine, and its answer is asserted
        code = send_raw(self.transport, case.message(user), self.port,
                        timeout=2.0 if case.clean else 0.5)
        self.outcomes.append(Outcome(case, user, code))


def fuzz(run: Run) -> None:
    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate])  # no shrinking: nothing fails here
    @given(case=cases())
    def one(case: Case) -> None:
        run.send(case)

    for named in NAMED:
        one = example(case=named)(one)
    one()


def bridge_config(web_port: int, sip_port: int, carrier_url: str) -> str:
    return (configs.base(web_port, sip_port) + configs.trunk_account(free_port())
            + configs.twilio_provider(carrier_url) + configs.number(DID, "twilio", ["700000"])
            + "".join(configs.extension(str(FIRST_EXTENSION + i), [DID])
                      for i in range(EXTENSIONS)))


def healthz(bridge: BridgeProcess) -> int:
    with urllib.request.urlopen(f"{bridge.url}/healthz", timeout=5) as resp:
        return resp.status


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_every_acknowledged_message_is_stored_or_explained(tmp_path, peers, transport):
    async with CarrierServer() as twilio:
        twilio.responder = twilio_ok([0])
        web_port, sip_port = free_port(), free_port()
        bridge = BridgeProcess(tmp_path, bridge_config(web_port, sip_port, twilio.url),
                               env=configs.ENV)
        peers.append(bridge)
        await asyncio.to_thread(bridge.start, web_port)

        run = Run(transport, sip_port)
        await asyncio.to_thread(fuzz, run)

        acked = [o for o in run.outcomes if o.code is not None and 200 <= o.code < 300]
        counted = [o for o in acked if not o.case.notification]
        state_dir = tmp_path / "state"

        rows = await asyncio.to_thread(settled_rows, state_dir, "out", len(counted))
        print(f"sip fuzz over {transport}: sent {len(run.outcomes)}, answered 2xx {len(acked)} "
              f"({len(counted)} not notifications), rows {len(rows)}")

        assert await asyncio.to_thread(healthz, bridge) == 200
        assert bridge.proc is not None and bridge.proc.poll() is None

        by_extension: dict[str, list[dict]] = {}
        for row in rows:
            by_extension.setdefault(row["extension"], []).append(row)
        unique = {o.user for o in run.outcomes if o.case.matchable}
        problems = []
        for o in counted:
            if o.case.matchable and len(by_extension.get(o.user, [])) != 1:
                problems.append(f"{len(by_extension.get(o.user, []))} rows for {o.user} "
                                f"(answered {o.code}): {describe(o.case)}")
        for o in run.outcomes:  # refused by SIP status: the sender knows, nothing is stored
            if o.code is not None and o.code >= 300 and by_extension.get(o.user):
                problems.append(f"a row for {o.user}, answered {o.code}: {describe(o.case)}")
        # Fuzzed From users: counted together. Each 2xx non-notification needs its row; a
        # notification or an unanswered MESSAGE may have one too (the answer can be lost).
        unmatched = [r for r in rows if r["extension"] not in unique]
        fuzzed = [o for o in run.outcomes if not o.case.matchable]
        owed = sum(1 for o in fuzzed if o in counted)
        may = sum(1 for o in fuzzed if o.code is None or (o in acked and o not in counted))
        if not owed <= len(unmatched) <= owed + may:
            problems.append(f"{len(unmatched)} rows for {owed} acknowledged MESSAGEs with a "
                            f"fuzzed From user (and {may} that may have one)")
        for o in run.outcomes:  # the bridge must answer whatever is well formed
            if o.case.clean and o not in acked:
                problems.append(f"clean MESSAGE answered {o.code}: {describe(o.case)}")
        for o in counted:  # a clean plain text that was not refused is stored whole
            mine = by_extension.get(o.user, [])
            if (o.case.matchable and o.case.clean and o.case.body.strip() and len(mine) == 1
                    and o.case.content_type in (b"text/plain", b"text/plain;charset=UTF-8")
                    and b"\x00" not in o.case.body and mine[0]["state"] != "rejected"):
                sent = o.case.body.decode("utf-8", errors="surrogateescape").strip()
                if mine[0]["body"].strip() != sent:
                    problems.append(f"{o.user} stored altered: sent {len(sent)} characters, "
                                    f"stored {len(mine[0]['body'])} ({mine[0]['state']})")
        for req in twilio.requests:
            text = dict(req.form()).get("Body", "")
            if not text.strip() or "\x00" in text:
                problems.append(f"the carrier got a blank or NUL-carrying text: {text[:40]!r}")
        if "Traceback" in bridge.log_text():
            problems.append("a traceback in the bridge log")
        assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:20])


def describe(case: Case) -> str:
    def short(value: bytes | None) -> str:
        return "-" if value is None else repr(value[:40]) + (
            f"...({len(value)} bytes)" if len(value) > 40 else "")
    return (f"from={case.from_mode}:{short(case.from_noise)} to={short(case.to_header)} "
            f"call-id={short(case.call_id)} cseq={short(case.cseq)} "
            f"type={short(case.content_type)} body={short(case.body)} "
            f"length{case.length_delta:+d}")

