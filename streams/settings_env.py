"""The settings as environment variables: a child process's environment, one-line errors that
name the variable, and the README's configuration table generated from the fields."""

from __future__ import annotations

import re
from datetime import timedelta

import orjson
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from streams.settings import Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that recreate `settings` in a child process."""
    dumped = settings.model_dump(mode="json")
    for secret in ("pii_hash_key", "gift_card_api_key"):
        value = getattr(settings, secret)
        if value is not None:
            dumped[secret] = value.get_secret_value()
    env = {
        f"REWARDS_{name.upper()}": value if isinstance(value, str) else orjson.dumps(value).decode()
        for name, value in dumped.items()
        if value is not None
    }
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.kafka_bootstrap_servers
    env["REDIS_URL"] = settings.redis_url
    return env


def settings_error(exc: Exception) -> str:
    """One line naming the environment variable and what is wrong with it."""
    if not isinstance(exc, ValidationError):
        found = re.search(r'field "(\w+)"', str(exc))  # pydantic-settings could not parse a value
        if found is None:
            return str(exc)
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        return f"{env_name(found.group(1))}: not valid JSON{cause}"
    error = exc.errors()[0]
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"]:  # a rule across settings: the message names the variables
        return message
    field = str(error["loc"][0])
    name = env_name(field)
    where = "".join(f"[{part}]" for part in error["loc"][1:])
    shown = "" if "secret" in field or "key" in field else f" (got {error.get('input')!r:.60})"
    return f"{name}{where}: {message}{shown}"


ENV_ALIASES = {"kafka_bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS", "redis_url": "REDIS_URL"}


def env_name(field: str) -> str:
    """The environment variable of a settings field."""
    return ENV_ALIASES.get(field, f"REWARDS_{field.upper()}")


def settings_table() -> str:
    """The configuration table (Markdown), from the settings' own fields and descriptions."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        rows.append(f"| `{env_name(name)}` | {_shown_default(name, info)} | {info.description} |")
    return "\n".join(rows) + "\n"


TABLE_START = "<!-- settings:start -->\n"
TABLE_END = "<!-- settings:end -->"


def with_settings_table(readme: str) -> str:
    """`readme` with the configuration table between its markers replaced by the current one."""
    head, found, rest = readme.partition(TABLE_START)
    _, found_end, tail = rest.partition(TABLE_END)
    if not found or not found_end:
        raise ValueError("the README has no settings:start / settings:end markers")
    return head + TABLE_START + settings_table() + TABLE_END + tail


def _shown_default(name: str, info: FieldInfo) -> str:
    default = info.get_default(call_default_factory=True)
    if default is None:
        return "(none)"
    if name == "data_dir":
        return "`~/.local/state/rewards/data`"
    if isinstance(default, timedelta):
        return f"`{_iso_duration(default)}`"
    if isinstance(default, str | int | float | bool):
        text = str(default).lower() if isinstance(default, bool) else str(default)
        return f"`{text}`" if text else "(empty)"
    dumped = TypeAdapter(type(default)).dump_json(default).decode()
    return f"`{dumped}`" if len(dumped) <= 60 else "(see meaning)"


def _iso_duration(value: timedelta) -> str:
    if value.seconds == 0 and value.microseconds == 0:
        return f"P{value.days}D"
    return f"PT{int(value.total_seconds())}S"
