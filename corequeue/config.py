"""Settings: defaults < [tool.corequeue] in pyproject.toml < COREQUEUE_* environment < flags."""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from corequeue.core import shares
from corequeue.core.errors import ConfigError

#: The database when none is configured: SQLite, a file in the working directory.
DEFAULT_DATABASE_URL = "sqlite:///corequeue.sqlite3"


@dataclass(frozen=True)
class Settings:
    """The worker's and the commands' settings: the one place their defaults are defined (the
    command-line flags leave them unset, and their help reads them from here)."""

    database_url: str = DEFAULT_DATABASE_URL
    imports: tuple[str, ...] = ()
    #: Queues to serve (empty: every queue), each ``NAME`` or ``NAME=K`` (a share: at most K
    #: children on that queue, corequeue.core.shares).
    queues: tuple[str, ...] = ()
    middleware: tuple[str, ...] = ()
    #: Lifecycle hooks to load (corequeue.hooks.load): modules, or "EVENT:module.function".
    hooks: tuple[str, ...] = ()
    retention: float = 7 * 86400.0  # seconds finished jobs are kept
    max_processes: int = 2
    max_jobs_per_process: int = 0  # 0: children are never recycled
    max_pending_per_process: int = 1000  # an upper bound: see executor.sizing.QUEUED_SECONDS
    #: Async jobs (``async def run``) in flight at once in each child, on its event loop.
    concurrency: int = 500
    #: Sync jobs in flight at once in each child (1: one at a time, on the child's main thread;
    #: more: a thread pool, for sync code that waits on I/O).
    threads: int = 1
    stats_every: float = 60.0
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 60.0
    grace_period: float = 30.0
    poll_interval: float = 1.0
    #: Attempts lost in a row with their worker (killed, cut off) before a job fails as a crash
    #: loop; a job class's own ``max_worker_losses`` wins.
    max_worker_losses: int = 3
    #: Deferrals without using an attempt before a job fails as deferring forever.
    max_deferrals: int = 100
    #: Seconds a job whose name no worker can resolve waits (since enqueued) before it fails.
    unknown_job_timeout: float = 3600.0
    #: PostgreSQL: whether the worker's own commits (claims, results, heartbeats) wait for the
    #: WAL flush. Enqueues never change: they commit in the application's transaction.
    synchronous_commit: bool = True
    schedule: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: [tool.corequeue.queue.NAME] tables: concurrency_limit, rate_limit (corequeue.flow).
    queue: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    config_file: str | None = None

    @property
    def queue_names(self) -> tuple[str, ...]:
        """The names of :attr:`queues`, without their shares (empty: every queue)."""
        return shares.split(self.queues)[0]

    @property
    def shares(self) -> dict[str, int]:
        """The queues given a share (``NAME=K``): name -> K, the most children on it."""
        return shares.split(self.queues)[1]


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, None: 1}


#: The longest duration any setting takes (100 years): beyond it, dates overflow.
MAX_DURATION = 100 * 365.25 * 86400


def parse_duration(value: Any, *, key: str, source: str) -> float:
    """Seconds from a number or text like ``"7d"``, ``"12h"``, ``"30s"``. Raises ConfigError
    for anything else, a negative or non-finite value, and one over 100 years."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ConfigError(
                f"{key} = {value!r:.80} ({source}) is not a duration: use seconds or text like "
                "'30s', '15m', '12h', '7d'"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise ConfigError(f"{key} = {value!r:.80} ({source}) must not be negative")
    if not seconds <= MAX_DURATION:  # also NaN
        raise ConfigError(
            f"{key} = {value!r:.80} ({source}) must be a finite duration of at most 100 years"
        )
    return seconds


_DURATIONS = {
    "retention",
    "stats_every",
    "heartbeat_interval",
    "heartbeat_timeout",
    "grace_period",
    "poll_interval",
    "unknown_job_timeout",
}
_INTS = {
    "max_processes",
    "max_jobs_per_process",
    "max_pending_per_process",
    "concurrency",
    "threads",
    "max_worker_losses",
    "max_deferrals",
}
_LISTS = {"imports", "queues", "middleware", "hooks"}
#: Durations for which zero makes no sense (a busy loop, or a worker rescued as it starts).
_POSITIVE = {"stats_every", "heartbeat_interval", "heartbeat_timeout", "poll_interval"}
#: The largest value of any integer setting (max_processes has a tighter bound at start-up:
#: :func:`check_max_processes`).
MAX_INT = 1_000_000_000


_BOOLS = {"synchronous_commit"}
_TRUE = {"1", "true", "on", "yes"}
_FALSE = {"0", "false", "off", "no"}


def coerce(key: str, value: Any, source: str) -> Any:
    """One setting's value, converted and checked. Raises ConfigError naming key and source."""
    if key in _BOOLS:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ConfigError(f"{key} = {value!r} ({source}) must be on or off (true or false)")
    if key in _DURATIONS:
        seconds = parse_duration(value, key=key, source=source)
        if seconds == 0 and key in _POSITIVE:
            raise ConfigError(f"{key} = {value!r} ({source}) must be more than zero")
        return seconds
    if key in _INTS:
        return _coerce_int(key, value, source)
    if key in _LISTS:
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()]
        elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            items = list(value)
        else:
            raise ConfigError(f"{key} = {value!r} ({source}) must be a list of strings")
        return tuple(items)
    if key == "database_url":
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"database_url = {value!r} ({source}) must be a URL string")
        return value.strip()
    if key in ("schedule", "queue"):
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ConfigError(f"{key} ({source}) must be tables: [tool.corequeue.{key}.NAME]")
        return value
    raise ConfigError(f"unknown setting {key!r} ({source})")


def _coerce_int(key: str, value: Any, source: str) -> int:
    minimum = 1 if key != "max_jobs_per_process" else 0
    try:
        if isinstance(value, float):  # 2.0 and 1e9 alike: a count is written as an integer
            raise ValueError
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{key} = {value!r:.80} ({source}) must be an integer >= {minimum}"
        ) from None
    if number < minimum or isinstance(value, bool):
        raise ConfigError(f"{key} = {value!r} ({source}) must be an integer >= {minimum}")
    if number > MAX_INT:
        raise ConfigError(f"{key} = {value!r:.80} ({source}) must be at most {MAX_INT}")
    return number


def check_max_processes(settings: Settings, *, force: bool = False) -> None:
    """Refuse more child processes than 4 per CPU, unless ``force``: a typo must not start
    thousands of processes. Raises ConfigError."""
    cpus = os.cpu_count() or 1
    if settings.max_processes > 4 * cpus and not force:
        raise ConfigError(
            f"max_processes = {settings.max_processes} is more than 4 per CPU ({cpus} CPUs "
            f"here, so at most {4 * cpus}): lower it, or pass --force to start that many"
        )


def _check_heartbeat(settings: Settings) -> None:
    if settings.heartbeat_timeout <= settings.heartbeat_interval:
        raise ConfigError(
            f"heartbeat_timeout ({settings.heartbeat_timeout:g}s) must be longer than "
            f"heartbeat_interval ({settings.heartbeat_interval:g}s), or live workers would be "
            "taken for dead"
        )


_KEYS = {f.name for f in fields(Settings)} - {"config_file"}


def find_config_file(path: str | os.PathLike[str] | None = None) -> Path | None:
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"configuration file {str(p)!r} does not exist")
        return p
    candidate = Path.cwd() / "pyproject.toml"
    return candidate if candidate.is_file() else None


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Settings from the configuration file, the environment and ``overrides`` (flags, whose
    None values are ignored). Raises ConfigError naming the bad key and where it came from."""
    settings = Settings()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = find_config_file(config_file)
    if path is not None:
        section = _read_section(path)
        source = f"[tool.corequeue] in {path}"
        for key, value in section.items():
            norm = key.replace("-", "_")
            if norm not in _KEYS:
                raise ConfigError(
                    f"unknown setting {key!r} in {source}; known settings: "
                    + ", ".join(sorted(_KEYS))
                )
            values[norm] = coerce(norm, value, source)
            sources[norm] = source
        settings = replace(settings, config_file=str(path))
    env = os.environ if environ is None else environ
    for key in sorted(_KEYS - {"schedule", "queue"}):
        name = f"COREQUEUE_{key.upper()}"
        if name in env and env[name] != "":
            values[key] = coerce(key, env[name], f"environment {name}")
            sources[key] = f"environment {name}"
    for key, value in (overrides or {}).items():
        if value is None or (key in _LISTS and not value):
            continue
        sources[key] = "--queue" if key == "queues" else f"--{key.replace('_', '-')}"
        values[key] = coerce(key, value, sources[key])
    settings = replace(settings, **values)
    _check_heartbeat(settings)
    return _check_queues(settings, sources.get("queues", "--queue"))


def _check_queues(settings: Settings, source: str) -> Settings:
    """``settings`` with its queues written ``NAME`` or ``NAME=K``, each named once, each K a
    number of children from 1 to max_processes. Raises ConfigError naming the queue as it was
    given (``source``: the flag, the environment variable or the file) and what to write."""
    flag = source == "--queue"
    most = settings.max_processes
    canonical: list[str] = []
    seen: set[str] = set()
    for item in settings.queues:
        cap: int | None
        try:
            name, cap = shares.parse(item)
        except shares.ShareError:
            name, cap = item.partition("=")[0].strip(), 0
        given = f"--queue {item}" if flag else f"queues item {item!r} ({source})"
        if name in seen:
            raise ConfigError(f"{given}: queue {name!r} is already named; name it once")
        if not name:
            raise ConfigError(f"{given}: a queue is written NAME or NAME=K (K children at most)")
        if cap is not None and not shares.fits(cap, most):
            bound = f"--max-processes ({most})" if flag else f"max_processes ({most})"
            fixed = shares.written(name, shares.nearest(cap, most))
            fix = f"--queue {fixed} or --queue {name}" if flag else f"{fixed!r} or {name!r}"
            raise ConfigError(
                f"{given}: a queue's share is a number of children from 1 to {bound}; write {fix}"
            )
        seen.add(name)
        canonical.append(shares.written(name, cap))
    return replace(settings, queues=tuple(canonical))


def _read_section(path: Path) -> Mapping[str, Any]:
    """The [tool.corequeue] table of the TOML file at ``path`` (empty when absent)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    tool = data.get("tool", {})
    section = tool.get("corequeue", {}) if isinstance(tool, dict) else {}
    if not isinstance(tool, dict) or not isinstance(section, dict):
        raise ConfigError(f"[tool.corequeue] in {path} must be a table of settings")
    return section
