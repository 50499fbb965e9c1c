"""Kafka client properties from a `client.properties` file and the TICKPIPE_KAFKA_* shortcuts.

One merge for every client tickpipe opens (producer, consumer, DLQ producer, admin). Later
layers win: the file, then the shortcuts. Properties that tickpipe's guarantees depend on are
refused rather than silently overridden, and secret values never reach a log line or an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

BOOTSTRAP = "bootstrap.servers"

# librdkafka aliases, folded to one name so that "later wins" holds across spellings.
_ALIASES = {
    "sasl.mechanisms": "sasl.mechanism",
    "metadata.broker.list": BOOTSTRAP,
    "request.required.acks": "acks",
    "auto.commit.enable": "enable.auto.commit",
}

_OFFSETS = "offsets move only after a batch is stored (at-least-once)"
_ONCE = "each accepted trade is written once and in order"
# Set by tickpipe itself; a file may not change them (a refusal names the property and why).
PROTECTED: Mapping[str, str] = {
    "enable.auto.commit": _OFFSETS,
    "enable.auto.offset.store": _OFFSETS,
    "auto.offset.reset": "a new consumer group starts from the earliest trade",
    "group.id": "set TICKPIPE_KAFKA_GROUP instead",
    "enable.idempotence": _ONCE,
    "acks": _ONCE,
    "transactional.id": _ONCE,
    "partitioner": "a symbol's trades stay in one partition, whichever client wrote them",
    # confluent-kafka's Python callbacks: a file can only hold strings.
    **dict.fromkeys(
        ("error_cb", "stats_cb", "throttle_cb", "oauth_cb", "on_delivery", "on_commit", "logger"),
        "a Python callback, set by tickpipe",
    ),
}

_SECRET_WORDS = ("password", "secret", "jaas", "private.key", "key.pem", "oauthbearer.config")
REDACTED = "***"


class InvalidKafkaProperties(ValueError):
    """A property file or shortcut tickpipe cannot use; the message is one line, secret-free."""


def canonical(name: str) -> str:
    return _ALIASES.get(name, name)


def is_secret(name: str) -> bool:
    """sasl.password, ssl.key.password, sasl.oauthbearer.client.secret, ssl.key.pem, ..."""
    return any(word in name for word in _SECRET_WORDS)


@dataclass(frozen=True, slots=True)
class KafkaProperties:
    """Merged client properties (canonical names), with where each one came from."""

    values: Mapping[str, str]
    origins: Mapping[str, str]

    @property
    def bootstrap_servers(self) -> str | None:
        return self.values.get(BOOTSTRAP) or None

    def client_config(self) -> dict[str, str]:
        """Everything but bootstrap.servers, which each client takes on its own."""
        return {name: value for name, value in self.values.items() if name != BOOTSTRAP}

    def redacted(self) -> dict[str, str]:
        """For a log line: secret values replaced by ***."""
        return {name: REDACTED if is_secret(name) else value for name, value in self.values.items()}

    def scrub(self, text: str) -> str:
        """`text` with every secret value replaced by ***, and on one line."""
        secrets = sorted(
            (v for name, v in self.values.items() if is_secret(name) and v), key=len, reverse=True
        )
        for secret in secrets:
            text = text.replace(secret, REDACTED)
        return " ".join(text.split())

    def explain(self, error: str) -> str:
        """A librdkafka configuration error as one secret-free line naming the property's origin."""
        line = self.scrub(error)
        match = re.search(r'property:? "([^"]+)"|: ([a-z][\w.]*) failed:', line)
        if match:
            name = canonical(match[1] or match[2])
            if name in self.origins:
                line += f" (set in {self.origins[name]})"
        return line


def parse_properties(text: str, source: str) -> tuple[dict[str, str], dict[str, str]]:
    """A Java-style `client.properties` file: `key=value`, `key: value` or `key value` lines,
    `#` and `!` comments, backslash escapes and continuations; keys and values are trimmed.
    Returns (values, origins), origins as `source:line`. Later lines win."""
    values: dict[str, str] = {}
    origins: dict[str, str] = {}
    for number, line in _logical_lines(text):
        key, value = _split(line)
        if not key:
            raise InvalidKafkaProperties(f"{source}:{number}: expected key=value, found no key")
        values[key] = value
        origins[key] = f"{source}:{number}"
    return values, origins


def merge_properties(
    layers: Iterable[tuple[Mapping[str, str], Mapping[str, str]]],
) -> KafkaProperties:
    """(values, origins) layers, later ones winning; aliases folded, protected names refused."""
    values: dict[str, str] = {}
    origins: dict[str, str] = {}
    for layer_values, layer_origins in layers:
        for name, value in layer_values.items():
            key = canonical(name)
            origin = layer_origins.get(name, "?")
            if key in PROTECTED:
                raise InvalidKafkaProperties(
                    f"Kafka property {name!r} ({origin}) cannot be set here: {PROTECTED[key]}"
                )
            values[key] = value
            origins[key] = origin
    return KafkaProperties(values, origins)


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Non-comment lines with continuations joined, each with the number it starts on."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.lstrip()
        if not pending:
            if not line or line[0] in "#!":
                continue
            start = number
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2:  # an odd number of backslashes: the line goes on
            pending.append(line[:-1])
            continue
        pending.append(line)
        yield start, "".join(pending)
        pending = []
    if pending:
        yield start, "".join(pending)


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _split(line: str) -> tuple[str, str]:
    """Key and value: the key ends at the first unescaped `=`, `:` or whitespace."""
    key: list[str] = []
    i, size = 0, len(line)
    while i < size:
        char = line[i]
        if char == "\\" and i + 1 < size:
            decoded, i = _unescape_at(line, i)
            key.append(decoded)
            continue
        if char in "=:" or char.isspace():
            break
        key.append(char)
        i += 1
    rest = line[i:].lstrip()
    if rest[:1] in ("=", ":"):
        rest = rest[1:]
    value: list[str] = []
    j = 0
    while j < len(rest):
        if rest[j] == "\\" and j + 1 < len(rest):
            decoded, j = _unescape_at(rest, j)
            value.append(decoded)
        else:
            value.append(rest[j])
            j += 1
    return "".join(key).strip(), "".join(value).strip()


def _unescape_at(text: str, i: int) -> tuple[str, int]:
    """The character escaped at text[i] == '\\', and the index after it."""
    char = text[i + 1]
    if char == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2 : i + 6]):
        return chr(int(text[i + 2 : i + 6], 16)), i + 6
    return _ESCAPES.get(char, char), i + 2
