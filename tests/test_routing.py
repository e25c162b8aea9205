"""Routing, permissions and tenants: table-driven over one multi-tenant config."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.optout import Keyword, keyword_of
from bridge.routing import SOURCE_ANSWERS_KEPT, InboundRoute, OutboundRoute, Refusal, Router
from bridge.settings import ConfigError, Settings, load_settings

CONFIG = """
[[accounts]]
name = "acme"
mode = "register"
domain = "acme.pbx"
registrar = "sip:10.0.0.1:5060"
username = "sms"
password = "x"

[[accounts]]
name = "hosted-a"
domain = "a.hosted.example"
allowed_sources = ["192.0.2.0/28"]
match_domains = ["a.hosted.example"]
allowed_countries = ["US", "CA", "GB"]

[[accounts]]
name = "hosted-b"
domain = "b.hosted.example"
allowed_sources = ["192.0.2.0/28"]
match_domains = ["b.hosted.example"]

[[accounts]]
name = "uk"
domain = "uk.pbx"
allowed_sources = ["198.51.100.7"]
default_region = "GB"

[[providers]]
name = "tw"
type = "twilio"
account_sid = "AC00000000000000000000000000000000"
auth_token = "t"

[[providers]]
name = "sb"
type = "sandbox"

[[numbers]]
number = "+15551230001"
provider = "tw"
account = "acme"
deliver_to = ["1001", "1002"]
fallback = "1000"

[[numbers]]
numbers = ["+15551230002", "(555) 123-0003"]
provider = "tw"
account = "acme"
deliver_to = ["1003"]

[[numbers]]
range = { first = "+15552000000", last = "+15552000099" }
provider = "sb"
account = "hosted-a"
deliver_to = ["200"]

[[numbers]]
number = "+15552000050"
provider = "sb"
account = "hosted-a"
deliver_to = ["250"]

[[numbers]]
prefix = "+1555300"
provider = "sb"
account = "hosted-b"
deliver_to = ["300"]

[[numbers]]
number = "+442079460018"
provider = "tw"
account = "uk"
deliver_to = ["10"]

[[extensions]]
extension = "1001"
account = "acme"
send = "allow"
caller_ids = ["+15551230001", "+15551230002", "+15551230003"]

[[extensions]]
extension = "1002"
account = "acme"
send = "allow_sender_id"
caller_ids = ["+15551230001"]
sender_ids = ["ACME", "Acme Alerts"]

[[extensions]]
extension = "1003"
account = "acme"

[[extensions]]
extension = "200"
account = "hosted-a"
send = "allow"
caller_ids = ["+15552000042"]

[[extensions]]
extension = "300"
account = "hosted-b"
send = "allow"
caller_ids = ["+15553001234"]

[[extensions]]
extension = "10"
account = "uk"
send = "allow"
caller_ids = ["+442079460018"]
"""


@pytest.fixture(scope="module")
def router(tmp_path_factory) -> Router:
    path = tmp_path_factory.mktemp("cfg") / "bridge.toml"
    path.write_text(CONFIG)
    settings = load_settings(path)
    return Router(settings, resolver=lambda host: ["10.0.0.1"] if host == "10.0.0.1" else [])


@pytest.mark.parametrize(
    ("receiving", "source", "domain", "account"),
    [
        ("acme", "10.0.0.1:5060", "acme.pbx", "acme"),  # from its registrar
        ("acme", "10.0.0.9:5060", "acme.pbx", None),  # not its registrar
        ("*trunk*", "192.0.2.5:5060", "a.hosted.example", "hosted-a"),
        ("*trunk*", "192.0.2.5:5060", "b.hosted.example", "hosted-b"),
        ("*trunk*", "192.0.2.5:5060", "c.hosted.example", None),  # shared IP, unknown domain
        ("*trunk*", "198.51.100.7:5080", "", "uk"),
        ("*trunk*", "[2001:db8::1]:5060", "", None),
        ("*trunk*", "203.0.113.1:5060", "uk.pbx", None),  # domain alone is not enough
        ("*trunk*", "garbage", "", None),
    ],
)
def test_which_tenant_a_message_belongs_to(router, receiving, source, domain, account):
    assert router.account_for_source(receiving, source, domain) == account


def test_remembered_source_answers_are_the_same_answers_and_stay_bounded(router):
    # Asked again (from another port, as a peer's next MESSAGE is), the kept answer is the
    # one a fresh match gives.
    assert router.account_for_source("*trunk*", "192.0.2.5:5099", "a.hosted.example") == "hosted-a"
    assert router.account_for_source("*trunk*", "192.0.2.5:6000", "b.hosted.example") == "hosted-b"
    assert router.account_for_source("acme", "10.0.0.9:5062", "acme.pbx") is None
    # A peer that varies its From domain without end cannot grow the table past its bound.
    for n in range(SOURCE_ANSWERS_KEPT + 10):
        router.account_for_source("*trunk*", "192.0.2.5:5060", f"d{n}.example")
    assert len(router._source_answers) <= SOURCE_ANSWERS_KEPT
    assert router.account_for_source("*trunk*", "192.0.2.5:5060", "a.hosted.example") == "hosted-a"


@pytest.mark.parametrize(
    ("account", "ext", "dialled", "sticky", "expected"),
    [
        # plain: the default caller ID
        ("acme", "1001", "+15557654321", None,
         OutboundRoute("acme", "1001", "tw", "+15551230001", "+15557654321")),
        # national form, normalised with the tenant's region
        ("acme", "1001", "(555) 765-4321", None,
         OutboundRoute("acme", "1001", "tw", "+15551230001", "+15557654321")),
        # the reply leaves from the DID the remote party last texted
        ("acme", "1001", "+15557654321", "+15551230003",
         OutboundRoute("acme", "1001", "tw", "+15551230003", "+15557654321")),
        # a sticky DID that is not the extension's is ignored
        ("acme", "1001", "+15557654321", "+15552000042",
         OutboundRoute("acme", "1001", "tw", "+15551230001", "+15557654321")),
        # explicit DID by its last digits
        ("acme", "1001", "0002*+15557654321", None,
         OutboundRoute("acme", "1001", "tw", "+15551230002", "+15557654321")),
        ("acme", "1001", "+15551230003*+15557654321", None,
         OutboundRoute("acme", "1001", "tw", "+15551230003", "+15557654321")),
        ("acme", "1001", "9999*+15557654321", None,
         Refusal("9999 matches none of your numbers")),
        # sender IDs: only with allow_sender_id, only configured ones, never to +1
        ("acme", "1002", "acme alerts*+15557654321", None,
         Refusal("sender IDs cannot be used for US or Canadian numbers")),
        ("acme", "1001", "ACME*+15557654321", None,
         Refusal("extension 1001 may not send with a sender ID")),
        ("acme", "1002", "OTHER*+15557654321", None,
         Refusal("OTHER is not one of your sender IDs")),
        # permissions
        ("acme", "1003", "+15557654321", None,
         Refusal("extension 1003 is not allowed to send SMS")),
        ("acme", "9999", "+15557654321", None,
         Refusal("extension 9999 is not allowed to send SMS")),
        # numbers and countries
        ("acme", "1001", "12", None, Refusal("12 is not a valid phone number")),
        ("acme", "1001", "+442079460018", None, Refusal("texts to GB numbers are not allowed")),
        ("hosted-a", "200", "+442079460018", None,
         OutboundRoute("hosted-a", "200", "sb", "+15552000042", "+442079460018")),
        ("uk", "10", "020 7946 0019", None,
         OutboundRoute("uk", "10", "tw", "+442079460018", "+442079460019")),
        # tenant isolation: an extension of one tenant is unknown in another
        ("hosted-b", "200", "+15557654321", None,
         Refusal("extension 200 is not allowed to send SMS")),
    ],
)
def test_outbound(router, account, ext, dialled, sticky, expected):
    assert router.outbound(account, ext, dialled, sticky) == expected


def test_sender_id_to_a_country_that_allows_it(tmp_path):
    text = CONFIG.replace('name = "acme"\nmode = "register"',
                          'name = "acme"\nallowed_countries = ["US", "GB"]\nmode = "register"')
    path = tmp_path / "b.toml"
    path.write_text(text)
    router = Router(load_settings(path), resolver=lambda h: [])
    assert router.outbound("acme", "1002", "acme alerts*+442079460019") == OutboundRoute(
        "acme", "1002", "tw", "+15551230001", "+442079460019", sender_id="Acme Alerts")


@pytest.mark.parametrize(
    ("provider", "did", "expected"),
    [
        ("tw", "+15551230001", InboundRoute("acme", "+15551230001", ("1001", "1002"), "1000")),
        ("tw", "+15551230003", InboundRoute("acme", "+15551230003", ("1003",))),
        ("sb", "+15552000007", InboundRoute("hosted-a", "+15552000007", ("200",))),
        ("sb", "+15552000050", InboundRoute("hosted-a", "+15552000050", ("250",))),  # exact wins
        ("sb", "+15553009999", InboundRoute("hosted-b", "+15553009999", ("300",))),
        ("sb", "+15552000100", Refusal("+15552000100 is not a configured number")),
        ("sb", "+15551230001", Refusal("+15551230001 is configured on provider tw, not sb")),
    ],
)
def test_inbound(router, provider, did, expected):
    assert router.inbound(provider, did) == expected


BASE = """
[[accounts]]
name = "a"
domain = "a"
allowed_sources = ["127.0.0.1"]
[[accounts]]
name = "b"
domain = "b"
allowed_sources = ["127.0.0.2"]
[[providers]]
name = "sb"
type = "sandbox"
"""


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ('[[numbers]]\nnumber = "+15551230001"\nprovider = "sb"\naccount = "a"\n'
         'deliver_to = ["1"]\n[[numbers]]\nnumber = "+15551230001"\nprovider = "sb"\n'
         'account = "b"\ndeliver_to = ["2"]\n',
         "numbers[+15551230001]: listed twice"),
        ('[[numbers]]\nrange = { first = "+15551230000", last = "+15551230050" }\n'
         'provider = "sb"\naccount = "a"\ndeliver_to = ["1"]\n'
         '[[numbers]]\nrange = { first = "+15551230040", last = "+15551230099" }\n'
         'provider = "sb"\naccount = "a"\ndeliver_to = ["1"]\n',
         "overlaps"),
        ('[[numbers]]\nprefix = "+1555"\nprovider = "sb"\naccount = "a"\ndeliver_to = ["1"]\n'
         '[[numbers]]\nnumber = "+15551230001"\nprovider = "sb"\naccount = "b"\n'
         'deliver_to = ["2"]\n',
         "numbers[+15551230001]: in account 'b', but also inside numbers[+1555*]"),
        ('[[numbers]]\nnumber = "+15551230001"\nprovider = "sb"\naccount = "a"\n'
         'deliver_to = ["1"]\n[[extensions]]\nextension = "9"\naccount = "b"\nsend = "allow"\n'
         'caller_ids = ["+15551230001"]\n',
         "extensions[9].caller_ids: +15551230001 belongs to account 'a', not 'b'"),
        ('[[numbers]]\nnumber = "+15551230001"\nprovider = "nope"\naccount = "a"\n'
         'deliver_to = ["1"]\n', "no provider named 'nope'"),
        ('[[numbers]]\nnumber = "+15551230001"\nprefix = "+1"\nprovider = "sb"\n'
         'account = "a"\ndeliver_to = ["1"]\n', "exactly one of number, numbers, prefix"),
        ('[[extensions]]\nextension = "9"\naccount = "a"\nsend = "allow_sender_id"\n'
         'caller_ids = []\nsender_ids = ["12345"]\n', "not a valid sender ID"),
        ('[[extensions]]\nextension = "9"\naccount = "a"\nsend = "allow_sender_id"\n'
         'sender_ids = ["WAYTOOLONGNAME"]\n', "not a valid sender ID"),
        ('[[extensions]]\nextension = "9"\naccount = "a"\nsend = "allow"\n'
         'sender_ids = ["ACME"]\n', 'only used with send = "allow_sender_id"'),
    ],
)
def test_check_config_reports_routing_mistakes(tmp_path, extra, problem):
    path = tmp_path / "b.toml"
    path.write_text(BASE + extra)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert any(problem in line for line in info.value.problems), info.value.problems


def test_multi_tenant_example_is_valid(tmp_path, monkeypatch):
    for name in ("acme-pbx", "twilio-token", "telnyx-key"):
        (tmp_path / name).write_text("a-secret")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    settings = load_settings(Path(__file__).parent.parent / "config" / "multi-tenant.example.toml")
    assert isinstance(settings, Settings)
    assert len(settings.accounts) >= 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [("STOP", (Keyword.OPT_OUT, "STOP")), (" stop. ", (Keyword.OPT_OUT, "STOP")),
     ("Unsubscribe", (Keyword.OPT_OUT, "UNSUBSCRIBE")), ("stop all", (Keyword.OPT_OUT, "STOPALL")),
     ("START", (Keyword.OPT_IN, "START")), ("help", (Keyword.HELP, "HELP")),
     ("stop by later", None), ("", None), ("stopp", None)],
)
def test_opt_out_keywords(text, expected):
    assert keyword_of(text) == expected
