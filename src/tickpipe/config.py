"""One settings object, read from the TICKPIPE_* environment (see the README's table)."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from tickpipe.core.symbols import parse_venue_list, split_venue_symbols


class Settings(BaseSettings):
    # `.env` of the working directory: below the environment, above a --config file.
    model_config = SettingsConfigDict(env_prefix="TICKPIPE_", extra="ignore", env_file=".env")

    # One venue or several, comma-separated; a venue is whatever module the registry finds
    # (adapters/exchanges/registry.py), so no list of names lives here.
    source: str = "simulated"
    symbols: str = ""  # `venue:symbol` entries; the prefix is required with several venues
    exchange_url: str | None = None  # the one venue's URL (TICKPIPE_<VENUE>_URL per venue)
    venue_urls: dict[str, str] = Field(default_factory=dict)  # from TICKPIPE_<VENUE>_URL
    exchange_idle_timeout_s: float = Field(default=30.0, gt=0)
    sim_rate: float = Field(default=20.0, gt=0)
    sim_seed: int | None = None

    kafka_bootstrap_servers: str | None = None
    kafka_topic: str = "trades"
    kafka_partitions: int = Field(default=6, ge=1)
    kafka_group: str = "tickpipe-processor"
    kafka_queue_max: int = Field(default=100_000, ge=1)
    # Client properties for every Kafka client (SASL/TLS for managed services); the shortcuts
    # win over the file. Merged and checked by adapters/bus/kafka/properties.py.
    kafka_config_file: str | None = None
    kafka_security_protocol: str | None = None
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_location: str | None = None

    database_url: str = "sqlite:///./tickpipe.db"
    redis_url: str | None = None
    redis_channel: str = "updates"
    redis_prefix: str = "tickpipe:"
    # Put into the URL when it names no password, so that the password alone can be a secret
    # file (TICKPIPE_DATABASE_PASSWORD_FILE) while the URL stays plain configuration.
    database_password: SecretStr | None = None
    redis_password: SecretStr | None = None

    sma_window: int = Field(default=20, ge=1, le=100_000)
    batch_max_trades: int = Field(default=5_000, ge=1)
    batch_max_age_ms: float = Field(default=50.0, ge=0)
    # `tickpipe process` only: processes, one consumer each in the group (services/workers.py).
    workers: int = Field(default=1, ge=1, le=64)

    ws_client_queue: int = Field(default=10_000, ge=1)  # frames a WebSocket client may lag

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=0, le=65535)
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    log_format: Literal["plain", "json"] = "plain"
    log_level: str = "INFO"

    # Exposing the gateway (README "Security"): limits, CORS, paging links, read timeouts.
    ws_max_clients: int = Field(default=1000, ge=1)
    ws_max_clients_per_ip: int = Field(default=50, ge=1)
    trusted_proxies: str = ""  # IPs/CIDRs whose X-Forwarded-For is believed
    cors_origins: str = ""  # comma-separated origins or "*"; empty: no CORS headers
    public_url: str | None = None  # base of absolute paging links; unset: relative links
    http_max_connections: int | None = Field(default=None, ge=1)  # unset: ws clients + 500
    query_timeout_ms: int = Field(default=5_000, ge=1)
    candles_max_scan_days: float = Field(default=7.0, gt=0)  # raw-trade span per request

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            ValueFiles(settings_cls),
            VenueUrls(settings_cls),
            dotenv_settings,
            TomlFile(settings_cls),
            file_secret_settings,
        )

    @model_validator(mode="after")
    def _passwords_into_urls(self) -> Settings:
        if self.database_password is not None:
            self.database_url = _with_password(
                self.database_url, self.database_password, "TICKPIPE_DATABASE_PASSWORD"
            )
        if self.redis_password is not None and self.redis_url:
            self.redis_url = _with_password(
                self.redis_url, self.redis_password, "TICKPIPE_REDIS_PASSWORD"
            )
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        import ipaddress

        for entry in filter(None, (part.strip() for part in value.split(","))):
            ipaddress.ip_network(entry, strict=False)  # ValueError names the entry
        return value

    @field_validator("public_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected http(s)://host[:port][/path], got {value!r}")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
        return level

    @field_validator("symbols")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    @field_validator("source")
    @classmethod
    def _venue_list(cls, value: str) -> str:
        return ",".join(parse_venue_list(value))

    @model_validator(mode="after")
    def _symbols_per_venue(self) -> Settings:
        venues = self.venues()
        by_venue = split_venue_symbols(self.symbols, venues)  # ValueError names the entry
        if len(venues) > 1:
            if self.exchange_url is not None:
                raise ValueError(
                    "TICKPIPE_EXCHANGE_URL names one exchange; with several venues set"
                    " TICKPIPE_<VENUE>_URL for each venue that needs one"
                )
            missing = [venue for venue in venues if venue not in by_venue]
            if missing:
                raise ValueError(
                    "with several venues, TICKPIPE_SYMBOLS must name symbols of each as"
                    f" venue:symbol; none for {', '.join(missing)}"
                )
        return self

    def venues(self) -> tuple[str, ...]:
        """The venues of TICKPIPE_SOURCE, in order."""
        return parse_venue_list(self.source)

    def venue_symbols(
        self, default_symbols: Callable[[str], Sequence[str]]
    ) -> dict[str, tuple[str, ...]]:
        """Each venue's symbols in its own notation; a lone venue without any configured gets
        `default_symbols(venue)`."""
        by_venue = split_venue_symbols(self.symbols, self.venues())
        return {
            venue: by_venue.get(venue) or tuple(default_symbols(venue)) for venue in self.venues()
        }

    def venue_url(self, venue: str) -> str | None:
        """TICKPIPE_<VENUE>_URL, else TICKPIPE_EXCHANGE_URL for a lone venue; None: public."""
        return self.venue_urls.get(venue) or self.exchange_url

    def uses_kafka(self) -> bool:
        """Kafka is named: by its bootstrap servers, or by a properties file that may hold them."""
        return bool(self.kafka_bootstrap_servers or self.kafka_config_file)

    def kafka_shortcuts(self) -> dict[str, str]:
        """The TICKPIPE_KAFKA_* shortcuts that are set, by librdkafka property name."""
        password = self.kafka_sasl_password
        shortcuts = {
            "security.protocol": self.kafka_security_protocol,
            "sasl.mechanism": self.kafka_sasl_mechanism,
            "sasl.username": self.kafka_sasl_username,
            "sasl.password": password.get_secret_value() if password is not None else None,
            "ssl.ca.location": self.kafka_ssl_ca_location,
        }
        return {name: value for name, value in shortcuts.items() if value is not None}

    @classmethod
    def unknown_variables(cls, environ: Mapping[str, str]) -> list[str]:
        """One line per TICKPIPE_* variable that names no setting (a typo?), with a suggestion."""
        known = {f"{PREFIX}{name.upper()}" for name in cls.model_fields}
        known |= {f"{PREFIX}{venue.upper()}_URL" for venue in _listed_venues(environ)}
        known |= {f"{name}{FILE_SUFFIX}" for name in known} | NOT_SETTINGS
        lines = []
        for variable in sorted(name.upper() for name in environ):
            if not variable.startswith(PREFIX) or variable in known:
                continue
            if variable.startswith(TEST_PREFIX):
                continue
            close = difflib.get_close_matches(variable, known, n=1)
            lines.append(
                f"{variable} is not a tickpipe setting"
                + (f"; did you mean {close[0]}?" if close else "")
            )
        return lines


PREFIX = "TICKPIPE_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FILE_SUFFIX = "_FILE"
TEST_PREFIX = "TICKPIPE_TEST_"  # the test suite's own variables
# Read by the Docker image's health check, not by tickpipe.
NOT_SETTINGS = frozenset({"TICKPIPE_HEALTH_PORT"})


class ValueFiles(PydanticBaseSettingsSource):
    """TICKPIPE_<NAME>_FILE: the value of TICKPIPE_<NAME> read from a file (Docker and Kubernetes
    secrets), one trailing newline dropped. Setting both is an error, not a silent choice."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        environ = {name.upper(): value for name, value in os.environ.items()}
        values: dict[str, Any] = {}
        for field_name in self.settings_cls.model_fields:
            variable = f"{PREFIX}{field_name.upper()}"
            path = environ.get(variable + FILE_SUFFIX)
            if path is None:
                continue
            if variable in environ:
                raise SettingsError(f"set {variable} or {variable}{FILE_SUFFIX}, not both")
            values[field_name] = read_value_file(variable + FILE_SUFFIX, path)
        return values


def _listed_venues(environ: Mapping[str, str]) -> tuple[str, ...]:
    listed = {name.upper(): value for name, value in environ.items()}.get(f"{PREFIX}SOURCE", "")
    try:
        return parse_venue_list(listed)
    except ValueError:
        return ()


_VENUE_URL = re.compile(rf"{PREFIX}([A-Z][A-Z0-9_]*)_URL({FILE_SUFFIX})?")


class VenueUrls(PydanticBaseSettingsSource):
    """TICKPIPE_<VENUE>_URL (or its _FILE) for any venue: the names are not settings fields,
    since a venue is added by writing its module alone."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads every variable at once

    def __call__(self) -> dict[str, Any]:
        fields = self.settings_cls.model_fields
        taken = {name.removesuffix("_url") for name in fields if name.endswith("_url")}
        urls: dict[str, str] = {}
        for variable, value in sorted(os.environ.items()):
            match = _VENUE_URL.fullmatch(variable.upper())
            if match is None or match.group(1).lower() in taken:
                continue
            if match.group(2):
                value = read_value_file(variable, value)
            urls[match.group(1).lower()] = value
        return {"venue_urls": urls} if urls else {}


class TomlFile(PydanticBaseSettingsSource):
    """`tickpipe --config FILE`: settings by name (`sma_window = 50`) from a TOML file, below
    the environment and `.env`. A name that is no setting is an error, not a silent no-op."""

    path: str | None = None  # set by load_settings for one construction

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        if TomlFile.path is None:
            return {}
        import tomllib

        try:
            with open(TomlFile.path, "rb") as file:
                values = tomllib.load(file)
        except OSError as exc:
            raise SettingsError(f"--config {TomlFile.path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"--config {TomlFile.path}: not TOML: {exc}") from None
        for name in values:
            if name not in self.settings_cls.model_fields:
                close = difflib.get_close_matches(name, self.settings_cls.model_fields, n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise SettingsError(f"--config {TomlFile.path}: {name!r} is not a setting{hint}")
        return values


def load_settings(overrides: Mapping[str, Any], config_file: str | None = None) -> Settings:
    """Flags > TICKPIPE_* variables > TICKPIPE_*_FILE > .env > `config_file` > defaults."""
    TomlFile.path = config_file
    try:
        return Settings(**overrides)
    finally:
        TomlFile.path = None


SECRET_FIELDS = frozenset({"kafka_sasl_password", "database_password", "redis_password"})
REDACTED = "***"


def redacted(settings: Settings) -> dict[str, Any]:
    """Every setting's effective value, passwords (fields and inside URLs) replaced."""
    values: dict[str, Any] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr) or (name in SECRET_FIELDS and value is not None):
            value = REDACTED
        elif isinstance(value, str) and "://" in value:
            value = _without_password(value)
        values[name] = value
    return values


def _without_password(url: str) -> str:
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None
    except ValueError:
        return url
    if not has_password:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{hostport}"))


def read_value_file(variable: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SettingsError(f"{variable}: cannot read {path}: {reason}") from None
    return text.removesuffix("\n").removesuffix("\r")


def _with_password(url: str, password: SecretStr, variable: str) -> str:
    parts = urlsplit(url)
    if parts.scheme.startswith("sqlite"):
        return url
    if parts.password is not None:
        raise ValueError(f"{variable} is set, and the URL already holds a password")
    userinfo, _, hostport = parts.netloc.rpartition("@")
    secret = quote(password.get_secret_value(), safe="")
    netloc = f"{userinfo}:{secret}@{hostport}"
    return urlunsplit(parts._replace(netloc=netloc))
