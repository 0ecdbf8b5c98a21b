"""corequeue.config: defaults < [tool.corequeue] in pyproject.toml < COREQUEUE_* < flags.

Pure and fast: files in tmp_path, the environment passed in as a mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from corequeue.config import (
    DEFAULT_DATABASE_URL,
    Settings,
    check_max_processes,
    find_config_file,
    load_settings,
    parse_duration,
)
from corequeue.core.errors import ConfigError


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


# -- issue 18: absurd settings, refused with one line naming the key and where it came from --


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("retention = nan", r"retention = nan .* must be a finite duration of at most 100 years"),
        ("heartbeat_timeout = inf", r"heartbeat_timeout = inf .* must be a finite duration"),
        ("grace_period = -inf", r"grace_period = -inf .* must not be negative"),
        ('retention = "99999999999d"', r"retention = '99999999999d' .* at most 100 years"),
        ("stats_every = 1e400", r"stats_every = inf .* must be a finite duration"),
        (
            "poll_interval = 0",
            r"poll_interval = 0 \(\[tool.corequeue\] .*\) must be more than zero",
        ),
        ('heartbeat_interval = "0s"', r"heartbeat_interval = '0s' .* must be more than zero"),
        ("heartbeat_timeout = 0", r"heartbeat_timeout = 0 .* must be more than zero"),
        ("stats_every = 0.0", r"stats_every = 0.0 .* must be more than zero"),
        ("max_processes = 1e9", r"max_processes = 1000000000.0 .* must be an integer >= 1"),
        ("max_processes = 2.0", r"max_processes = 2.0 .* must be an integer >= 1"),
        ("max_processes = true", r"max_processes = True .* must be an integer >= 1"),
        ("max_pending_per_process = 10_000_000_000", r"must be at most 1000000000"),
        (
            "heartbeat_interval = 10\nheartbeat_timeout = 5",
            r"heartbeat_timeout \(5s\) must be longer than heartbeat_interval \(10s\)",
        ),
    ],
)
def test_absurd_values_are_refused(tmp_path: Path, body: str, message: str) -> None:
    path = pyproject(tmp_path, f"[tool.corequeue]\n{body}\n")
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(path, environ={})
    assert "\n" not in str(info.value)


def test_zero_stays_allowed_where_it_means_something(tmp_path: Path) -> None:
    path = pyproject(tmp_path, "[tool.corequeue]\nretention = 0\ngrace_period = 0\n")
    settings = load_settings(path, environ={})
    assert (settings.retention, settings.grace_period) == (0.0, 0.0)


def test_absurd_values_from_the_environment_and_flags(tmp_path: Path) -> None:
    path = pyproject(tmp_path, "")
    with pytest.raises(ConfigError, match=r"\(environment COREQUEUE_MAX_PROCESSES\) must be"):
        load_settings(path, environ={"COREQUEUE_MAX_PROCESSES": "1e9"})
    with pytest.raises(ConfigError, match=r"poll_interval = '0' \(--poll-interval\) must be more"):
        load_settings(path, environ={}, overrides={"poll_interval": "0"})


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"[tool.corequeue]\nqueues = ['\xff\xfe']\n", r"is not UTF-8 text"),
        (b"[tool]\ncorequeue = 5\n", r"\[tool.corequeue\] in .* must be a table of settings"),
        (b"tool = 5\n", r"\[tool.corequeue\] in .* must be a table of settings"),
        (b'tool = "x"\n', r"must be a table of settings"),
    ],
)
def test_a_malformed_file_is_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        load_settings(path, environ={})


def test_max_processes_is_bounded_by_the_cpus_unless_forced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    check_max_processes(Settings(max_processes=8))
    with pytest.raises(ConfigError) as info:
        check_max_processes(Settings(max_processes=9))
    assert str(info.value) == (
        "max_processes = 9 is more than 4 per CPU (2 CPUs here, so at most 8): lower it, "
        "or pass --force to start that many"
    )
    check_max_processes(Settings(max_processes=100_000), force=True)


def test_queue_shares_from_the_file_the_environment_and_the_flags(tmp_path: Path) -> None:
    path = pyproject(
        tmp_path, '[tool.corequeue]\nmax_processes = 3\nqueues = ["mail=2", "default"]\n'
    )
    from_file = load_settings(path, environ={})
    assert from_file.queues == ("mail=2", "default")
    assert (from_file.queue_names, from_file.shares) == (("mail", "default"), {"mail": 2})
    from_env = load_settings(path, environ={"COREQUEUE_QUEUES": "flood = 1, other"})
    assert (from_env.queue_names, from_env.shares) == (("flood", "other"), {"flood": 1})
    flagged = load_settings(path, environ={}, overrides={"queues": ["a=3", "b"]})
    assert (flagged.queues, flagged.shares) == (("a=3", "b"), {"a": 3})
    assert load_settings(path, environ={}, overrides={"queues": ["a"]}).shares == {}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"queues": ["mail=0"]},
            "--queue mail=0: a queue's share is a number of children from 1 to "
            "--max-processes (2); write --queue mail=1 or --queue mail",
        ),
        (
            {"queues": ["mail=3"]},
            "--queue mail=3: a queue's share is a number of children from 1 to "
            "--max-processes (2); write --queue mail=2 or --queue mail",
        ),
        ({"queues": ["mail=3"], "max_processes": 3}, None),
        ({"queues": ["mail=two"]}, "--queue mail=two: a queue's share is a number of children"),
        ({"queues": ["=2"]}, "--queue =2: a queue is written NAME or NAME=K"),
        ({"queues": ["mail=1", "mail"]}, "--queue mail: queue 'mail' is already named"),
    ],
)
def test_a_bad_queue_share_is_one_line_saying_what_to_write(
    tmp_path: Path, overrides: dict[str, object], message: str | None
) -> None:
    path = pyproject(tmp_path, "")
    if message is None:
        assert load_settings(path, environ={}, overrides=overrides).shares == {"mail": 3}
        return
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={}, overrides=overrides)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_a_bad_queue_share_in_the_file_or_the_environment_names_where_it_came_from(
    tmp_path: Path,
) -> None:
    path = pyproject(tmp_path, '[tool.corequeue]\nqueues = ["mail=5"]\n')
    with pytest.raises(
        ConfigError,
        match=r"queues item 'mail=5' \(\[tool.corequeue\] in .*\): "
        r".* to max_processes \(2\); write 'mail=2' or 'mail'",
    ):
        load_settings(path, environ={})
    with pytest.raises(ConfigError, match=r"queues item 'mail=0' \(environment COREQUEUE_QUEUES\)"):
        load_settings(pyproject(tmp_path, ""), environ={"COREQUEUE_QUEUES": "mail=0"})
