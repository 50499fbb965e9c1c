"""The `tickpipe` command as a user meets it: --help with defaults and variables, a flag for each
setting, `tickpipe config` with passwords redacted, --config TOML and .env below the
environment, and one line with exit status 2 for any invalid value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tickpipe.cli import _NO_FLAG, build_parser
from tickpipe.config import Settings

TICKPIPE = [sys.executable, "-m", "tickpipe"]


def tickpipe(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("TICKPIPE_")}
    return subprocess.run(
        [*TICKPIPE, *args],
        env=base | (env or {}),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def config_lines(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert done.returncode == 0, done.stderr
    return dict(
        line.split(" = ", 1) for line in done.stdout.splitlines() if not line.startswith("#")
    )


def subcommand_help(command: str) -> str:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices[command].format_help()  # type: ignore[index]


def test_every_setting_but_the_passwords_has_a_flag_in_config() -> None:
    """`tickpipe config` takes a flag for each setting; passwords have none (argv is public)."""
    text = subcommand_help("config")
    for field in Settings.model_fields:
        variable = f"$TICKPIPE_{field.upper()}"
        assert (variable in text) == (field not in _NO_FLAG), field


@pytest.mark.parametrize("command", ["run", "ingest", "process", "gateway", "migrate"])
def test_help_shows_each_flags_variable_and_default(command: str) -> None:
    """Every flag's help says its variable and its default (per command for the probe port)."""
    text = " ".join(subcommand_help(command).split())
    assert "$TICKPIPE_LOG_LEVEL; default: INFO)" in text
    assert "$TICKPIPE_LOG_FORMAT; default: plain)" in text
    if command in ("run", "process", "gateway"):
        assert "$TICKPIPE_SMA_WINDOW; default: 20)" in text
    expected_port = {"ingest": "9100", "process": "9101"}.get(command)
    if expected_port:
        assert f"$TICKPIPE_METRICS_PORT; default: {expected_port})" in text


def test_config_prints_effective_settings_with_passwords_redacted(tmp_path: Path) -> None:
    """Passwords from variables, files and URLs never appear; the rest is printed as set."""
    secret = tmp_path / "db_password"
    secret.write_text("s3cret-db\n")
    done = tickpipe(
        ["config", "--sma-window", "7"],
        {
            "TICKPIPE_DATABASE_URL": "postgresql://tickpipe@db:5432/ticks",
            "TICKPIPE_DATABASE_PASSWORD_FILE": str(secret),
            "TICKPIPE_REDIS_URL": "redis://:s3cret-redis@cache:6379/0",
            "TICKPIPE_KAFKA_SASL_PASSWORD": "s3cret-kafka",
            "TICKPIPE_KAFKA_SASL_USERNAME": "alice",
        },
    )
    assert "s3cret" not in done.stdout + done.stderr
    values = config_lines(done)
    assert values["sma_window"] == "7"
    assert values["database_url"] == '"postgresql://tickpipe:***@db:5432/ticks"'
    assert values["redis_url"] == '"redis://:***@cache:6379/0"'
    assert values["kafka_sasl_password"] == '"***"'
    assert values["database_password"] == '"***"'
    assert values["kafka_sasl_username"] == '"alice"'


def test_config_file_and_dotenv_sit_below_the_environment_and_flags(tmp_path: Path) -> None:
    """--config FILE < .env < TICKPIPE_* < flags, each setting taken from the highest."""
    (tmp_path / "tickpipe.toml").write_text(
        'sma_window = 50\nkafka_topic = "from-toml"\nredis_channel = "from-toml"\n'
        'log_level = "debug"\nbatch_max_trades = 123\n'
    )
    (tmp_path / ".env").write_text(
        "TICKPIPE_KAFKA_TOPIC=from-dotenv\nTICKPIPE_REDIS_CHANNEL=from-dotenv\n"
        "TICKPIPE_BATCH_MAX_TRADES=456\n"
    )
    done = tickpipe(
        ["config", "--config", "tickpipe.toml", "--batch-max-trades", "789"],
        {"TICKPIPE_REDIS_CHANNEL": "from-env"},
        cwd=tmp_path,
    )
    values = config_lines(done)
    assert values["sma_window"] == "50"
    assert values["kafka_topic"] == '"from-dotenv"'
    assert values["redis_channel"] == '"from-env"'
    assert values["batch_max_trades"] == "789"
    assert values["log_level"] == '"DEBUG"'


def test_config_output_is_a_config_file_that_gives_the_same_settings(tmp_path: Path) -> None:
    """What `tickpipe config` prints, read back with --config, prints the same."""
    first = tickpipe(["config", "--sma-window", "9", "--cors-origins", "*"], cwd=tmp_path)
    (tmp_path / "saved.toml").write_text(first.stdout)
    second = tickpipe(["config", "--config", "saved.toml"], cwd=tmp_path)
    assert config_lines(second) == config_lines(first)


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        (["migrate"], {"TICKPIPE_LOG_LEVEL": "loud"}, "TICKPIPE_LOG_LEVEL"),
        (["config", "--log-level", "verbose"], {}, "TICKPIPE_LOG_LEVEL"),
        (["migrate"], {"TICKPIPE_SMA_WINDOW": "0"}, "TICKPIPE_SMA_WINDOW"),
        (["migrate"], {"TICKPIPE_METRICS_PORT": "http"}, "TICKPIPE_METRICS_PORT"),
        (["config", "--sim-rate", "fast"], {}, "--sim-rate"),
        (["config", "--config", "missing.toml"], {}, "missing.toml"),
        (["config", "--config", "bad.toml"], {}, "sma_windw"),
        (["config", "--config", "broken.toml"], {}, "not TOML"),
        (
            ["run", "--port", "0", "--log-level", "warning"],
            {"TICKPIPE_SYMBOLS": "BTCUSDT,%%"},
            "'%%'",
        ),
    ],
)
def test_an_invalid_value_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], names: str
) -> None:
    """Flags, variables, config files, log level, symbols: one line naming the problem, status 2,
    never a traceback."""
    (tmp_path / "bad.toml").write_text("sma_windw = 5\n")
    (tmp_path / "broken.toml").write_text("sma_window = = 5\n")
    done = tickpipe(args, env, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert names in lines[0]
    assert "Traceback" not in done.stderr
    if "bad.toml" in args:
        assert "did you mean sma_window?" in lines[0]
