"""Carrier adapters by config type name. Adding a carrier: one module, one line here."""

from __future__ import annotations

from bridge.providers.base import Provider
from bridge.providers.generic import GenericProvider
from bridge.providers.sandbox import SandboxProvider
from bridge.providers.twilio import TwilioProvider

PROVIDERS: dict[str, type[Provider]] = {
    "generic": GenericProvider,
    "sandbox": SandboxProvider,
    "twilio": TwilioProvider,
}


def provider_class(type_name: str) -> type[Provider]:
    return PROVIDERS[type_name]
