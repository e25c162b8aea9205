"""Every registered carrier adapter declares itself the same way (Apprise-style meta-test)."""

from __future__ import annotations

import typing

import pytest
from pydantic import SecretStr, ValidationError

from bridge.providers.base import Provider, ProviderConfig
from bridge.providers.registry import PROVIDERS

ADAPTERS = sorted(PROVIDERS.items())
SECRET_WORDS = ("password", "secret", "token", "api_key", "private_key", "signing_key",
                "security_key")
# Vonage's "API key" is the account's public identifier; its secret is api_secret.
PUBLIC_IDENTIFIERS = {("vonage", "api_key")}


@pytest.mark.parametrize(("type_name", "cls"), ADAPTERS)
def test_adapter_declares_its_config(type_name: str, cls: type[Provider]) -> None:
    assert issubclass(cls.Config, ProviderConfig)
    literal = cls.Config.model_fields["type"].annotation
    assert typing.get_args(literal) == (type_name,)
    assert cls.webhook_auth.strip(), "check-config needs a sentence on webhook auth"
    # one module per carrier, or a package whose __init__ carries the facts
    package = cls.__module__.rsplit(".", 1)[0]
    module = __import__(package if package != "bridge.providers" else cls.__module__,
                        fromlist=["_"])
    assert module.__doc__ and len(module.__doc__) > 200, "facts and sources go in the docstring"
    if type_name not in ("sandbox", "generic"):
        assert cls.default_api_base.startswith("https://"), "carrier APIs are HTTPS"


@pytest.mark.parametrize(("type_name", "cls"), ADAPTERS)
def test_credentials_are_secret_types(type_name: str, cls: type[Provider]) -> None:
    for name, field in cls.Config.model_fields.items():
        if (type_name, name) in PUBLIC_IDENTIFIERS or name.endswith(("_sid", "_id")):
            continue
        if any(word in name for word in SECRET_WORDS):
            assert SecretStr in _leaf_types(field.annotation), f"{type_name}.{name} is not secret"


def _leaf_types(annotation: object) -> set[object]:
    args = typing.get_args(annotation)
    if not args:
        return {annotation}
    out: set[object] = set()
    for arg in args:
        out |= _leaf_types(arg)
    return out


@pytest.mark.parametrize(("type_name", "cls"), ADAPTERS)
def test_unknown_fields_are_refused(type_name: str, cls: type[Provider]) -> None:
    with pytest.raises(ValidationError) as info:
        cls.Config.model_validate({"name": "x", "type": type_name, "no_such_option": 1})
    assert any(e["type"] == "extra_forbidden" for e in info.value.errors())


def test_unsigned_carriers_need_a_webhook_token(tmp_path) -> None:
    from bridge.settings import ConfigError, load_settings

    path = tmp_path / "b.toml"
    path.write_text("""
[[accounts]]
name = "a"
domain = "127.0.0.1"
allowed_sources = ["127.0.0.1"]
[[providers]]
name = "fr"
type = "flowroute"
access_key = "key"
secret_key = "secret"
""")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert any(p.startswith("providers[fr].webhook_token: required") for p in info.value.problems)


def test_readme_points_at_the_tested_generic_reference() -> None:
    """The generic reference lives in one file (loaded by test_generic.py), not a README copy."""
    from pathlib import Path

    root = Path(__file__).parents[2]
    readme = (root / "README.md").read_text()
    assert "(config/generic.example.toml)" in readme
    assert '[[providers]]\nname = "voipinnov"' not in readme
    assert (root / "config" / "generic.example.toml").is_file()


@pytest.mark.parametrize(
    ("type_name", "cls"), [(t, c) for t, c in ADAPTERS if not c.supports_sender_id])
async def test_carriers_without_sender_ids_refuse_them_without_a_request(type_name, cls):
    from bridge.model import OutboundSms, SendFailed
    from tests.test_hostile import _adapter

    adapter = _adapter(type_name)  # api_base points nowhere: a request would fail differently
    result = await adapter.send(OutboundSms(1, "+15551230001", "+447700900123", "hi",
                                            sender_id="ACME"))
    assert isinstance(result, SendFailed) and not result.retryable
    assert "alphanumeric sender ID" in result.reason
