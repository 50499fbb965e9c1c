"""Kafka client properties: the client.properties parser, the merge with the shortcuts, the
refusal of protected names, secret redaction, and librdkafka's check of what is left."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickpipe.adapters.bus.kafka.cluster import check_properties
from tickpipe.adapters.bus.kafka.properties import (
    InvalidKafkaProperties,
    KafkaProperties,
    is_secret,
    merge_properties,
    parse_properties,
)
from tickpipe.config import Settings
from tickpipe.wiring import MissingDependency, require_kafka

CONFLUENT_STYLE = """\
# Required connection configs for Kafka producer, consumer, and admin
bootstrap.servers=pkc-abc12.eu-west-1.aws.confluent.cloud:9092
security.protocol=SASL_SSL
sasl.mechanisms=PLAIN
sasl.username=ABCDEFGHIJKL
sasl.password=s3cr3t+/=value

! a Java-style comment
session.timeout.ms : 45000
client.id    tickpipe-test
"""


def layer(values: dict[str, str], origin: str) -> tuple[dict[str, str], dict[str, str]]:
    return values, dict.fromkeys(values, origin)


def test_parses_a_managed_service_properties_file() -> None:
    """`=`, `:` and whitespace separators, `#` and `!` comments, values with `=` in them."""
    values, origins = parse_properties(CONFLUENT_STYLE, "client.properties")
    assert values == {
        "bootstrap.servers": "pkc-abc12.eu-west-1.aws.confluent.cloud:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "ABCDEFGHIJKL",
        "sasl.password": "s3cr3t+/=value",
        "session.timeout.ms": "45000",
        "client.id": "tickpipe-test",
    }
    assert origins["security.protocol"] == "client.properties:3"


def test_parser_joins_continuations_and_decodes_escapes() -> None:
    """A trailing backslash continues the line; `\\:`, `\\=`, `\\\\` and `\\uXXXX` decode."""
    text = "ssl.ca.location = /etc/ssl/\\\n    ca.pem\nkey\\=x = a\\:b\\\\c\\u00e9\n"
    values, origins = parse_properties(text, "f")
    assert values == {"ssl.ca.location": "/etc/ssl/ca.pem", "key=x": "a:b\\c\u00e9"}
    assert origins == {"ssl.ca.location": "f:1", "key=x": "f:3"}


def test_a_line_without_a_key_is_refused_with_its_line_number() -> None:
    """`=value` names no property: the error says which line."""
    with pytest.raises(InvalidKafkaProperties, match=r"^f:2: expected key=value"):
        parse_properties("# c\n=orphan\n", "f")


def escape(text: str) -> str:
    return "".join("\\" + c if c in "\\=: #!" else c for c in text)


keys = st.text(st.sampled_from("abcz.-_=: 9#!\\"), min_size=1, max_size=12).filter(
    lambda k: k.strip() == k
)
values = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=20).filter(
    lambda v: v.strip() == v
)


@given(st.dictionaries(keys, values, max_size=6))
def test_escaped_key_value_lines_parse_back_to_the_same_properties(
    properties: dict[str, str],
) -> None:
    """Any key and value, escaped as Java writes them, come back unchanged."""
    text = "".join(f"{escape(k)}={escape(v)}\n" for k, v in properties.items())
    assert parse_properties(text, "f")[0] == properties


def test_shortcuts_win_over_the_file_across_alias_spellings() -> None:
    """The file's `sasl.mechanisms` loses to TICKPIPE_KAFKA_SASL_MECHANISM's `sasl.mechanism`."""
    file_values, file_origins = parse_properties(CONFLUENT_STYLE, "client.properties")
    merged = merge_properties(
        [
            (file_values, file_origins),
            layer({"sasl.mechanism": "SCRAM-SHA-512"}, "TICKPIPE_KAFKA_SASL_MECHANISM"),
        ]
    )
    assert merged.values["sasl.mechanism"] == "SCRAM-SHA-512"
    assert "sasl.mechanisms" not in merged.values
    assert merged.origins["sasl.mechanism"] == "TICKPIPE_KAFKA_SASL_MECHANISM"
    assert merged.bootstrap_servers == "pkc-abc12.eu-west-1.aws.confluent.cloud:9092"
    assert "bootstrap.servers" not in merged.client_config()


@pytest.mark.parametrize(
    "name",
    [
        *("enable.auto.commit", "enable.auto.offset.store", "enable.idempotence", "acks"),
        *("request.required.acks", "group.id", "auto.offset.reset", "partitioner", "error_cb"),
    ],
)
def test_properties_the_guarantees_rest_on_are_refused_by_name(name: str) -> None:
    """A file may not turn off manual commits, idempotence or acks=all: refused, with why."""
    with pytest.raises(InvalidKafkaProperties) as caught:
        merge_properties([layer({name: "x"}, "client.properties:7")])
    message = str(caught.value)
    assert name in message
    assert "client.properties:7" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "name",
    [
        *("sasl.password", "ssl.key.password", "ssl.keystore.password"),
        *("sasl.oauthbearer.client.secret", "ssl.key.pem", "sasl.jaas.config"),
    ],
)
def test_secret_properties_are_redacted(name: str) -> None:
    """Secret values become *** in a dump and in any text that quotes them."""
    assert is_secret(name)
    props = merge_properties([layer({name: "hunter2", "sasl.username": "alice"}, "f")])
    assert props.redacted() == {name: "***", "sasl.username": "alice"}
    assert props.scrub('Invalid value "hunter2"\nfor x') == 'Invalid value "***" for x'


def test_plain_properties_are_not_secret() -> None:
    """Usernames, protocols and CA paths stay readable in logs."""
    for name in ("sasl.username", "security.protocol", "ssl.ca.location", "bootstrap.servers"):
        assert not is_secret(name)


def checked(values: dict[str, str]) -> str:
    props = merge_properties([layer(values, "client.properties:3")])
    with pytest.raises(InvalidKafkaProperties) as caught:
        check_properties(props, "tickpipe-processor")
    return str(caught.value)


def test_an_unknown_property_is_named_with_where_it_was_set() -> None:
    """librdkafka refuses the name; the line says which file line set it."""
    message = checked({"sasl.usernme": "alice"})
    assert 'No such configuration property: "sasl.usernme"' in message
    assert "client.properties:3" in message


def test_an_invalid_value_is_named_and_a_secret_value_never_shown() -> None:
    """A bad security.protocol is named; a password elsewhere in the config does not leak."""
    message = checked({"security.protocol": "SASL_SSSL", "sasl.password": "hunter2"})
    assert '"security.protocol"' in message
    assert "hunter2" not in message


def test_a_missing_ca_file_is_refused_before_any_connection() -> None:
    """ssl.ca.location naming no file fails up front, naming the property."""
    message = checked({"security.protocol": "SSL", "ssl.ca.location": "/nonexistent/ca.pem"})
    assert "ssl.ca.location" in message


def test_java_only_settings_are_refused_with_librdkafka_s_reason() -> None:
    """sasl.jaas.config (Java clients) is refused, and its password is not echoed."""
    jaas = 'org.apache.kafka.common.security.plain.PlainLoginModule required password="pw1";'
    message = checked({"sasl.jaas.config": jaas})
    assert "JAAS" in message
    assert "pw1" not in message


def test_valid_sasl_properties_pass_the_check() -> None:
    """SASL_SSL + SCRAM with a username and password is accepted (nothing is dialled)."""
    props = merge_properties(
        [
            layer(
                {
                    "security.protocol": "SASL_SSL",
                    "sasl.mechanism": "SCRAM-SHA-512",
                    "sasl.username": "alice",
                    "sasl.password": "pw",
                    "linger.ms": "5",
                },
                "f",
            )
        ]
    )
    check_properties(props, "g")
    assert isinstance(props, KafkaProperties)


def test_require_kafka_takes_bootstrap_servers_from_the_file(tmp_path: Path) -> None:
    """With only TICKPIPE_KAFKA_CONFIG_FILE, the brokers come from its bootstrap.servers."""
    path = tmp_path / "client.properties"
    path.write_text("bootstrap.servers=broker-1:9092\nsecurity.protocol=SASL_PLAINTEXT\n")
    settings = Settings(
        kafka_config_file=str(path),
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    assert settings.uses_kafka()
    kafka = require_kafka(settings, "ingest")
    assert kafka.bootstrap_servers == "broker-1:9092"
    assert kafka.properties == {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN",
        "sasl.username": "u",
        "sasl.password": "p",
    }


def test_require_kafka_env_bootstrap_and_shortcuts_win_over_the_file(tmp_path: Path) -> None:
    """TICKPIPE_KAFKA_BOOTSTRAP_SERVERS and the SASL shortcuts override the file's values."""
    path = tmp_path / "client.properties"
    path.write_text("bootstrap.servers=old:9092\nsasl.username=file-user\nsasl.password=old\n")
    settings = Settings(
        kafka_config_file=str(path),
        kafka_bootstrap_servers="new:9092",
        kafka_sasl_username="env-user",
        kafka_sasl_password="new",
    )
    kafka = require_kafka(settings, "ingest")
    assert kafka.bootstrap_servers == "new:9092"
    assert kafka.properties == {"sasl.username": "env-user", "sasl.password": "new"}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("enable.auto.commit=true\n", "enable.auto.commit"),
        ("bogus.property=1\n", "bogus.property"),
        ("security.protocol=SASL_SSL\nsasl.mechanism=GSSAPI\n", "GSSAPI"),
        ("security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n", "sasl.username"),
    ],
)
def test_require_kafka_refuses_a_bad_file_in_one_line(
    tmp_path: Path, content: str, expected: str
) -> None:
    """Protected, unknown or unusable properties end the command with one line naming them."""
    path = tmp_path / "client.properties"
    path.write_text(f"bootstrap.servers=b:9092\nsasl.password=hunter2\n{content}")
    with pytest.raises(MissingDependency) as caught:
        require_kafka(Settings(kafka_config_file=str(path)), "process")
    message = str(caught.value)
    assert expected in message
    assert "hunter2" not in message
    assert "\n" not in message


def test_require_kafka_names_an_unreadable_file(tmp_path: Path) -> None:
    """A properties file that cannot be read: one line with the variable and the reason."""
    missing = tmp_path / "nope.properties"
    with pytest.raises(MissingDependency, match="TICKPIPE_KAFKA_CONFIG_FILE: cannot read"):
        require_kafka(Settings(kafka_config_file=str(missing)), "process")


def test_require_kafka_without_any_bootstrap_says_where_to_set_it(tmp_path: Path) -> None:
    """A file with SASL settings but no brokers, and no env variable: what to set."""
    path = tmp_path / "client.properties"
    path.write_text("security.protocol=SSL\n")
    with pytest.raises(MissingDependency, match=r"bootstrap\.servers in TICKPIPE_KAFKA_CONFIG"):
        require_kafka(Settings(kafka_config_file=str(path)), "ingest")
