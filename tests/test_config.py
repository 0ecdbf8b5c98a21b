"""corequeue.config: defaults < [tool.corequeue] in pyproject.toml < COREQUEUE_* < flags.

Pure and fast: files in tmp_path, the environment passed in as a mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from corequeue.config import Settings, find_config_file, load_settings, parse_duration
from corequeue.core.errors import ConfigError
from corequeue.store.engine import DEFAULT_DATABASE_URL


def pyproject(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "pyproject.toml"
    path.write_text(body)
    return path


def test_defaults_without_file_environment_or_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings == Settings()
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite:///corequeue.sqlite3"
    assert (settings.max_processes, settings.max_jobs_per_process) == (2, 0)
    assert settings.retention == 7 * 86400.0
    assert settings.queues == settings.imports == settings.middleware == ()
    assert settings.synchronous_commit is True
    assert settings.config_file is None


def test_pyproject_in_the_current_directory_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = pyproject(
        tmp_path,
        """
[tool.corequeue]
database_url = "postgresql+psycopg://app@db/app"
imports = ["myapp.jobs"]
queues = ["default", "mail"]
middleware = ["myapp.jobs.LogContext"]
retention = "3d"
max-processes = 4
synchronous_commit = false

[tool.corequeue.schedule.nightly]
job = "myapp.jobs.Nightly"
cron = "0 3 * * *"
""",
    )
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.database_url == "postgresql+psycopg://app@db/app"
    assert settings.imports == ("myapp.jobs",)
    assert settings.queues == ("default", "mail")
    assert settings.middleware == ("myapp.jobs.LogContext",)
    assert settings.retention == 3 * 86400.0
    assert settings.max_processes == 4  # dashes read as underscores
    assert settings.synchronous_commit is False
    assert settings.schedule == {"nightly": {"job": "myapp.jobs.Nightly", "cron": "0 3 * * *"}}
    assert settings.config_file == str(path)


def test_a_file_without_the_section_gives_the_defaults(tmp_path: Path) -> None:
    path = pyproject(tmp_path, '[project]\nname = "app"\n')
    assert load_settings(path, environ={}) == Settings(config_file=str(path))


def test_environment_overrides_the_file_and_flags_override_both(tmp_path: Path) -> None:
    path = pyproject(tmp_path, '[tool.corequeue]\nmax_processes = 3\nqueues = ["a"]\n')
    env = {"COREQUEUE_MAX_PROCESSES": "5", "COREQUEUE_QUEUES": "b, c", "COREQUEUE_RETENTION": ""}
    settings = load_settings(path, environ=env)
    assert settings.max_processes == 5
    assert settings.queues == ("b", "c")  # comma-separated in the environment
    assert settings.retention == Settings().retention  # an empty variable is not set

    flagged = load_settings(path, environ=env, overrides={"max_processes": 7, "queues": ["d"]})
    assert (flagged.max_processes, flagged.queues) == (7, ("d",))


def test_flags_left_unset_do_not_override(tmp_path: Path) -> None:
    path = pyproject(tmp_path, '[tool.corequeue]\nmax_processes = 3\nimports = ["x"]\n')
    settings = load_settings(
        path, environ={}, overrides={"max_processes": None, "imports": [], "stats_every": "5s"}
    )
    assert (settings.max_processes, settings.imports, settings.stats_every) == (3, ("x",), 5.0)


def test_the_environment_names_each_setting(tmp_path: Path) -> None:
    path = pyproject(tmp_path, "")
    env = {
        "COREQUEUE_DATABASE_URL": " postgresql+psycopg://env@db/x ",
        "COREQUEUE_HEARTBEAT_TIMEOUT": "2m",
        "COREQUEUE_SYNCHRONOUS_COMMIT": "off",
        "COREQUEUE_MAX_JOBS_PER_PROCESS": "0",
    }
    settings = load_settings(path, environ=env)
    assert settings.database_url == "postgresql+psycopg://env@db/x"
    assert settings.heartbeat_timeout == 120.0
    assert settings.synchronous_commit is False
    assert settings.max_jobs_per_process == 0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("7d", 7 * 86400.0),
        ("12h", 43200.0),
        ("15m", 900.0),
        ("30s", 30.0),
        ("250ms", 0.25),
        ("2w", 14 * 86400.0),
        ("1.5h", 5400.0),
        (" 45 ", 45.0),
        (90, 90.0),
        (0.5, 0.5),
    ],
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text, key="retention", source="test") == seconds


@pytest.mark.parametrize("text", ["7 days", "d", "-1", "1y", "", True])
def test_bad_durations_say_what_to_write(text: object) -> None:
    with pytest.raises(
        ConfigError, match=r"retention = .* \(test\) is not a duration: use seconds"
    ):
        parse_duration(text, key="retention", source="test")


def test_a_negative_number_of_seconds_is_refused() -> None:
    with pytest.raises(ConfigError, match="must not be negative"):
        parse_duration(-5, key="grace_period", source="test")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "max_processes = 0",
            r"max_processes = 0 \(\[tool.corequeue\] in .*\) must be an integer >= 1",
        ),
        ('max_processes = "many"', r"max_processes = 'many' .* must be an integer"),
        ("max_processes = 2.5", r"must be an integer >= 1"),
        ("max_jobs_per_process = -1", r"must be an integer >= 0"),
        ('retention = "soon"', r"retention = 'soon' .* is not a duration"),
        ('synchronous_commit = "maybe"', r"must be on or off"),
        ("queues = [1, 2]", r"queues = \[1, 2\] .* must be a list of strings"),
        ('database_url = "  "', r"database_url = .* must be a URL string"),
        ("schedule = 3", r"schedule .* must be tables"),
        ("workers = 3", r"unknown setting 'workers' in \[tool.corequeue\] .*; known settings: "),
    ],
)
def test_bad_values_in_the_file_name_the_key_and_the_file(
    tmp_path: Path, body: str, message: str
) -> None:
    path = pyproject(tmp_path, f"[tool.corequeue]\n{body}\n")
    with pytest.raises(ConfigError, match=message):
        load_settings(path, environ={})


def test_bad_values_name_the_environment_variable_or_the_flag(tmp_path: Path) -> None:
    path = pyproject(tmp_path, "")
    with pytest.raises(ConfigError, match=r"\(environment COREQUEUE_MAX_PROCESSES\)"):
        load_settings(path, environ={"COREQUEUE_MAX_PROCESSES": "lots"})
    with pytest.raises(ConfigError, match=r"heartbeat_interval = 'x' \(--heartbeat-interval\)"):
        load_settings(path, environ={}, overrides={"heartbeat_interval": "x"})


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    path = pyproject(tmp_path, "[tool.corequeue\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(path, environ={})


def test_a_named_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml", environ={})


def test_find_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config_file() is None
    path = pyproject(tmp_path, "")
    assert find_config_file() == tmp_path / "pyproject.toml"
    assert find_config_file(path) == path
