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

from bridge.numbers import InvalidNumber, region_of, to_e164
from bridge.settings import AccountSettings, ExtensionSettings, PacingSettings, Settings
from bridge.uris import host_of


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str  # plain words, shown to the sender


@dataclass(frozen=True, slots=True)
class InboundRoute:
    account: str
    did: str
    extensions: tuple[str, ...]
    fallback: str | None = None


@dataclass(frozen=True, slots=True)
class OutboundRoute:
    account: str
    extension: str
    provider: str
    did: str  # the number the text goes out from
    to: str  # E.164
    sender_id: str | None = None  # alphanumeric From instead of the DID, where permitted


Resolver = Callable[[str], list[str]]

SOURCE_ANSWERS_KEPT = 4096


def resolve_host(host: str) -> list[str]:
    """Addresses of a host name (or the address itself)."""
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, None)})
    except socket.gaierror:
        return []


def source_ip(source: str) -> str:
    """'127.0.0.1:5060' -> '127.0.0.1'; '[::1]:5060' -> '::1'."""
    if source.startswith("["):
        return source[1 : source.find("]")]
    return source.rsplit(":", 1)[0] if source.count(":") == 1 else source


class Router:
    def __init__(self, settings: Settings, resolver: Resolver = resolve_host) -> None:
        self.accounts: dict[str, AccountSettings] = {a.name: a for a in settings.accounts}
        self.plan = settings.number_plan()
        self._account_of_number = settings.account_of_number
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
                    nets.extend(ipaddress.ip_network(a) for a in resolver(host_of(uri)))
            self._acl[account.name] = nets
        # account_for_source is pure in its arguments and asked once per MESSAGE; the answer
        # for a (receiving account, address, From domain) is kept. Bounded: a hostile peer
        # can vary the From domain at will, so the table starts afresh when full.
        self._source_answers: dict[tuple[str, str, str], str | None] = {}

    # --- SIP side ---------------------------------------------------------------------------

    def account_for_source(
        self, receiving_account: str, source: str, from_domain: str = ""
    ) -> str | None:
        """The tenant a MESSAGE belongs to, or None if its source is not allowed.

        A MESSAGE that reached a registration's contact belongs to that registration's tenant
        if it comes from that tenant's registrar/proxy (or allowed sources). Anything else is
        matched against the trunk tenants' allowed source addresses; trunks that share
        addresses are told apart by the From domain (``match_domains``).
        """
        key = (receiving_account, source_ip(source), from_domain)
        try:
            return self._source_answers[key]
        except KeyError:
            pass
        answer = self._match_source(*key)
        if len(self._source_answers) >= SOURCE_ANSWERS_KEPT:
            self._source_answers.clear()
        self._source_answers[key] = answer
        return answer

    def _match_source(self, receiving_account: str, address: str, from_domain: str) -> str | None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        account = self.accounts.get(receiving_account)
        if (account is not None and account.mode == "register"
                and any(ip in net for net in self._acl[account.name])):
            return account.name
        candidates = [name for name, acct in self.accounts.items()
                      if acct.mode == "trunk" and any(ip in net for net in self._acl[name])]
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        domain = from_domain.lower()
        by_domain = [name for name in candidates
                     if domain in {d.lower() for d in self.accounts[name].match_domains}]
        return by_domain[0] if len(by_domain) == 1 else None

    def outbound(
        self, account: str, extension: str, dialled: str, sticky_did: str | None = None
    ) -> OutboundRoute | Refusal:
        """May ``extension`` text ``dialled``, and from which of its numbers?

        ``dialled`` is what the user addressed: a number, or ``SELECTOR*NUMBER`` where the
        selector picks one of the extension's DIDs by its last digits (``0002*5557654321``)
        or names one of its alphanumeric sender IDs (``ACME*+447700900123``).
        """
        ext = self.extensions.get((account, extension))
        if ext is None or ext.send == "deny":
            return Refusal(f"extension {extension} is not allowed to send SMS")
        tenant = self.accounts[account]
        selector, _, number = dialled.rpartition("*")
        try:
            to = to_e164(number, tenant.default_region)
        except InvalidNumber:
            return Refusal(f"{number} is not a valid phone number")
        region = region_of(to)
        if region not in tenant.countries:
            return Refusal(f"texts to {region or 'that country'} numbers are not allowed")
        sender_id = None
        if selector and any(c.isalpha() for c in selector):
            if ext.send != "allow_sender_id":
                return Refusal(f"extension {extension} may not send with a sender ID")
            matches = [s for s in ext.sender_ids if s.lower() == selector.lower()]
            if not matches:
                return Refusal(f"{selector} is not one of your sender IDs")
            if to.startswith("+1"):
                return Refusal("sender IDs cannot be used for US or Canadian numbers")
            sender_id, did = matches[0], ext.caller_ids[0]
        elif selector:
            digits_only = selector.lstrip("+")
            matches = [c for c in ext.caller_ids if c.endswith(digits_only)]
            if len(matches) != 1:
                which = "none" if not matches else "more than one"
                return Refusal(f"{selector} matches {which} of your numbers")
            did = matches[0]
        else:
            did = sticky_did if sticky_did in ext.caller_ids else ext.caller_ids[0]
        rule = self.plan.find(did)
        if rule is None or self._account_of_number(rule) != account:
            return Refusal(f"{did} is not a number of this PBX")
        return OutboundRoute(account, extension, rule.provider, did, to, sender_id)

    # --- carrier side -----------------------------------------------------------------------

    def inbound(self, provider: str, did: str) -> InboundRoute | Refusal:
        rule = self.plan.find(did)
        if rule is None:
            return Refusal(f"{did} is not a configured number")
        if rule.provider != provider:
            return Refusal(f"{did} is configured on provider {rule.provider}, not {provider}")
        return InboundRoute(self._account_of_number(rule), did, tuple(rule.deliver_to),
                            rule.fallback)

    def pacing_of(self, did: str) -> PacingSettings | None:
        rule = self.plan.find(did)
        return rule.pacing if rule is not None else None

    def extension_uri(self, account: str, extension: str) -> str:
        acct = self.accounts[account]
        return f"sip:{extension}@{acct.send_target}"

    def domain(self, account: str) -> str:
        return self.accounts[account].domain
