"""The carrier test harness: one table row per carrier, and the contract every row must pass.

A ``Carrier`` row holds what a test needs to build the adapter (its class and the fields of a
working config), a text it can send, and the carrier's documented refusals with how each must
be classified. ``tests/providers/carriers.py`` holds the rows; ``test_contract.py`` runs the
shared checks over all of them (classification, timeouts, secrets kept out of reasons), and each
carrier's own test module builds its adapter with ``CARRIER.make`` and tests what is particular
to that carrier. ``Split`` adds what the multi-part tests (``test_parts.py``) need.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, SecretStr

from bridge.model import OutboundSms, SendResult
from bridge.providers.base import Provider
from tests.carrier_server import CannedResponse, CarrierServer, RecordedRequest, send_once

PUBLIC = "https://bridge.example.com"


@dataclass(frozen=True)
class Refusal:
    """A documented error answer and how the adapter must classify it."""

    status: int
    body: Any
    retryable: bool
    code: str | None
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_after: float | None = None  # expected; default: the Retry-After header's value
    says: str | None = None  # text the reason must carry

    def expected_retry_after(self) -> float | None:
        if self.retry_after is not None:
            return self.retry_after
        value = self.headers.get("Retry-After")
        return float(value) if value is not None else None


@dataclass(frozen=True)
class Split:
    """What the multi-part tests need: the carrier's answers and where a request's text is."""

    accepted: Callable[[str], CannedResponse]  # carrier id -> its success answer
    refused: CannedResponse  # a permanent refusal of one call
    busy: CannedResponse  # a refusal worth retrying
    text_of: Callable[[RecordedRequest], str]
    limit: int  # characters of GSM-7 text one call may carry


@dataclass(frozen=True)
class Carrier:
    cls: type[Provider]
    name: str  # the config name ([[providers]] name)
    fields: Mapping[str, Any]  # a working config, without name/type/api_base
    api_base: str | None  # the carrier's own API base (None: the adapter's default)
    msg: OutboundSms  # a text this carrier can send
    refusals: tuple[Refusal, ...] = ()
    split: Split | None = None
    type: str = ""  # the config type, when it differs from the class's only literal
    label: str = ""  # the name in test ids, when one class has two rows

    def __str__(self) -> str:
        return self.label or self.type_name

    @property
    def type_name(self) -> str:
        return self.type or self.cls.Config.model_fields["type"].annotation.__args__[0]

    def make(self, api_base: str | None = None, **extra: Any) -> Provider:
        """The adapter, pointed at ``api_base`` (a local CarrierServer) or the real API;
        ``extra`` overrides config fields (None removes one)."""
        fields = {"timeout_seconds": 1, **self.fields, **extra,
                  "api_base": api_base or self.api_base}
        config = self.cls.Config.model_validate(
            {"name": self.name, "type": self.type_name,
             **{k: v for k, v in fields.items() if v is not None}})
        return self.cls(config, public_url=PUBLIC)

    def secrets(self) -> list[str]:
        """Every secret in the row's config (credentials must stay out of reasons)."""
        return [s for s in _secrets(self.make().config) if len(s) >= 4]

    async def send(self, msg: OutboundSms, *responses: CannedResponse,
                   **extra: Any) -> tuple[SendResult, list[RecordedRequest]]:
        """Send ``msg`` to a local server answering ``responses``: the result and requests."""
        async with CarrierServer() as srv:
            srv.respond(*responses)
            result = await send_once(self.make(srv.url, **extra), msg)
        return result, srv.requests

    async def send_to(self, srv: CarrierServer, msg: OutboundSms, **extra: Any) -> SendResult:
        return await send_once(self.make(srv.url, **extra), msg)


def _secrets(value: Any) -> list[str]:
    if isinstance(value, SecretStr):
        return [value.get_secret_value()]
    if isinstance(value, BaseModel):
        return [s for name in type(value).model_fields for s in _secrets(getattr(value, name))]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [s for item in value for s in _secrets(item)]
    return []
