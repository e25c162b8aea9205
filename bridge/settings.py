"""The configuration: one TOML file, environment overrides, secrets from env vars or files.

Environment variables override the file: ``SIP_SMS_BRIDGE_WEB__PORT=8443`` sets ``web.port``
(``__`` separates nesting levels). Every problem is reported at once, one line each, naming
its path in the file (``providers[twilio].auth_token: environment variable ... is not set``).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from bridge.numberplan import NumberPlan
from bridge.numbers import InvalidNumber, to_e164
from bridge.providers.registry import PROVIDERS
from bridge.secrets import Secret

ENV_PREFIX = "SIP_SMS_BRIDGE_"
# pjsua2 as shipped allows 8 accounts per process and aborts (a C assertion, not an exception)
# on the 9th. One is kept for the trunk listener, so registrations are capped at 7.
MAX_REGISTRATIONS = 7

ProviderSettings = Annotated[
    Union[tuple(cls.Config for cls in PROVIDERS.values())],  # noqa: UP007
    Field(discriminator="type"),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BridgeSection(Strict):
    state_dir: Path = Path("./state")
    # The URL carriers reach this bridge at (scheme, host, port, optional path prefix).
    # Webhook URLs are derived from it, and Twilio-style signatures are checked against it.
    public_url: str = "http://127.0.0.1:8080"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    # "full" syncs every commit to disk (survives power loss); "normal" survives a process
    # crash but may lose the last commits on power loss, for much higher throughput.
    durability: Literal["full", "normal"] = "full"
    # pjsua2 2.15 keeps about 15 KB for every SIP MESSAGE it sends (measured; see README), so
    # past this resident size the bridge stops cleanly with exit status 75 and systemd starts
    # it again: nothing is lost, every text is on disk. None turns the guard off.
    restart_above_rss_mib: int | None = Field(default=2048, ge=64)
    memory_check_seconds: float = Field(default=60.0, gt=0)
    # --- scaling out (bridge/store) ---
    # Where the state lives: unset = the SQLite file in state_dir; "postgresql://user:pass@
    # host/db" = PostgreSQL, shared by several instances. A secret like any other (it may
    # carry a password), so it may also be { env = ... }, { file = ... }, { credential = ... }.
    database: Secret | None = None
    # This instance's name in claims, registrations, /readyz and /metrics (default
    # hostname:pid). Give a stable one to resume its own in-flight texts at once on restart.
    instance: str | None = Field(default=None, min_length=1, max_length=100)
    # A claimed text whose instance stops renewing its claim for this long is taken over.
    claim_lease_seconds: float = Field(default=30.0, ge=2, le=3600)

    @field_validator("database")
    @classmethod
    def _database_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
                ("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL (leave it out for SQLite)")
        return value

    @field_validator("public_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class WebSection(Strict):
    listen: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # Serve HTTPS directly: a full-chain certificate and its key (PEM).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Reverse proxies in front of the bridge (IPs/CIDRs). Only for requests from them is
    # X-Forwarded-For believed; everyone else's address is the connection's. Signatures
    # are always checked against bridge.public_url.
    trusted_proxies: list[str] = []
    # Slow and many clients: a connection must send its request headers within
    # header_timeout_seconds (also how long an idle keep-alive connection stays open) and its
    # body within body_timeout_seconds; at most max_connections are open at once, and at
    # most max_connections_per_client from one address (trusted proxies excepted). Keep
    # max_connections well below the unit's LimitNOFILE.
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    body_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    max_connections: int = Field(default=4096, ge=1, le=1_000_000)
    max_connections_per_client: int = Field(default=256, ge=1, le=1_000_000)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, values: list[str]) -> list[str]:
        return [_check_cidr(v) for v in values]

    @model_validator(mode="after")
    def _tls_pair(self) -> WebSection:
        _check_tls_pair(self.tls_cert_file, self.tls_key_file)
        return self


def _check_tls_pair(cert: Path | None, key: Path | None) -> None:
    if (cert is None) != (key is None):
        raise ValueError("give both tls_cert_file and tls_key_file")
    for path in (cert, key):
        if path is not None and not path.is_file():
            raise ValueError(f"{path} does not exist")


class AdminSection(Strict):
    """The admin API (retry, send) on the web server, for loopback clients presenting this
    bearer token. Without a token the admin API is off."""

    token: Secret | None = None

    @field_validator("token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (e.g. openssl rand -hex 24)")
        return value


class ConsoleUser(Strict):
    """One person who may sign in to the web console (``/console/``). ``admin`` sees every
    tenant; ``tenant`` sees and acts on its ``accounts`` only."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
    # argon2id, made by ``sip-sms-bridge hash-password``; a secret like any other (it may
    # come from an env var or a file), so the console and logs never show it.
    password_hash: Secret
    role: Literal["admin", "tenant"] = "tenant"
    accounts: list[str] = []

    @field_validator("password_hash")
    @classmethod
    def _argon2(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("$argon2id$"):
            raise ValueError("must be an argon2id hash: make one with "
                             "`sip-sms-bridge hash-password`")
        return value

    @model_validator(mode="after")
    def _scope(self) -> ConsoleUser:
        if self.role == "tenant" and not self.accounts:
            raise ValueError("a tenant user needs accounts (the tenants it may see)")
        if self.role == "admin" and self.accounts:
            raise ValueError("an admin sees every account: leave accounts out")
        return self


class ConsoleSection(Strict):
    """The web console at public_url/console/. Without users, the daemon prints a one-time
    login link for this machine (loopback) at start."""

    enabled: bool = True
    session_hours: float = Field(default=8.0, gt=0, le=24 * 30)
    users: list[ConsoleUser] = []


class SipSection(Strict):
    listen: str = "127.0.0.1"
    port: int = Field(default=5060, ge=0, le=65535)
    transports: list[Literal["udp", "tcp", "tls"]] = ["udp", "tcp"]
    user_agent: str = "sip-sms-bridge"
    max_body_bytes: int = Field(default=16 * 1024, ge=256, le=1024 * 1024)
    # SIP over TLS (transports = [..., "tls"]): its own port, certificate and key (PEM).
    tls_port: int = Field(default=5061, ge=0, le=65535)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @model_validator(mode="after")
    def _tls(self) -> SipSection:
        if "tls" in self.transports and self.tls_cert_file is None:
            raise ValueError('the "tls" transport needs tls_cert_file and tls_key_file')
        _check_tls_pair(self.tls_cert_file, self.tls_key_file)
        return self


class DeliverySection(Strict):
    """Retry policy for both directions."""

    first_retry_seconds: float = Field(default=5.0, gt=0)
    max_retry_seconds: float = Field(default=300.0, gt=0)
    # How long a text may wait for an offline phone or an unreachable carrier.
    expire_hours: float = Field(default=72.0, gt=0)
    carrier_concurrency: int = Field(default=32, ge=1, le=1024)
    sip_concurrency: int = Field(default=64, ge=1, le=1024)
    # When the bridge tells a sender about their text: failures only, every status, or never.
    notify_sender: Literal["failures", "all", "none"] = "failures"


MediaFormat = Literal["link", "rcs-ft"]
_MEDIA_TYPE = r"^[a-z0-9][a-z0-9.+-]*/(\*|[a-z0-9][a-z0-9.+-]*)$"


class MediaSection(Strict):
    """MMS: pictures and other files, copied from the carrier (or the phone) into state_dir/media
    and served to phones and carriers at unguessable URLs under public_url/media/."""

    max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    # Types accepted, each exact ("application/pdf") or a whole family ("image/*").
    allowed_types: list[Annotated[str, Field(pattern=_MEDIA_TYPE)]] = [
        "image/*", "video/*", "audio/*", "application/pdf", "text/vcard", "text/x-vcard",
    ]
    retention_days: float = Field(default=30.0, gt=0)
    # Disk space media may take; past it the oldest files are deleted first.
    max_disk_bytes: int = Field(default=1024**3, ge=1024)
    # How phones are shown media, unless an extension says otherwise: "link" (the text plus
    # one short link per file: any phone that shows text) or "rcs-ft" (RCS file-transfer
    # MESSAGEs that Linphone and other RCS-style softphones show inline).
    phone_format: MediaFormat = "link"
    # Enables the file-transfer upload endpoint softphones send pictures through:
    # public_url/upload/<upload_token>. Without it there is no upload endpoint.
    upload_token: Secret | None = None

    @field_validator("allowed_types", mode="before")
    @classmethod
    def _lower(cls, values: Any) -> Any:
        return [v.lower() for v in values] if isinstance(values, list) else values

    @field_validator("upload_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (e.g. openssl rand -hex 24)")
        return value

    def allows(self, content_type: str) -> bool:
        kind = content_type.split(";", 1)[0].strip().lower()
        family = kind.split("/", 1)[0] + "/*"
        return kind in self.allowed_types or family in self.allowed_types


def _check_cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR block") from None
    return value


class AccountSettings(Strict):
    """One PBX (a tenant): either a SIP registration or a trunk identified by source address."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
    mode: Literal["register", "trunk"] = "trunk"
    # The SIP domain extensions live in (sip:1001@<domain>).
    domain: str
    # Where MESSAGEs to extensions are sent (trunk mode); defaults to the domain.
    pbx_uri: str | None = None
    # Source addresses (IP or CIDR) from which MESSAGE is accepted. In register mode the
    # registrar's address is allowed by default.
    allowed_sources: list[str] = []
    default_region: str = Field(default="US", pattern=r"^[A-Z]{2}$")
    # register mode
    registrar: str | None = None
    username: str | None = None
    auth_username: str | None = None
    password: Secret | None = None
    proxy: str | None = None
    register_expires: int = Field(default=300, ge=20, le=86400)
    # Trunks sharing source addresses (one hosted PBX platform, many tenants) are told apart
    # by the SIP domain in the From header: list this tenant's domains here.
    match_domains: list[str] = []
    # Countries its extensions may text (ISO codes). Default: the tenant's own region.
    allowed_countries: list[Annotated[str, Field(pattern=r"^[A-Z]{2}$")]] | None = None

    @property
    def countries(self) -> frozenset[str]:
        return frozenset(self.allowed_countries or [self.default_region])

    @field_validator("allowed_sources")
    @classmethod
    def _sources(cls, values: list[str]) -> list[str]:
        return [_check_cidr(v) for v in values]

    @model_validator(mode="after")
    def _mode_fields(self) -> AccountSettings:
        if self.mode == "register":
            missing = [f for f in ("registrar", "username", "password") if not getattr(self, f)]
            if missing:
                raise ValueError(f"register mode needs {', '.join(missing)}")
        elif not self.allowed_sources:
            raise ValueError("trunk mode needs allowed_sources (the PBX's addresses)")
        return self

    @property
    def send_target(self) -> str:
        """The host[:port] MESSAGEs to extensions are addressed to."""
        base = self.pbx_uri or self.registrar or self.domain
        return base.removeprefix("sips:").removeprefix("sip:")


def _e164_or_error(value: str) -> str:
    try:
        return to_e164(value)
    except InvalidNumber as exc:
        raise ValueError(str(exc)) from None


class NumberRange(Strict):
    first: str
    last: str

    @field_validator("first", "last")
    @classmethod
    def _e164(cls, value: str) -> str:
        return _e164_or_error(value)

    @model_validator(mode="after")
    def _ordered(self) -> NumberRange:
        if len(self.first) != len(self.last) or self.first > self.last:
            raise ValueError("first and last must have as many digits, first <= last")
        return self


class PacingSettings(Strict):
    """How fast a DID may send, as carriers impose it (10DLC, toll-free, Commio). Texts over
    the pace wait in the queue; none is dropped."""

    per_second: float | None = Field(default=None, gt=0)
    per_hour: int | None = Field(default=None, gt=0)
    per_day: int | None = Field(default=None, gt=0)


class NumberSettings(Strict):
    """One or more DIDs: the carrier they are on, the tenant that owns them, and where their
    inbound texts go. Give exactly one of ``number``, ``numbers``, ``prefix`` or ``range``.
    A DID matches an exact number first, then a range, then the longest prefix."""

    number: str | None = None
    numbers: list[str] = []
    prefix: str | None = Field(default=None, pattern=r"^\+[1-9][0-9]{0,14}$")
    range: NumberRange | None = None
    provider: str
    account: str | None = None  # optional when there is exactly one account
    deliver_to: list[str] = Field(min_length=1)  # each listed extension gets its own copy
    # gets the text when delivery to the first extension fails permanently
    fallback: str | None = None
    pacing: PacingSettings | None = None

    @field_validator("number")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        return None if value is None else _e164_or_error(value)

    @field_validator("numbers")
    @classmethod
    def _e164_list(cls, values: list[str]) -> list[str]:
        return [_e164_or_error(v) for v in values]

    @model_validator(mode="after")
    def _one_form(self) -> NumberSettings:
        given = [self.number is not None, bool(self.numbers), self.prefix is not None,
                 self.range is not None]
        if sum(given) != 1:
            raise ValueError("give exactly one of number, numbers, prefix or range")
        return self

    @property
    def label(self) -> str:
        if self.number:
            return self.number
        if self.numbers:
            return self.numbers[0] + (f" (+{len(self.numbers) - 1})" if len(self.numbers) > 1
                                      else "")
        if self.prefix:
            return self.prefix + "*"
        assert self.range is not None
        return f"{self.range.first}-{self.range.last}"

    def exact(self) -> list[str]:
        return [self.number] if self.number else list(self.numbers)

    def contains(self, e164: str) -> bool:
        if self.number is not None or self.numbers:
            return e164 in self.exact()
        if self.prefix is not None:
            return e164.startswith(self.prefix)
        assert self.range is not None
        return (len(e164) == len(self.range.first)
                and self.range.first <= e164 <= self.range.last)


def valid_sender_id(value: str) -> str:
    """Twilio's alphanumeric sender rules, the strictest a carrier publishes: at most 11
    ASCII letters, digits and spaces, with at least one letter (not digits only)."""
    if not (1 <= len(value) <= 11 and all(c.isascii() and (c.isalnum() or c == " ")
                                           for c in value)
            and any(c.isalpha() for c in value)):
        raise ValueError(f"{value!r} is not a valid sender ID: use at most 11 letters, digits "
                         "and spaces, with at least one letter")
    return value


class ExtensionSettings(Strict):
    extension: str = Field(pattern=r"^[A-Za-z0-9_.+-]{1,32}$")
    account: str | None = None
    send: Literal["deny", "allow", "allow_sender_id"] = "deny"
    # The DIDs this extension may send from; the first is its default caller ID.
    caller_ids: list[str] = []
    # Alphanumeric sender IDs it may use (with send = "allow_sender_id").
    sender_ids: list[Annotated[str, AfterValidator(valid_sender_id)]] = []
    # Toll-fraud guards: texts it may send per minute and per day.
    max_per_minute: int | None = Field(default=30, gt=0)
    max_per_day: int | None = Field(default=500, gt=0)
    # How inbound MMS is shown on this phone; default: [media].phone_format.
    media_format: MediaFormat | None = None

    @field_validator("caller_ids")
    @classmethod
    def _e164(cls, values: list[str]) -> list[str]:
        return [_e164_or_error(v) for v in values]

    @model_validator(mode="after")
    def _sender_ids_need_permission(self) -> ExtensionSettings:
        if self.sender_ids and self.send != "allow_sender_id":
            raise ValueError('sender_ids are only used with send = "allow_sender_id"')
        return self


class _FromToml(BaseSettings):
    """Sources, highest first: the environment, then the TOML file (``toml_path``)."""

    toml_path: ClassVar[Path | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.toml_path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls.toml_path))
        return tuple(sources)


class Settings(_FromToml):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    bridge: BridgeSection = BridgeSection()
    web: WebSection = WebSection()
    admin: AdminSection = AdminSection()
    sip: SipSection = SipSection()
    delivery: DeliverySection = DeliverySection()
    media: MediaSection = MediaSection()
    console: ConsoleSection = ConsoleSection()
    accounts: list[AccountSettings] = Field(min_length=1)
    providers: list[ProviderSettings] = Field(min_length=1)
    numbers: list[NumberSettings] = []
    extensions: list[ExtensionSettings] = []

    @model_validator(mode="after")
    def _cross_references(self) -> Settings:
        problems: list[str] = []
        account_names = [a.name for a in self.accounts]
        provider_names = [p.name for p in self.providers]
        for kind, names in (("accounts", account_names), ("providers", provider_names)):
            for name, count in Counter(names).items():
                if count > 1:
                    problems.append(f"{kind}[{name}]: name used {count} times")
        for cfg in self.providers:
            adapter = PROVIDERS[cfg.type](cfg)
            if adapter.requires_webhook_token and cfg.webhook_token is None:
                problems.append(
                    f"providers[{cfg.name}].webhook_token: required, because {cfg.type} does "
                    "not sign its webhooks; set a long random value (it becomes part of the "
                    "webhook URL)"
                )
        registrations = sum(1 for a in self.accounts if a.mode == "register")
        if registrations > MAX_REGISTRATIONS:
            problems.append(
                f"accounts: {registrations} register-mode accounts, at most "
                f"{MAX_REGISTRATIONS} fit in one process; serve the rest as trunks"
            )
        single = account_names[0] if len(account_names) == 1 else None
        for num in self.numbers:
            where = f"numbers[{num.label}]"
            if num.provider not in provider_names:
                problems.append(f"{where}.provider: no provider named {num.provider!r}")
            account = num.account or single
            if account is None:
                problems.append(f"{where}.account: required when there are several accounts")
            elif account not in account_names:
                problems.append(f"{where}.account: no account named {account!r}")
        plan = NumberPlan(self.numbers, lambda n: n.account or single)
        problems.extend(plan.problems)
        seen: set[tuple[str | None, str]] = set()
        for ext in self.extensions:
            account = ext.account or single
            where = f"extensions[{ext.extension}]"
            if account is None:
                problems.append(f"{where}.account: required when there are several accounts")
            elif account not in account_names:
                problems.append(f"{where}.account: no account named {account!r}")
            if (account, ext.extension) in seen:
                problems.append(f"{where}: listed twice")
            seen.add((account, ext.extension))
            for cid in ext.caller_ids:
                rule = plan.find(cid)
                owner = None if rule is None else (rule.account or single)
                if rule is None:
                    problems.append(f"{where}.caller_ids: {cid} is not one of the numbers")
                elif owner != account:
                    problems.append(
                        f"{where}.caller_ids: {cid} belongs to account {owner!r}, "
                        f"not {account!r}"
                    )
            if ext.send != "deny" and not ext.caller_ids:
                problems.append(f"{where}.caller_ids: needed to send (send = {ext.send!r})")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="after")
    def _console_users(self) -> Settings:
        problems = []
        names = {a.name for a in self.accounts}
        for name, count in Counter(u.name for u in self.console.users).items():
            if count > 1:
                problems.append(f"console.users[{name}]: name used {count} times")
        for user in self.console.users:
            problems += [f"console.users[{user.name}].accounts: no account named {a!r}"
                         for a in user.accounts if a not in names]
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def number_plan(self) -> NumberPlan:
        return NumberPlan(self.numbers, self.account_of_number)

    def account_of_number(self, number: NumberSettings) -> str:
        return number.account or self.accounts[0].name

    def account_of_extension(self, ext: ExtensionSettings) -> str:
        return ext.account or self.accounts[0].name


class ConfigError(Exception):
    """The configuration cannot be used. ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class ConfigUnreadable(ConfigError):
    """The file (or an environment override) cannot even be parsed: one line, naming the
    file, the place and what to do."""


# tomllib recurses once per nesting level; no config needs more than a handful.
MAX_NESTING = 32
_ENV_FIELD = re.compile(r'field "([^"]+)" from source "EnvSettingsSource"')


def load_settings(path: str | Path) -> Settings:
    """Read, validate and cross-check the config file (plus environment overrides)."""
    raw = read_toml(path)
    cls = type("FileSettings", (Settings,), {"toml_path": Path(path)})
    try:
        return cls()
    except ValidationError as exc:
        raise ConfigError(_describe(exc, raw)) from None
    except SettingsError as exc:
        raise ConfigUnreadable([_env_problem(path, exc)]) from None
    except RecursionError:
        raise ConfigUnreadable([f"{path}: nested too deeply to validate"]) from None


class _StateOnly(_FromToml):
    """The [bridge] section alone, with the same environment overrides."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__",
                                      extra="ignore", frozen=True)
    bridge: BridgeSection = BridgeSection()


def load_state_dir(path: str | Path) -> Path:
    """Where the database is, for the commands that only read it: the rest of the config
    (secrets above all) need not resolve."""
    raw = read_toml(path)
    cls = type("FileState", (_StateOnly,), {"toml_path": Path(path)})
    try:
        return cls().bridge.state_dir
    except ValidationError as exc:
        raise ConfigError(_describe(exc, raw)) from None
    except SettingsError as exc:
        raise ConfigUnreadable([_env_problem(path, exc)]) from None


def read_toml(path: str | Path) -> dict[str, Any]:
    """The file as TOML, or ``ConfigUnreadable`` with one line saying what to do."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigUnreadable([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigUnreadable([f"{path}: line {line}: byte 0x{data[exc.start]:02x} is not "
                                "UTF-8; save the file as UTF-8"]) from None
    depth = _nesting(text)
    if depth > MAX_NESTING:
        raise ConfigUnreadable([f"{path}: arrays or inline tables nested {depth} deep (at most "
                                f"{MAX_NESTING}); a config needs only a few levels"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigUnreadable([f"{path}: not valid TOML: {exc}"]) from None
    except RecursionError:
        raise ConfigUnreadable([f"{path}: nested too deeply to read"]) from None


def _nesting(text: str) -> int:
    """An upper bound of the [ and { nesting in TOML text (brackets in strings and comments
    counted too: harmless for a bound)."""
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest


def _env_problem(path: str | Path, exc: SettingsError) -> str:
    match = _ENV_FIELD.search(str(exc))
    name = match.group(1) if match else None
    if name is None:
        return f"{path}: an environment override ({ENV_PREFIX}...) cannot be read: {exc}"
    var = ENV_PREFIX + name.upper()
    return (f"{path}: {name}: ${var} is not valid JSON; set a whole section as a JSON "
            f"object (e.g. {var}='{{\"port\": 8443}}') or one field as "
            f"{var}__FIELD=value, or unset it")


def _describe(exc: ValidationError, raw: dict[str, Any]) -> list[str]:
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = list(error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if not loc:
            lines.extend(message.splitlines())
            continue
        lines.append(f"{_path(loc, raw)}: {message}")
    return lines


def _path(loc: list[Any], raw: dict[str, Any]) -> str:
    """('providers', 0, 'twilio', 'auth_token') -> 'providers[twilio].auth_token'."""
    out: list[str] = []
    node: Any = raw
    i = 0
    while i < len(loc):
        part = loc[i]
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and part < len(node) else None
            label = part
            if isinstance(item, dict):
                label = item.get("name") or item.get("number") or item.get("extension") or part
            out.append(f"[{label}]")
            node = item
            # a discriminated union inserts the type tag into the location: skip it
            if (
                i + 1 < len(loc)
                and isinstance(item, dict)
                and loc[i + 1] == item.get("type")
            ):
                i += 1
        else:
            out.append(("." if out else "") + str(part))
            node = node.get(part) if isinstance(node, dict) else None
        i += 1
    return "".join(out) or "(config)"
