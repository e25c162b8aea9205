"""Carrier adapters by config type name. Adding a carrier: one module, one line here."""

from __future__ import annotations

from bridge.providers.bandwidth import BandwidthProvider
from bridge.providers.base import Provider
from bridge.providers.commio import CommioProvider
from bridge.providers.flowroute import FlowrouteProvider
from bridge.providers.generic import GenericProvider
from bridge.providers.plivo import PlivoProvider
from bridge.providers.questblue import QuestBlueProvider
from bridge.providers.sandbox import SandboxProvider
from bridge.providers.signalwire import SignalWireProvider
from bridge.providers.sinch import SinchProvider
from bridge.providers.skyetel import SkyetelProvider
from bridge.providers.telnyx import TelnyxProvider
from bridge.providers.twilio import TwilioProvider
from bridge.providers.voicemeup import VoiceMeUpProvider
from bridge.providers.voipms import VoipmsProvider
from bridge.providers.vonage import VonageProvider
from bridge.providers.voxtelesys import VoxtelesysProvider
from bridge.providers.wavix import WavixProvider

PROVIDERS: dict[str, type[Provider]] = {
    "bandwidth": BandwidthProvider,
    "commio": CommioProvider,
    "flowroute": FlowrouteProvider,
    "generic": GenericProvider,
    "plivo": PlivoProvider,
    "questblue": QuestBlueProvider,
    "sandbox": SandboxProvider,
    "sinch": SinchProvider,
    "signalwire": SignalWireProvider,
    "skyetel": SkyetelProvider,
    "telnyx": TelnyxProvider,
    "twilio": TwilioProvider,
    "voicemeup": VoiceMeUpProvider,
    "voipms": VoipmsProvider,
    "vonage": VonageProvider,
    "voxtelesys": VoxtelesysProvider,
    "wavix": WavixProvider,
}


def provider_class(type_name: str) -> type[Provider]:
    return PROVIDERS[type_name]
