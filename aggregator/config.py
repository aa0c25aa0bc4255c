"""Loading and validating the TOML configuration; every default lives here.

Other tools write these files too, so the keys named in ARCHITECTURE.md keep
their meaning. Unknown keys are refused rather than ignored: a typo in a
threshold should not silently run with the default.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import timedelta
from email.headerregistry import Address
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from aggregator.durations import parse_duration

USER_AGENT = "aggregator/0.1 (+https://github.com/aggregator-news/aggregator; news digest bot)"
DigestFormat = Literal["html", "md", "txt", "json", "atom"]
DIGEST_FORMATS: tuple[DigestFormat, ...] = ("html", "md", "txt", "json", "atom")
_DEFAULT_FORMATS: list[DigestFormat] = ["html", "md", "json", "atom"]


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _weekdays(field: str) -> str:
    """A cron day-of-week field with numbers written as names.

    Cron counts 0 (and 7) as Sunday; APScheduler 3 counts 0 as Monday and its
    `from_crontab` passes numbers through, so "0 7 * * 1" would run on Tuesdays.
    Names mean the same to both.
    """
    parts = []
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        if not re.fullmatch(r"\*|\d+(-\d+)?", span) or (step_text and not step_text.isdigit()):
            parts.append(part)  # names, "last", "1#2": left to APScheduler
            continue
        first, _, last = span.partition("-")
        low, high = (0, 6) if span == "*" else (int(first), int(last or first))
        if not 0 <= low <= high <= 7:
            raise ValueError(f"day of week {part!r} is out of range 0-7")
        days = range(low, high + 1, int(step_text or 1))
        parts.extend(dict.fromkeys(_WEEKDAYS[day] for day in days))
    return ",".join(parts)


def cron_trigger(expression: str, timezone: str = "UTC") -> CronTrigger:
    """A trigger for a standard 5-field cron expression, in `timezone`."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(fields)}")
    minute, hour, day, month, weekday = fields
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=weekday if weekday == "*" else _weekdays(weekday),
        timezone=ZoneInfo(timezone),
    )


class ConfigError(Exception):
    """A configuration problem, worded as the one line the user sees."""


def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


Duration = Annotated[str, AfterValidator(_check_duration)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    # SQLAlchemy URL. A relative sqlite path is taken relative to the config
    # file's folder, so a config and its data travel together.
    url: str = "sqlite:///data/aggregator.db"


class FetchSettings(_Section):
    allow_private_addresses: bool = False
    user_agent: str = USER_AGENT
    connect_timeout: float = Field(10.0, gt=0)
    read_timeout: float = Field(30.0, gt=0)
    # Wall-clock limit for one whole response, so a server trickling bytes
    # cannot hold a worker forever.
    total_timeout: float = Field(60.0, gt=0)
    max_concurrency: int = Field(20, ge=1)
    per_host_concurrency: int = Field(2, ge=1)
    max_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_redirects: int = Field(5, ge=0, le=20)
    interval: Duration = "30m"
    min_interval: Duration = "5m"
    max_interval: Duration = "24h"
    # Processes that parse feeds when many are due; None: one per CPU; 1: no pool.
    parse_workers: int | None = Field(None, ge=1)
    # Consecutive failures double the wait, starting from `interval`,
    # bounded by `max_interval`.
    backoff_factor: float = Field(2.0, ge=1.0)
    # A feed failing without a single success for this long is disabled.
    disable_after: Duration = "7d"
    # Each feed's next fetch comes up to this fraction of its interval early,
    # a fixed offset per URL, so feeds of one host added together drift apart.
    jitter: float = Field(0.1, ge=0.0, lt=1.0)

    @property
    def interval_delta(self) -> timedelta:
        return parse_duration(self.interval)

    @property
    def min_interval_delta(self) -> timedelta:
        return parse_duration(self.min_interval)

    @property
    def max_interval_delta(self) -> timedelta:
        return parse_duration(self.max_interval)

    @property
    def disable_after_delta(self) -> timedelta:
        return parse_duration(self.disable_after)


class ClusterSettings(_Section):
    # Entries further apart than this are never compared.
    window: Duration = "72h"
    # "event" groups reports of one event; "story" groups related events.
    granularity: Literal["event", "story"] = "event"
    # Minimum combined similarity (0-100) for an entry to join a cluster.
    # None uses the matcher's tuned default for the granularity.
    threshold: float | None = Field(None, ge=0, le=100)
    # Analyze long batches (10,000 entries or more: a first run, a recluster,
    # a cold start) in a second process while this one decides, where a second
    # CPU is free: about 1.3-1.5 times as fast, for about 60-90 MB more memory
    # while it runs. The clusters are the same either way; false keeps one process.
    parallel: bool = True

    @property
    def window_delta(self) -> timedelta:
        return parse_duration(self.window)


class ServeSettings(_Section):
    # How often `serve` asks the database for feeds that are due.
    poll_interval: Duration = "60s"
    # On SIGTERM/SIGINT, how long running fetches may take to finish.
    shutdown_grace: Duration = "30s"


class SmtpSettings(_Section):
    """Where and how digests are mailed; secrets come from the environment, never the file."""

    # `from` is a Python keyword: the TOML key is `from`, the attribute `sender`.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    host: str = "localhost"
    port: int = Field(25, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "starttls"
    username: str | None = None
    # Name of the environment variable holding the password.
    password_env: str | None = None
    sender: str = Field("aggregator@localhost", alias="from")
    reply_to: str | None = None
    # Address for a mailto: in List-Unsubscribe, only if someone processes that mailbox
    # (nothing in the program reads mail); unset, only the one-click URL is advertised.
    unsubscribe_mailto: str | None = None
    rate_per_minute: float = Field(600.0, gt=0)
    timeout: float = Field(30.0, gt=0)
    # Temporary failures (4xx, lost connection) are retried, doubling the wait from
    # `retry_initial`, until the delivery is this old; then it fails permanently.
    retry_initial: Duration = "5m"
    retry_max_age: Duration = "2d"
    # Permanent failures (5xx) in a row after which a subscriber is paused.
    pause_after_failures: int = Field(3, ge=1)
    # Environment variable with the key that signs unsubscribe links; when unset, a
    # random key is created once and kept in the database.
    secret_env: str = "AGGREGATOR_SECRET"

    @field_validator("sender", "reply_to", "unsubscribe_mailto")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        """The address in the ASCII form SMTP and mail headers take (IDNA domain), name kept.

        A non-ASCII address passed here before and then failed every send; now
        its domain is converted once, and a non-ASCII local part is refused.
        `localhost`, for a relay on this machine, is a reserved name that
        email_validator refuses, so only its ASCII form is checked.
        """
        if value is None:
            return None
        name, address = parseaddr(value)
        local, _, domain = address.rpartition("@")
        try:
            if domain.lower() != "localhost":
                checked = validate_email(address, check_deliverability=False, allow_smtputf8=False)
                address = checked.ascii_email or checked.normalized
            elif not local or not address.isascii():
                raise EmailNotValidError("an address at localhost needs an ASCII name before the @")
        except EmailNotValidError as exc:
            raise ValueError(
                f"{value!r} is not an email address SMTP can use: {exc} "
                "(expected e.g. news@example.org)"
            ) from None
        return str(Address(display_name=name, addr_spec=address)) if name else address

    @property
    def retry_initial_delta(self) -> timedelta:
        return parse_duration(self.retry_initial)

    @property
    def retry_max_age_delta(self) -> timedelta:
        return parse_duration(self.retry_max_age)


class WebSettings(_Section):
    # Public address of the web endpoints, used for links in mails.
    base_url: str = "http://127.0.0.1:8080"
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value.rstrip("/")


class OutletSettings(_Section):
    name: str = Field(min_length=1)
    language: str | None = None
    home_url: str | None = None
    # http(s) URLs, or paths to local files (relative to the config file).
    feeds: list[str] = Field(default_factory=list)

    @field_validator("feeds")
    @classmethod
    def _feeds_are_urls(cls, feeds: list[str]) -> list[str]:
        for url in feeds:
            _check_feed_url(url)
        return feeds


class DigestSettings(_Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    title: str | None = None
    schedule: str = "0 6 * * *"
    timezone: str = "UTC"
    period: Duration = "24h"
    formats: list[DigestFormat] = Field(default_factory=lambda: _DEFAULT_FORMATS.copy())
    output_dir: str = "digests"
    # Display limit for HTML, Markdown, text and Atom; JSON always holds every cluster.
    max_stories: int = Field(50, ge=1)
    # Stories covered by fewer outlets are left out of the displayed formats.
    min_outlets: int = Field(1, ge=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (expected e.g. Europe/Berlin)") from None
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            cron_trigger(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a cron expression: {exc}") from None
        return value

    @property
    def period_delta(self) -> timedelta:
        return parse_duration(self.period)

    @property
    def trigger(self) -> CronTrigger:
        return cron_trigger(self.schedule, self.timezone)


class DashboardSettings(_Section):
    """The editors' dashboard (`web`): whose coverage it measures and how far back it looks."""

    # Outlet names that are "ours": the gaps view lists stories they have not covered.
    home_outlets: list[str] = Field(default_factory=list)
    # A story is a gap when at least this many other outlets carry it.
    gap_min_outlets: int = Field(3, ge=1)
    # How far back the Now, gaps and matrix views look.
    now_hours: int = Field(24, ge=1, le=24 * 31)
    # Stories shown in the Now view and the matrix.
    max_stories: int = Field(50, ge=1, le=500)
    # How often an open page asks for news.
    poll_seconds: int = Field(20, ge=2)
    # An editor stays logged in this long.
    session_hours: int = Field(12 * 7, ge=1)
    # Login attempts from one address allowed per window (successful ones do not
    # count); attempts for one name, from anywhere, get 20 times as many.
    login_attempts: int = Field(5, ge=1)
    login_window: Duration = "15m"
    # Environment variable with the key that signs session cookies; when unset, a
    # random key is created once and kept in the database.
    secret_env: str = "AGGREGATOR_DASHBOARD_SECRET"
    # Times on the pages are shown in this zone.
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return DigestSettings._known_zone(value)

    @property
    def login_window_delta(self) -> timedelta:
        return parse_duration(self.login_window)


class Settings(_Section):
    database: DatabaseSettings = DatabaseSettings()
    fetch: FetchSettings = FetchSettings()
    cluster: ClusterSettings = ClusterSettings()
    serve: ServeSettings = ServeSettings()
    smtp: SmtpSettings = SmtpSettings()
    web: WebSettings = WebSettings()
    dashboard: DashboardSettings = DashboardSettings()
    outlets: list[OutletSettings] = Field(default_factory=list)
    digests: list[DigestSettings] = Field(default_factory=list)
    # The folder relative paths are resolved against (the config file's).
    base_dir: Path = Path(".")

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        for kind, names in (
            ("outlets", [o.name for o in self.outlets]),
            ("digests", [d.name for d in self.digests]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{kind}: duplicate name {dupes[0]!r}")
        return self

    def digest(self, name: str) -> DigestSettings:
        for digest in self.digests:
            if digest.name == name:
                return digest
        known = ", ".join(d.name for d in self.digests) or "none configured"
        raise ConfigError(f"no digest named {name!r} in the configuration (known: {known})")

    def resolve(self, path: str) -> Path:
        """A path from the configuration, relative to the config file's folder."""
        candidate = Path(path).expanduser()
        return Path(os.path.normpath(self.base_dir / candidate))

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path made absolute."""
        url = self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and url != "sqlite:///:memory:":
            path = url[len(prefix) :]
            if not path.startswith("/"):
                return prefix + str(self.resolve(path).resolve())
        return url

    def feed_url(self, url: str) -> str:
        """A feed as configured: URLs unchanged, local paths as absolute file URLs."""
        if urlsplit(url).scheme in ("http", "https", "file"):
            return url
        return self.resolve(url).resolve().as_uri()


def _check_feed_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise ValueError(f"{url!r} has no host")
        return
    if parts.scheme == "file" or not parts.scheme:
        return
    raise ValueError(f"{url!r} is not an http(s) URL or a local file path")


def _format_error(path: Path, error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        message = "unknown key"
    else:
        message = first["msg"].removeprefix("Value error, ")
        if kind not in ("value_error", "missing") and "input" in first:
            message += f" (got {first['input']!r})"
    more = len(error.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{path}: {location}: {message}{suffix}"


def load(path: Path | str) -> Settings:
    """Read and validate a configuration file, or raise ConfigError with one line."""
    path = Path(path)
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if "base_dir" in raw:
        raise ConfigError(f"{path}: base_dir: unknown key")
    try:
        return Settings.model_validate({**raw, "base_dir": path.resolve().parent})
    except ValidationError as exc:
        raise ConfigError(_format_error(path, exc)) from None


def default() -> Settings:
    """Settings when no file is given: everything at its default, relative to the working dir."""
    return Settings(base_dir=Path.cwd())
