"""Routing and permissions: which tenant a SIP MESSAGE belongs to, which extensions get an
inbound text, and whether (and from which number) an extension may text out.

Pure: built from settings once; answers questions; no I/O. Every refusal carries a sentence
the sender can read on a phone screen.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass

from bridge.numbers import InvalidNumber, to_e164
from bridge.settings import AccountSettings, ExtensionSettings, NumberSettings, Settings


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # plain words, shown to the sender


@dataclass(frozen=True, slots=True)
class InboundRoute:
    account: str
    did: str
    extensions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class OutboundRoute:
    account: str
    extension: str
    provider: str
    did: str  # the number the text goes out from
    to: str  # E.164


Resolver = Callable[[str], list[str]]


def resolve_host(host: str) -> list[str]:
    """Addresses of a host name (or the address itself)."""
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, None)})
    except socket.gaierror:
        return []


def _host_of(uri: str) -> str:
    rest = uri.removeprefix("sips:").removeprefix("sip:").split(";", 1)[0]
    rest = rest.rsplit("@", 1)[-1]
    if rest.startswith("["):
        return rest[1 : rest.find("]")]
    return rest.split(":", 1)[0]


def source_ip(source: str) -> str:
    """'127.0.0.1:5060' -> '127.0.0.1'; '[::1]:5060' -> '::1'."""
    if source.startswith("["):
        return source[1 : source.find("]")]
    return source.rsplit(":", 1)[0] if source.count(":") == 1 else source


class Router:
    def __init__(self, settings: Settings, resolver: Resolver = resolve_host) -> None:
        self.accounts: dict[str, AccountSettings] = {a.name: a for a in settings.accounts}
        self.numbers: dict[str, NumberSettings] = {n.number: n for n in settings.numbers}
        self.number_account = {n.number: settings.account_of_number(n) for n in settings.numbers}
        self.extensions: dict[tuple[str, str], ExtensionSettings] = {
            (settings.account_of_extension(e), e.extension): e for e in settings.extensions
        }
        # Who may send us MESSAGE, per account: its configured sources, plus, for a
        # registration, the registrar's and proxy's addresses.
        self._acl: dict[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {}
        for account in settings.accounts:
            nets = [ipaddress.ip_network(s, strict=False) for s in account.allowed_sources]
            if account.mode == "register":
                for uri in filter(None, (account.registrar, account.proxy)):
                    nets.extend(ipaddress.ip_network(a) for a in resolver(_host_of(uri)))
            self._acl[account.name] = nets

    # --- SIP side ---------------------------------------------------------------------------

    def account_for_source(self, receiving_account: str, source: str) -> str | None:
        """The tenant a MESSAGE belongs to, or None if its source is not allowed.

        A MESSAGE that reached a registration's contact belongs to that registration's tenant
        if it comes from that tenant's registrar/proxy (or allowed sources). Anything else is
        matched against the trunk tenants' allowed source addresses.
        """
        try:
            ip = ipaddress.ip_address(source_ip(source))
        except ValueError:
            return None
        account = self.accounts.get(receiving_account)
        if (account is not None and account.mode == "register"
                and any(ip in net for net in self._acl[account.name])):
            return account.name
        for name, acct in self.accounts.items():
            if acct.mode == "trunk" and any(ip in net for net in self._acl[name]):
                return name
        return None

    def outbound(
        self, account: str, extension: str, dialled: str, sticky_did: str | None = None
    ) -> OutboundRoute | Refusal:
        """May ``extension`` text ``dialled``, and from which of its numbers?"""
        ext = self.extensions.get((account, extension))
        if ext is None or ext.send == "deny":
            return Refusal(f"extension {extension} is not allowed to send SMS")
        try:
            to = to_e164(dialled, self.accounts[account].default_region)
        except InvalidNumber:
            return Refusal(f"{dialled} is not a valid phone number")
        did = sticky_did if sticky_did in ext.caller_ids else ext.caller_ids[0]
        number = self.numbers.get(did)
        if number is None or self.number_account[did] != account:
            return Refusal(f"{did} is not a number of this PBX")
        return OutboundRoute(account, extension, number.provider, did, to)

    # --- carrier side -----------------------------------------------------------------------

    def inbound(self, provider: str, did: str) -> InboundRoute | Refusal:
        number = self.numbers.get(did)
        if number is None:
            return Refusal(f"{did} is not a configured number")
        if number.provider != provider:
            return Refusal(f"{did} is configured on provider {number.provider}, not {provider}")
        return InboundRoute(self.number_account[did], did, tuple(number.deliver_to))

    def extension_uri(self, account: str, extension: str) -> str:
        acct = self.accounts[account]
        return f"sip:{extension}@{acct.send_target}"

    def domain(self, account: str) -> str:
        return self.accounts[account].domain
