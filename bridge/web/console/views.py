"""What the pages show, computed from plain values: charts, ages, masked configuration.

No I/O and no aiohttp here, so every figure on a page can be checked on its own.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretStr

from bridge.model import MediaRef
from bridge.settings import Settings
from bridge.web.console.auth import Viewer

MASK = "**********"
CHART_W, CHART_H = 480, 120
_OWN_MEDIA = re.compile(r"/media/[A-Za-z0-9_-]{22}/[A-Za-z0-9._-]+$")


def utc(ts: float | None) -> str:
    if ts is None:
        return ""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def ago(ts: float | None, now: float | None = None) -> str:
    """'never', '12 s ago', '5 min ago', '3 h ago', '2 d ago'."""
    if ts is None:
        return "never"
    return duration((now or time.time()) - ts) + " ago"


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    label: str  # "14:00-15:00 UTC: 3 texts"


def bars(counts: Sequence[int], since: float) -> tuple[list[Bar], int]:
    """An hourly bar chart's bars (SVG units) and its scale's top value."""
    top = max([*counts, 1])
    step = CHART_W / max(len(counts), 1)
    out = []
    for i, count in enumerate(counts):
        height = (CHART_H - 4) * count / top
        start = time.gmtime(since + 3600 * i)
        label = (f"{start.tm_hour:02d}:00-{(start.tm_hour + 1) % 24:02d}:00 UTC: "
                 f"{count} text{'' if count == 1 else 's'}")
        out.append(Bar(round(i * step + 1, 1), round(CHART_H - height, 1),
                       round(step - 2, 1), round(height, 1), count, label))
    return out, top


def media_view(ref: MediaRef) -> dict[str, Any]:
    """A media item as the console shows it: our own files as a thumbnail (same origin),
    a carrier's by type only (loading it would hand the carrier the admin's browser)."""
    kind = (ref.content_type or "").split("/", 1)[0]
    match = _OWN_MEDIA.search(ref.url)
    return {"path": match.group(0) if match else None, "image": kind == "image",
            "type": ref.content_type or "unknown type"}


# --- configuration, masked -----------------------------------------------------------------


def secret_values(model: Any) -> set[str]:
    """Every secret in a settings tree: what must never reach a page."""
    found: set[str] = set()
    if isinstance(model, SecretStr):
        value = model.get_secret_value()
        if value:
            found.add(value)
    elif isinstance(model, BaseModel):
        for name in type(model).model_fields:
            found |= secret_values(getattr(model, name))
    elif isinstance(model, list | tuple):
        for item in model:
            found |= secret_values(item)
    elif isinstance(model, dict):
        for item in model.values():
            found |= secret_values(item)
    return found


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Belt and braces: a secret that reached a page by another path is masked anyway."""
    for value in sorted(secrets, key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, MASK)
    return text


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def config_text(settings: Settings, viewer: Viewer) -> str:
    """The running configuration as TOML, defaults included and secrets masked. A tenant
    sees its own accounts, numbers and extensions only."""
    data: dict[str, Any] = settings.model_dump(mode="json", exclude_none=True)
    if not viewer.is_admin:
        mine = set(viewer.accounts or ())
        single = settings.accounts[0].name if len(settings.accounts) == 1 else None
        data = {
            "accounts": [a for a in data["accounts"] if a["name"] in mine],
            "numbers": [n for n in data["numbers"] if (n.get("account") or single) in mine],
            "extensions": [e for e in data["extensions"]
                           if (e.get("account") or single) in mine],
        }
    else:
        data["console"]["users"] = [{"name": u["name"], "role": u["role"],
                                     "accounts": u["accounts"], "password_hash": MASK}
                                    for u in data["console"]["users"]]
    lines: list[str] = []
    for section, value in data.items():
        if isinstance(value, dict):
            lines += ["", f"[{section}]", *(f"{k} = {_toml_value(v)}" for k, v in
                                            value.items() if not _is_table_list(v))]
            for key, items in value.items():
                if _is_table_list(items):
                    for item in items:
                        lines += ["", f"[[{section}.{key}]]",
                                  *(f"{k} = {_toml_value(v)}" for k, v in item.items())]
        elif isinstance(value, list):
            for item in value:
                lines += ["", f"[[{section}]]",
                          *(f"{k} = {_toml_value(v)}" for k, v in item.items())]
    return scrub("\n".join(lines).strip() + "\n", secret_values(settings))


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def webhook_row(name: str, kind: str, masked_url: str, has_token: bool, auth: str,
                seen: Mapping[str, Any] | None) -> dict[str, Any]:
    """One carrier's line on the overview. A URL with a token in it is shown masked and
    cannot be copied from the page: the command that prints it runs on the server."""
    seen = seen or {}
    return {"name": name, "type": kind, "url": masked_url, "secret": has_token, "auth": auth,
            "last_valid": seen.get("last_valid_at"),
            "auth_failures": seen.get("auth_failures", 0),
            "last_failure": seen.get("last_failure_at")}
