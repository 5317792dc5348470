"""Private Postgres and Redis servers that fault tests may kill and restart at will.

Each is started from the installed binaries (Debian's postgresql and redis-server packages:
`./dev test` installs them) on a free port, with its data in a fresh temporary directory, so
nothing a fault test does can touch the shared servers of the rest of the suite.

Postgres refuses to run as root: when the tests run as root (CI, containers), initdb and the
server run as the `postgres` OS user (what `runuser -u postgres --` would do, done through
`subprocess.Popen(user=..., group=...)` so the server's pid is ours to signal), in a
directory chowned to that user. `kill()` SIGKILLs the whole process group (postmaster and
every backend), as a crash of the machine or container would; `start()` then runs Postgres'
own crash recovery from the WAL, with fsync on as in production.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

INSTALL_HINT = (
    "the fault tests start private servers from the installed binaries; install them "
    "(Debian: apt-get install postgresql redis-server; ./dev test does this when run as root) "
    "or set MD_PG_BINDIR to the folder holding initdb and postgres"
)


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def postgres_bindir() -> Path:
    """Folder of `initdb` and `postgres`: MD_PG_BINDIR, the initdb on PATH, or Debian's newest."""
    given = os.environ.get("MD_PG_BINDIR")
    candidates = [Path(given)] if given else []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    candidates.extend(Path(p) for p in versions)
    for c in candidates:
        if (c / "initdb").exists() and (c / "postgres").exists():
            return c
    raise ServerError(f"initdb/postgres not found; {INSTALL_HINT}")


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if not found:
        raise ServerError(f"redis-server not found; {INSTALL_HINT}")
    return found


def _wait_port(port: int, proc: subprocess.Popen[bytes], within: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"{what} exited with {proc.returncode}: {tail(log)}")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise ServerError(f"{what} did not listen on {port} within {within} s: {tail(log)}")


def tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class _PrivateServer:
    """What both private servers share: a process group of their own in a folder of their own."""

    root: Path
    proc: subprocess.Popen[bytes] | None
    stop_signal = signal.SIGTERM
    stop_timeout = 10.0

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _kill_group(self, timeout: float) -> None:
        """SIGKILL the server's whole process group (a crash, not a shutdown)."""
        if not self.running:
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        self._kill_group(timeout=10)

    def stop(self) -> None:
        """A clean shutdown; killed if it takes longer than `stop_timeout`."""
        if not self.running:
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, self.stop_signal)
        try:
            self.proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class PrivatePostgres(_PrivateServer):
    """A throw-away Postgres cluster: trust auth, fsync on, TCP on 127.0.0.1:<free port>.

    `settings` override or add server settings (`-c name=value`) to the small defaults below;
    `parent` is the folder its data directory is made in (the system's temporary folder).
    """

    DEFAULT_SETTINGS: dict[str, str] = {
        "listen_addresses": "127.0.0.1",
        "fsync": "on",
        "synchronous_commit": "on",
        "shared_buffers": "32MB",
        "max_connections": "60",
        "log_min_messages": "warning",
    }

    def __init__(self, settings: dict[str, str] | None = None, parent: str | None = None) -> None:
        self.settings = {**self.DEFAULT_SETTINGS, **(settings or {})}
        self.bindir = postgres_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="md_faults_pg_", dir=parent))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._run_as: dict[str, Any] = {}
        """subprocess options that run the server as the `postgres` OS user (when we are root)."""
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise ServerError(
                    "running as root, Postgres needs the `postgres` OS user (created by Debian's "
                    "postgresql package)"
                ) from None
            self._run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self.sockets.mkdir()
        if self._run_as:
            os.chown(self.sockets, self._run_as["user"], self._run_as["group"])

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def initdb(self) -> None:
        proc = subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",  # initdb's own final sync only; the server runs with fsync on
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            **self._run_as,
        )
        if proc.returncode != 0:
            raise ServerError(f"initdb failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")

    def start(self, within: float = 60.0) -> None:
        """Start (or restart after a kill: Postgres replays its WAL first)."""
        if self.running:
            return
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                str(self.bindir / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.sockets),
                *(arg for name, value in self.settings.items() for arg in ("-c", f"{name}={value}")),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() takes every backend with it
            **self._run_as,
        )
        log.close()
        _wait_port(self.port, self.proc, within, "postgres", self.log)
        # listening is not accepting: crash recovery may still be running
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
                capture_output=True,
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise ServerError(f"postgres not ready within {within} s: {tail(self.log)}")

    stop_signal = signal.SIGINT  # Postgres' fast shutdown
    stop_timeout = 30.0

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend at once (a crash, not a shutdown)."""
        self._kill_group(timeout=30)
        # backends are gone with the group; wait until the port is free for the restart
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    break
            time.sleep(0.05)


class PrivateStandby(PrivatePostgres):
    """A hot standby of a running PrivatePostgres, on a port of its own.

    `basebackup()` copies the primary with `pg_basebackup -R` (the WAL it needs streamed along,
    `standby.signal` and `primary_conninfo` written), so `start()` runs it as a streaming
    replica that replays everything the primary writes and answers read-only queries.
    `kill()` and `start()` work as for the primary; after a restart it streams again from where
    it stopped.
    """

    def __init__(self, primary: PrivatePostgres) -> None:
        super().__init__()
        self.primary = primary

    def basebackup(self) -> None:
        proc = subprocess.run(
            [
                str(self.bindir / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.primary.port),
                "-U",
                "postgres",
                "-D",
                str(self.data),
                "-R",  # standby.signal + primary_conninfo: start as a streaming replica
                "-X",
                "stream",
                "--checkpoint=fast",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
            **self._run_as,
        )
        if proc.returncode != 0:
            raise ServerError(f"pg_basebackup failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")


class PrivateRedis(_PrivateServer):
    """A throw-away redis-server on 127.0.0.1:<free port>.

    `appendonly=True` keeps its data across a kill (AOF, fsync on every write): a Redis that
    holds a job queue in production is run that way, and the RLC tests need the queue to
    survive the outage they cause.
    """

    def __init__(self, *, appendonly: bool = False) -> None:
        self.binary = redis_server_binary()
        self.root = Path(tempfile.mkdtemp(prefix="md_faults_redis_"))
        self.log = self.root / "redis.log"
        self.port = free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, within: float = 20.0) -> None:
        if self.running:
            return
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(self.root),
            "--logfile",
            str(self.log),
        ]
        args += (
            ["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly else ["--appendonly", "no"]
        )
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        _wait_port(self.port, self.proc, within, "redis-server", self.log)
