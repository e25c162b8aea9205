"""Secret values in the config: inline, from an environment variable, or from a file.

In TOML a secret is written as one of::

    auth_token = "inline value"
    auth_token = { env = "TWILIO_AUTH_TOKEN" }
    auth_token = { file = "/etc/sip-sms-bridge/twilio-token" }
    auth_token = { credential = "twilio-token" }   # systemd LoadCredential=

and always ends up as a ``SecretStr``: printed as ``**********`` in reprs, logs and errors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, SecretStr

CREDENTIAL_FOLDER_ID = "sip-sms-bridge"


class SecretUnavailable(ValueError):
    """A secret reference that cannot be resolved. The message names the reference (which
    variable or file), never the value."""


def resolve_secret(value: Any) -> Any:
    if isinstance(value, SecretStr | str):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        raise SecretUnavailable(
            'give the secret inline ("...") or as exactly one of '
            "{ env = \"VAR\" }, { file = \"/path\" }, { credential = \"name\" }"
        )
    (source, ref), = value.items()
    if not isinstance(ref, str) or not ref:
        raise SecretUnavailable(f"{source} must name a variable, file or credential")
    if source == "env":
        if ref not in os.environ:
            raise SecretUnavailable(f"environment variable {ref} is not set")
        return os.environ[ref]
    if source == "credential":
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise SecretUnavailable(
                f"credential {ref!r} needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=)"
            )
        path = Path(directory) / ref
        if not path.exists():
            # The shipped unit loads a whole folder (LoadCredential=sip-sms-bridge:<dir>),
            # which systemd names "<id>_<file name>".
            path = Path(directory) / f"{CREDENTIAL_FOLDER_ID}_{ref}"
        return _read_secret_file(path)
    if source == "file":
        return _read_secret_file(Path(ref))
    raise SecretUnavailable(f"unknown secret source {source!r} (use env, file or credential)")


def _read_secret_file(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretUnavailable(f"cannot read secret file {path}: {exc.strerror}") from None
    value = text.strip()
    if not value:
        raise SecretUnavailable(f"secret file {path} is empty")
    return value


Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]


def reveal(secret: SecretStr | None) -> str:
    """The plain value, for the one place that needs it (an auth header, an HMAC key)."""
    return secret.get_secret_value() if secret is not None else ""


def secret_values(model: BaseModel) -> list[str]:
    """Every secret in a config model, nested models included: what redaction looks for."""
    values: list[str] = []
    for name in type(model).model_fields:
        value = getattr(model, name)
        items = (value.values() if isinstance(value, dict)
                 else value if isinstance(value, list | tuple) else (value,))
        for item in items:
            if isinstance(item, SecretStr):
                values.append(item.get_secret_value())
            elif isinstance(item, BaseModel):
                values.extend(secret_values(item))
    return values
