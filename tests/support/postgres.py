"""A throwaway PostgreSQL server for the tests that run Dagster's instance and DuckLake's catalog on
a real one (tests/deploy/test_dagster_postgres.py, the DuckLake tests of tests/warehouse/ and the
crash trials).

`server()` returns the server of this test process: the one named by $FORECAST_TEST_PG (a URL
`postgresql://<user>:<password>@127.0.0.1:<port>/postgres`, which `.ci/run` sets after starting one with
`python -m tests.support.postgres start DIR`), else one started here for the session and stopped at
exit, else it skips the test (no PostgreSQL binaries: `apt-get install postgresql-15`).

A server started here lives in a fresh temporary directory, listens on a free loopback port only
(no Unix socket), requires a password (scram-sha-256) and runs as an unprivileged user: PostgreSQL
refuses to run as root, so as root it runs as `nobody`. It is a scratch server: fsync and
synchronous commit are off.

    python -m tests.support.postgres start DIR   # prints the URL, also written to DIR/url
    python -m tests.support.postgres stop DIR
"""

from __future__ import annotations

import atexit
import dataclasses
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ENV_VAR = "FORECAST_TEST_PG"
UNPRIVILEGED = "nobody"
USER = "forecast"


@dataclasses.dataclass(frozen=True)
class Server:
    host: str
    port: int
    user: str
    password: str

    @classmethod
    def from_url(cls, url: str) -> Server:
        u = urllib.parse.urlsplit(url)
        return cls(u.hostname or "127.0.0.1", u.port or 5432, u.username or USER, u.password or "")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{dbname}"

    def libpq(self, dbname: str) -> str:
        """A libpq connection string without the password (PGPASSWORD carries it)."""
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def env(self, dbname: str) -> dict[str, str]:
        """The environment the instance (deploy/postgres/dagster.yaml) and libpq read."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": dbname,
            "PGPASSWORD": self.password,
        }

    def connect(self, dbname: str = "postgres"):
        import psycopg2

        return psycopg2.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=dbname
        )

    def create_database(self, prefix: str) -> str:
        """A new, empty database named `prefix` plus a random suffix; returns its name."""
        name = f"{prefix}_{secrets.token_hex(4)}"
        con = self.connect()
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            con.close()
        return name


def bindir() -> Path | None:
    """Where initdb, pg_ctl and postgres are (Debian's layout, then PATH), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user() -> dict:
    """Popen arguments that drop root to an unprivileged user (nothing to do otherwise)."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(UNPRIVILEGED)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def start(directory: Path | None = None, timeout_s: float = 60.0) -> tuple[Server, Path]:
    """initdb and start a server in `directory` (default: a new temporary one)."""
    bins = bindir()
    if bins is None:
        raise FileNotFoundError("no PostgreSQL binaries (initdb): apt-get install -y postgresql-15")
    directory = Path(directory or tempfile.mkdtemp(prefix="forecast-pg-"))
    directory.mkdir(parents=True, exist_ok=True)
    password = secrets.token_hex(12)
    (directory / "pwfile").write_text(password + "\n")
    drop = _as_user()
    if drop:
        os.chmod(directory, 0o700)
        os.chown(directory, drop["user"], drop["group"])
        os.chown(directory / "pwfile", drop["user"], drop["group"])
    data = directory / "data"
    subprocess.run(
        [bins / "initdb", "-D", data, "-U", USER, "--auth=scram-sha-256", f"--pwfile={directory / 'pwfile'}",
         "-E", "UTF8", "--locale=C", "--no-sync"],
        check=True, capture_output=True, cwd=directory, **drop,
    )  # fmt: skip
    port = _free_port()
    log = open(directory / "postgres.log", "ab")  # noqa: SIM115 - the server's lifetime
    proc = subprocess.Popen(
        [bins / "postgres", "-D", data, "-h", "127.0.0.1", "-p", str(port), "-k", "",
         "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
         "-c", "max_connections=200"],
        stdout=log, stderr=subprocess.STDOUT, cwd=directory, start_new_session=True, **drop,
    )  # fmt: skip
    (directory / "pid").write_text(str(proc.pid))
    server = Server("127.0.0.1", port, USER, password)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            server.connect().close()
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(
                    f"PostgreSQL did not start: {(directory / 'postgres.log').read_text()[-2000:]}"
                ) from None
            time.sleep(0.2)
    (directory / "url").write_text(server.url() + "\n")
    return server, directory


def stop(directory: Path) -> None:
    """Stop the server started in `directory` (a fast shutdown) and remove the directory."""
    pid_file = directory / "pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        try:
            os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
            for _ in range(300):
                os.kill(pid, 0)
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(directory, ignore_errors=True)


_SERVER: Server | None = None


def server() -> Server:
    """This process's server ($FORECAST_TEST_PG, else one started now); skips without binaries."""
    global _SERVER
    if _SERVER is None:
        url = os.environ.get(ENV_VAR)
        if url:
            _SERVER = Server.from_url(url)
        else:
            if bindir() is None:
                import pytest

                pytest.skip(f"no PostgreSQL: set ${ENV_VAR} or apt-get install -y postgresql-15")
            _SERVER, directory = start()
            atexit.register(stop, directory)
    return _SERVER


def main(argv: list[str]) -> None:
    command, directory = argv[0], Path(argv[1])
    if command == "start":
        server_, _ = start(directory)
        print(server_.url())
    elif command == "stop":
        stop(directory)
    else:
        raise SystemExit("usage: python -m tests.support.postgres start|stop DIR")


if __name__ == "__main__":
    main(sys.argv[1:])
