"""Debian's PostgreSQL, started by the tests on a free loopback port in a temporary folder, as Redis is."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from testkit.processes import free_port

__all__ = ["PostgresServer", "postgres_bin", "running"]

USER = "doppelbot"  # the superuser initdb makes; a password is set so that tests can check it never leaks


def _version(binary: str) -> tuple[int, ...]:
    """`/usr/lib/postgresql/15/bin/postgres` -> (15,), so that 15 sorts after 9.6."""
    return tuple(int(part) for part in Path(binary).parts[-3].split(".") if part.isdigit())


def postgres_bin() -> Path:
    """The folder of Debian's newest installed PostgreSQL (`/usr/lib/postgresql/<version>/bin`)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_version)
    if found:
        return Path(found[-1]).parent
    if on_path := shutil.which("postgres"):
        return Path(on_path).parent
    raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql")


def _owner() -> str | None:
    """Whom the server runs as: PostgreSQL refuses root, so as root it runs as Debian's `postgres` user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        raise RuntimeError("PostgreSQL will not run as root and there is no `postgres` user to run it") from None


class PostgresServer:
    """One `postgres` process with its own data folder; `url` points at it; `stop()` and `start()` as Redis's."""

    def __init__(self) -> None:
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.url = self.database_url("postgres")
        self.owner = _owner()
        self.root = Path(tempfile.mkdtemp(prefix="doppelbot-pg-"))
        self.data = self.root / "data"
        self.proc: subprocess.Popen | None = None
        self._databases = 0

    def database_url(self, name: str) -> str:
        """The SQLAlchemy URL of database `name` on this server, password included."""
        return f"postgresql+psycopg://{USER}:{self.password}@127.0.0.1:{self.port}/{name}"

    def _run_as_owner(self, command: list[str], **kwargs) -> subprocess.Popen:
        # Popen's `user=` drops root in the child itself: no su or runuser, whose PAM setup varies by image.
        if self.owner is not None:
            kwargs.update(user=self.owner, group=pwd.getpwnam(self.owner).pw_gid, extra_groups=[])
        return subprocess.Popen(command, cwd=self.root, **kwargs)

    def _initdb(self) -> None:
        if self.owner is not None:
            shutil.chown(self.root, self.owner)
        password_file = self.root / "password"
        password_file.write_text(self.password)
        if self.owner is not None:
            shutil.chown(password_file, self.owner)
        command = [str(postgres_bin() / "initdb"), "-D", str(self.data), "-U", USER, f"--pwfile={password_file}"]
        command += ["--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync"]
        proc = self._run_as_owner(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output, _ = proc.communicate(timeout=120)
        password_file.unlink()
        if proc.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{output}")

    def start(self, timeout: float = 30.0) -> None:
        if not self.data.exists():
            self._initdb()
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.root),
            # A throwaway server: durability costs time and nothing here needs it.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "40",
            "shared_buffers": "16MB",
        }
        command = [str(postgres_bin() / "postgres"), "-D", str(self.data)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - the server writes to it until it stops
        with log:
            self.proc = self._run_as_owner(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._accepts():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"postgres did not start on port {self.port}:\n{self.log()}")

    def _accepts(self) -> bool:
        ready = [str(postgres_bin() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER]
        return subprocess.run(ready, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0

    def log(self) -> str:
        """What the server wrote (for failures)."""
        with contextlib.suppress(OSError):
            return (self.root / "server.log").read_text(errors="replace")
        return ""

    def create_database(self) -> str:
        """A new, empty database on this server (one per test keeps tests apart); its URL."""
        import psycopg

        self._databases += 1
        name = f"test_{self._databases}"
        conninfo = f"host=127.0.0.1 port={self.port} user={USER} password={self.password} dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: open sessions are ended, not waited for
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def remove(self) -> None:
        """Stop the server and delete its data folder."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


@contextlib.contextmanager
def running() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server
