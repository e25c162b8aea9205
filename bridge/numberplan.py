"""The number plan: which ``[[numbers]]`` rule a DID belongs to, and what in the config
overlaps. Exact numbers win over ranges, ranges over prefixes, longer prefixes over shorter.

Pure; built once from settings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.settings import NumberSettings


class NumberPlan:
    def __init__(self, rules: Sequence[NumberSettings],
                 account_of: Callable[[NumberSettings], str | None]) -> None:
        self.exact: dict[str, NumberSettings] = {}
        self.ranges: list[NumberSettings] = []
        self.prefixes: list[NumberSettings] = []
        self.problems: list[str] = []
        for rule in rules:
            if rule.range is not None:
                self._add_range(rule)
            elif rule.prefix is not None:
                self._add_prefix(rule)
            else:
                for did in rule.exact():
                    if did in self.exact:
                        self.problems.append(
                            f"numbers[{did}]: listed twice "
                            f"(also in numbers[{self.exact[did].label}])")
                    self.exact[did] = rule
        self.prefixes.sort(key=lambda r: len(r.prefix or ""), reverse=True)
        # An exact DID inside a range or prefix overrides it, but only within one tenant.
        for did, rule in self.exact.items():
            wider = self._wider(did)
            if wider is not None and account_of(wider) != account_of(rule):
                self.problems.append(
                    f"numbers[{did}]: in account {account_of(rule)!r}, but also inside "
                    f"numbers[{wider.label}] of account {account_of(wider)!r}")

    def _add_range(self, rule: NumberSettings) -> None:
        assert rule.range is not None
        for other in self.ranges:
            assert other.range is not None
            if (len(other.range.first) == len(rule.range.first)
                    and rule.range.first <= other.range.last
                    and other.range.first <= rule.range.last):
                self.problems.append(
                    f"numbers[{rule.label}]: overlaps numbers[{other.label}]")
        for other in self.prefixes:
            if _range_meets_prefix(rule, other.prefix or ""):
                self.problems.append(f"numbers[{rule.label}]: overlaps numbers[{other.label}]")
        self.ranges.append(rule)

    def _add_prefix(self, rule: NumberSettings) -> None:
        prefix = rule.prefix or ""
        for other in self.prefixes:
            theirs = other.prefix or ""
            if prefix.startswith(theirs) or theirs.startswith(prefix):
                self.problems.append(f"numbers[{rule.label}]: overlaps numbers[{other.label}]")
        for other in self.ranges:
            if _range_meets_prefix(other, prefix):
                self.problems.append(f"numbers[{rule.label}]: overlaps numbers[{other.label}]")
        self.prefixes.append(rule)

    def _wider(self, did: str) -> NumberSettings | None:
        for rule in self.ranges:
            if rule.contains(did):
                return rule
        for rule in self.prefixes:
            if rule.contains(did):
                return rule
        return None

    def find(self, did: str) -> NumberSettings | None:
        return self.exact.get(did) or self._wider(did)


def _range_meets_prefix(rule: NumberSettings, prefix: str) -> bool:
    assert rule.range is not None
    first, last = rule.range.first, rule.range.last
    width = len(first) - len(prefix)
    if width < 0:  # the prefix is longer than the range's numbers: they cannot meet
        return False
    low, high = prefix + "0" * width, prefix + "9" * width
    return first <= high and low <= last
