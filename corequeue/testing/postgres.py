"""Finding a PostgreSQL server for tests, and throwaway databases on it.

In order: an explicit URL (``--corequeue-postgres-url`` or ``COREQUEUE_TEST_DATABASE_URL``);
the default local server (:data:`DEFAULT_LOCAL_URL`) when it answers; a testcontainers
PostgreSQL when a Docker engine answers; a throwaway cluster started from the local PostgreSQL
binaries (``initdb``/``pg_ctl``; as root, it runs as the ``postgres`` user or ``nobody``);
otherwise :class:`PostgresNotFound`, whose message says what to install or set.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ENV_URL = "COREQUEUE_TEST_DATABASE_URL"

#: Tried after an explicit URL: a local server whose ``postgres`` user may create databases.
DEFAULT_LOCAL_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

HOW_TO = (
    f"set {ENV_URL}=postgresql://USER@HOST:PORT/DBNAME (or pass --corequeue-postgres-url) to "
    "use a server you run (a local one at 127.0.0.1:5432 whose postgres user may create "
    "databases is found by itself); or start a Docker engine with "
    "`pip install 'testcontainers[postgres]'`; or install the PostgreSQL server binaries "
    "(initdb and pg_ctl, e.g. `apt install "
    "postgresql` or `brew install postgresql`); or run these tests on SQLite with "
    "--corequeue-db=sqlite"
)


class PostgresNotFound(Exception):
    """No PostgreSQL server could be found or started for the tests."""


@dataclass
class PostgresServer:
    """A server the tests may create databases on; ``close()`` stops it if we started it."""

    admin_url: str  # a URL whose user may CREATE DATABASE
    origin: str  # "url", "testcontainers" or "local binaries"
    _close: list[object] = field(default_factory=list, repr=False)

    def close(self) -> None:
        while self._close:
            closer = self._close.pop()
            with contextlib.suppress(Exception):
                closer()  # type: ignore[operator]

    def create_database(self) -> str:
        """Create an empty database on the server. Returns its URL."""
        from corequeue.store import servers

        return servers.create_database(self.admin_url)

    def drop_database(self, url: str) -> None:
        from corequeue.store import servers

        servers.drop_database(self.admin_url, url)


def find_postgres(explicit_url: str | None = None) -> PostgresServer:
    """A PostgreSQL server for tests (see the module docstring for the order).

    Raises PostgresNotFound with what to do when there is none.
    """
    _require_psycopg()
    url = explicit_url or os.environ.get(ENV_URL)
    if url:
        _check_reachable(url)
        return PostgresServer(url, "url")
    tried: list[str] = []
    failure = _unreachable(DEFAULT_LOCAL_URL)
    if failure is None:
        return PostgresServer(DEFAULT_LOCAL_URL, "default local URL")
    tried.append(f"no server answered at {_hidden(DEFAULT_LOCAL_URL)} ({failure})")
    server = _from_testcontainers(tried)
    if server is not None:
        return server
    server = _from_local_binaries(tried)
    if server is not None:
        return server
    raise PostgresNotFound(
        "no PostgreSQL server for corequeue's test fixtures (" + "; ".join(tried) + f"): {HOW_TO}"
    )


def _require_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise PostgresNotFound(
            "PostgreSQL tests need psycopg 3: pip install 'corequeue[postgres]' (or run these "
            "tests on SQLite with --corequeue-db=sqlite)"
        ) from None


def _check_reachable(url: str) -> None:
    failure = _unreachable(url)
    if failure is not None:
        raise PostgresNotFound(
            f"PostgreSQL is not reachable at {_hidden(url)} "
            f"({failure}): start it, or fix --corequeue-postgres-url / {ENV_URL}"
        )


def _unreachable(url: str) -> str | None:
    from corequeue.store import servers

    return servers.unreachable(url)


def _hidden(url: str) -> str:
    from corequeue.store.engine import normalize_url

    return normalize_url(url).render_as_string(hide_password=True)


# -- testcontainers --------------------------------------------------------------------------


def _docker_socket() -> str | None:
    """The Docker engine's Unix socket, if it has one (None: not found, or DOCKER_HOST is
    not a unix:// address)."""
    host = os.environ.get("DOCKER_HOST", "")
    if host:
        return host.removeprefix("unix://") if host.startswith("unix://") else None
    for path in ("/var/run/docker.sock", os.path.expanduser("~/.docker/run/docker.sock")):
        if os.path.exists(path):
            return path
    return None


def _docker_answers() -> bool:
    """Whether a Docker engine answers a ping (within a few seconds)."""
    host = os.environ.get("DOCKER_HOST", "")
    path = _docker_socket()
    if path is not None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(3)
                sock.connect(path)
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                head = sock.recv(64)
            return head.startswith(b"HTTP/1.") and b" 200 " in head
        except OSError:
            return False
    if not host:
        return False
    try:
        docker = importlib.import_module("docker")
    except ImportError:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env(timeout=3)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False


def _from_testcontainers(tried: list[str]) -> PostgresServer | None:
    if importlib.util.find_spec("testcontainers") is None:
        tried.append("testcontainers is not installed")
        return None
    if not _docker_answers():
        tried.append("no Docker engine answered")
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its modules moved between releases, with warnings
        try:
            module = importlib.import_module("testcontainers.community.postgres")
        except ImportError:
            module = importlib.import_module("testcontainers.postgres")
    PostgresContainer = module.PostgresContainer
    image = os.environ.get("COREQUEUE_TEST_POSTGRES_IMAGE", "postgres:16-alpine")
    container = PostgresContainer(image, driver="psycopg")
    try:
        container.start()
    except Exception as exc:
        tried.append(f"testcontainers could not start {image}: {exc}")
        with contextlib.suppress(Exception):
            container.stop()
        return None
    url = str(container.get_connection_url())
    return PostgresServer(url, "testcontainers", [container.stop])


# -- local binaries --------------------------------------------------------------------------

BINARY_DIRS = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/usr/pgsql-*/bin",  # RHEL, Fedora (PGDG)
    "/usr/local/pgsql/bin",
    "/opt/homebrew/opt/postgresql*/bin",
    "/usr/local/opt/postgresql*/bin",
    "/Applications/Postgres.app/Contents/Versions/*/bin",
)


def find_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl (newest version first), or None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    candidates: list[str] = []
    for pattern in BINARY_DIRS:
        candidates += glob.glob(pattern)
    candidates.sort(key=_version_key, reverse=True)
    for directory in candidates:
        path = Path(directory)
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    return None


def _version_key(path: str) -> tuple[int, ...]:
    digits = "".join(c if c.isdigit() else " " for c in path).split()
    return tuple(int(d) for d in digits)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> str | None:
    """The user to run the server as: None when we are not root (the server refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise PostgresNotFound(
        "running as root, and there is no 'postgres' or 'nobody' user to start a throwaway "
        f"PostgreSQL cluster as: {HOW_TO}"
    )


def _command(argv: Sequence[str], user: str | None) -> list[str]:
    if user is None:
        return list(argv)
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", user, "--", *argv]
    setpriv = shutil.which("setpriv")
    if setpriv:
        entry = pwd.getpwnam(user)
        return [
            setpriv,
            f"--reuid={entry.pw_uid}",
            f"--regid={entry.pw_gid}",
            "--init-groups",
            *argv,
        ]
    raise PostgresNotFound(
        f"running as root, and neither runuser nor setpriv is available to start PostgreSQL as "
        f"{user!r}: {HOW_TO}"
    )


def _from_local_binaries(tried: list[str]) -> PostgresServer | None:
    bindir = find_binaries()
    if bindir is None:
        tried.append("no initdb/pg_ctl found on PATH or under " + ", ".join(BINARY_DIRS[:2]))
        return None
    user = _run_as()
    base = _scratch_dir(user)
    data, sockets, log = base / "data", base / "sockets", base / "server.log"
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    try:
        _initdb(bindir, data, user, env, base)
        port = _free_port()
        _pg_ctl_start(bindir, data, log, port, sockets, user, env, base)
    except PostgresNotFound as exc:
        tried.append(str(exc))
        shutil.rmtree(base, ignore_errors=True)
        return None

    def stop() -> None:
        subprocess.run(
            _command(
                [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"], user
            ),
            env=env,
            cwd=base,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)

    url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    return PostgresServer(url, f"local binaries in {bindir}", [stop])


def _scratch_dir(user: str | None) -> Path:
    """A fresh directory for the server (its ``sockets`` folder made), owned by ``user``."""
    base = Path(tempfile.mkdtemp(prefix="corequeue-pg-"))
    sockets = base / "sockets"
    sockets.mkdir()
    if user is not None:
        entry = pwd.getpwnam(user)
        for path in (base, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        base.chmod(0o700)
    return base


def _initdb(bindir: Path, data: Path, user: str | None, env: dict[str, str], cwd: Path) -> None:
    argv = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
    argv += ["-E", "UTF8", "--no-sync", "--no-instructions"]
    _check_call(_command(argv, user), env, cwd)


def _pg_ctl_start(
    bindir: Path,
    data: Path,
    log: Path,
    port: int,
    sockets: Path,
    user: str | None,
    env: dict[str, str],
    cwd: Path,
) -> None:
    options = (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    argv = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options]
    argv += ["-w", "-t", "60", "start"]
    _check_call(_command(argv, user), env, cwd)


def _check_call(argv: list[str], env: dict[str, str], cwd: Path) -> None:
    try:
        done = subprocess.run(
            argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostgresNotFound(f"{Path(argv[0]).name} failed: {exc}") from None
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise PostgresNotFound(
            f"`{' '.join(argv)}` exited with {done.returncode}: {' / '.join(output)}"
        )


@contextlib.contextmanager
def postgres_server(explicit_url: str | None = None) -> Iterator[PostgresServer]:
    """:func:`find_postgres` as a context manager that stops what it started."""
    server = find_postgres(explicit_url)
    try:
        yield server
    finally:
        server.close()
