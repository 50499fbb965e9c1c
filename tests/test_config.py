"""Settings from the environment: TICKPIPE_<NAME>_FILE secrets, passwords put into URLs, the
Kafka shortcuts, and a warning for a TICKPIPE_* variable that names no setting."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from pydantic_settings import SettingsError

from fixtures.procs import TICKPIPE
from tickpipe.config import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("TICKPIPE_"):
            monkeypatch.delenv(name)


def secret_file(tmp_path: Path, content: str, name: str = "secret") -> str:
    path = tmp_path / name
    path.write_text(content)
    path.chmod(0o600)
    return str(path)


def test_a_value_can_come_from_a_file_without_its_trailing_newline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TICKPIPE_KAFKA_SASL_PASSWORD_FILE holds the password; the final newline is not part of it."""
    monkeypatch.setenv("TICKPIPE_KAFKA_SASL_PASSWORD_FILE", secret_file(tmp_path, " pa ss\n"))
    monkeypatch.setenv("TICKPIPE_SMA_WINDOW_FILE", secret_file(tmp_path, "7\n", "window"))
    settings = Settings()
    assert settings.kafka_shortcuts() == {"sasl.password": " pa ss"}
    assert settings.sma_window == 7  # any setting, typed as usual


def test_a_password_never_shows_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SASL password is a SecretStr: printing the settings does not print it."""
    monkeypatch.setenv("TICKPIPE_KAFKA_SASL_PASSWORD", "hunter2")
    settings = Settings()
    assert "hunter2" not in repr(settings)
    assert settings.kafka_shortcuts()["sasl.password"] == "hunter2"


def test_both_the_variable_and_its_file_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Setting TICKPIPE_X and TICKPIPE_X_FILE is refused, not resolved silently."""
    monkeypatch.setenv("TICKPIPE_REDIS_URL", "redis://a:6379/0")
    monkeypatch.setenv("TICKPIPE_REDIS_URL_FILE", secret_file(tmp_path, "redis://b:6379/0"))
    with pytest.raises(SettingsError, match="TICKPIPE_REDIS_URL or TICKPIPE_REDIS_URL_FILE"):
        Settings()


def test_an_unreadable_value_file_names_the_variable_and_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing file: the variable, the path and the OS reason, on one line."""
    missing = tmp_path / "missing"
    monkeypatch.setenv("TICKPIPE_DATABASE_URL_FILE", str(missing))
    with pytest.raises(SettingsError) as caught:
        Settings()
    assert str(caught.value) == (
        f"TICKPIPE_DATABASE_URL_FILE: cannot read {missing}: No such file or directory"
    )


def test_passwords_from_files_go_into_urls_that_name_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TICKPIPE_DATABASE_PASSWORD_FILE / TICKPIPE_REDIS_PASSWORD_FILE complete the URLs, escaped."""
    monkeypatch.setenv("TICKPIPE_DATABASE_URL", "postgresql://tickpipe@db:5432/tickpipe")
    monkeypatch.setenv("TICKPIPE_DATABASE_PASSWORD_FILE", secret_file(tmp_path, "p@ss/w:rd\n"))
    monkeypatch.setenv("TICKPIPE_REDIS_URL", "redis://redis:6379/0")
    monkeypatch.setenv("TICKPIPE_REDIS_PASSWORD", "r3d1s")
    settings = Settings()
    assert settings.database_url == "postgresql://tickpipe:p%40ss%2Fw%3Ard@db:5432/tickpipe"
    assert settings.redis_url == "redis://:r3d1s@redis:6379/0"


def test_a_password_for_a_url_that_holds_one_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two passwords for one database: refused rather than one silently chosen."""
    monkeypatch.setenv("TICKPIPE_DATABASE_URL", "postgresql://u:one@db/t")
    monkeypatch.setenv("TICKPIPE_DATABASE_PASSWORD", "two")
    with pytest.raises(ValueError, match="already holds a password"):
        Settings()


def test_a_mistyped_variable_is_reported_with_a_suggestion() -> None:
    """TICKPIPE_KAFKA_SASL_USERNAM is named, with the setting it probably meant."""
    environ = {
        "TICKPIPE_KAFKA_SASL_USERNAM": "alice",
        "TICKPIPE_KAFKA_SASL_PASSWORD_FILE": "/run/secrets/kafka",
        "TICKPIPE_HEALTH_PORT": "8000",  # the Docker image's health check reads it
        "TICKPIPE_TEST_DATABASE_URL": "postgresql://x",  # the test suite's own
        "PATH": "/bin",
    }
    assert Settings.unknown_variables(environ) == [
        "TICKPIPE_KAFKA_SASL_USERNAM is not a tickpipe setting;"
        " did you mean TICKPIPE_KAFKA_SASL_USERNAME?"
    ]


def run_tickpipe(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("TICKPIPE_")}
    return subprocess.run(
        [*TICKPIPE, *args],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_refuses_a_protected_kafka_property_with_exit_1_and_one_line(tmp_path: Path) -> None:
    """`tickpipe process` with enable.auto.commit in the file: exit 1, one line, no secret."""
    config = tmp_path / "client.properties"
    config.write_text(
        "bootstrap.servers=127.0.0.1:1\nsasl.password=hunter2\nenable.auto.commit=1\n"
    )
    done = run_tickpipe(["process"], {"TICKPIPE_KAFKA_CONFIG_FILE": str(config)})
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "enable.auto.commit" in lines[0]
    assert f"{config}:3" in lines[0]
    assert "hunter2" not in done.stderr + done.stdout


def test_cli_reports_a_missing_secret_file_in_one_line(tmp_path: Path) -> None:
    """An unreadable TICKPIPE_<NAME>_FILE stops the command before it starts anything."""
    done = run_tickpipe(["migrate"], {"TICKPIPE_DATABASE_URL_FILE": str(tmp_path / "none")})
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"tickpipe: error: invalid configuration: TICKPIPE_DATABASE_URL_FILE: cannot read "
        f"{tmp_path / 'none'}: No such file or directory"
    )


def test_cli_warns_about_a_mistyped_variable_and_goes_on(tmp_path: Path) -> None:
    """A typo in a TICKPIPE_* name is a warning line, not a failure."""
    done = run_tickpipe(
        ["migrate"],
        {
            "TICKPIPE_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "TICKPIPE_SMA_WINDWO": "5",
        },
    )
    assert done.returncode == 0, done.stderr
    assert "TICKPIPE_SMA_WINDWO is not a tickpipe setting" in done.stderr
    assert "did you mean TICKPIPE_SMA_WINDOW?" in done.stderr
