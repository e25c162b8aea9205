"""Bridge configs for end-to-end tests."""

from __future__ import annotations

TWILIO_SID = "AC" + "5" * 32
TWILIO_TOKEN = "e2e-twilio-auth-token-0123456789"
PBX_PASSWORD = "bridge-pbx-password-42"


def base(web_port: int, sip_port: int, *, retry: float = 0.3, max_retry: float = 1.0,
         web: str = "", sip: str = "", scheme: str = "http") -> str:
    """The [bridge], [web], [sip] and [delivery] sections; ``web`` and ``sip`` add lines."""
    return f"""
[bridge]
state_dir = "state"
public_url = "{scheme}://127.0.0.1:{web_port}"
log_level = "debug"

[web]
port = {web_port}
{web}
[sip]
port = {sip_port}
{sip}
[delivery]
first_retry_seconds = {retry}
max_retry_seconds = {max_retry}
"""


def registered_account(kamailio_port: int, *, name: str = "pbx", user: str = "sms") -> str:
    return f"""
[[accounts]]
name = "{name}"
mode = "register"
domain = "127.0.0.1"
registrar = "sip:127.0.0.1:{kamailio_port}"
username = "{user}"
password = {{ env = "PBX_PASSWORD" }}
"""


def trunk_account(pbx_port: int, sources: str = '["127.0.0.1/32"]', name: str = "pbx") -> str:
    return f"""
[[accounts]]
name = "{name}"
mode = "trunk"
domain = "127.0.0.1"
pbx_uri = "sip:127.0.0.1:{pbx_port}"
allowed_sources = {sources}
"""


def twilio_provider(api_base: str, name: str = "twilio") -> str:
    return f"""
[[providers]]
name = "{name}"
type = "twilio"
account_sid = "{TWILIO_SID}"
auth_token = {{ env = "TWILIO_AUTH_TOKEN" }}
api_base = "{api_base}"
"""


def flowroute_provider(api_base: str, *, secret_key: str, webhook_token: str,
                       name: str = "flowroute") -> str:
    """A Flowroute provider: its secret key and the token in its webhook URL are given
    as written in TOML (a quoted value, or an { env = ... } / { file = ... } table)."""
    return f"""
[[providers]]
name = "{name}"
type = "flowroute"
access_key = "12345678"
secret_key = {secret_key}
webhook_token = {webhook_token}
api_base = "{api_base}"
"""


def sandbox_provider(name: str = "sandbox") -> str:
    return f"""
[[providers]]
name = "{name}"
type = "sandbox"
"""


def number(did: str, provider: str, deliver_to: list[str], account: str | None = None) -> str:
    acct = f'account = "{account}"\n' if account else ""
    targets = ", ".join(f'"{e}"' for e in deliver_to)
    return f"""
[[numbers]]
number = "{did}"
provider = "{provider}"
{acct}deliver_to = [{targets}]
"""


def extension(ext: str, caller_ids: list[str], send: str = "allow",
              account: str | None = None) -> str:
    acct = f'account = "{account}"\n' if account else ""
    ids = ", ".join(f'"{c}"' for c in caller_ids)
    return f"""
[[extensions]]
extension = "{ext}"
{acct}send = "{send}"
caller_ids = [{ids}]
"""


ENV = {"PBX_PASSWORD": PBX_PASSWORD, "TWILIO_AUTH_TOKEN": TWILIO_TOKEN}
